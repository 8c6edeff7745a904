//! Routing: from a dialed number to exactly one tenant.
//!
//! `e164` turns whatever a carrier or an operator writes into one canonical E.164 number;
//! later layers map that number to its tenant and decide admission; `trunks` holds the
//! carrier trunks that requests arrive on.

pub mod admission;
pub mod directory;
pub mod e164;
pub mod trunks;
