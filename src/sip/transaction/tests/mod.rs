//! Tests of the transaction layer on virtual time: scenario fixtures, the table as a unit,
//! and the machines' edge cases.

mod harness;
mod machines;
mod scenarios;
mod table;
