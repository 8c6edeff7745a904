//! vca-sip: the telephony edge of a multi-tenant Voice AI Agent platform.
//!
//! A carrier's INVITE arrives over UDP, TCP or TLS; vca-sip maps the dialed number to
//! exactly one tenant, records the call, answers it and bridges its audio. Data flows one
//! way through layers that each own one concern:
//!
//! ```text
//!   transport (UDP/TCP/TLS tasks) -> sip (parse, transactions, dialogs; no IO)
//!        -> call (one task per call) -> routing (DID -> tenant, admission)
//!        -> store (SQLite | PostgreSQL) + media (RTP legs)
//!   api (HTTP: tenants, numbers, AI profiles, keys, health, metrics)
//! ```
//!
//! The protocol machines under [`sip`] never do IO and never read the clock: after any
//! `handle_*` input, the caller drains `poll_output` and sleeps until `poll_timeout`.

#![forbid(unsafe_code)]

pub mod api;
pub mod call;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod gate;
pub mod ids;
pub mod kinds;
pub mod media;
pub mod routing;
pub mod server;
pub mod sip;
pub mod store;
pub mod targets;
pub mod transport;
pub mod ua;
