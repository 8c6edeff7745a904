//! SIP protocol logic with no IO: messages, framing, transactions, dialogs, SDP and digest
//! authentication.
//!
//! Nothing under `sip/` touches a socket, a database or the wall clock. State machines take
//! an input and `now`, and hand back what to send and when to wake next.

pub mod auth;
pub mod b2b;
pub mod dialog;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod session_timer;
pub mod transaction;
pub mod triage;
pub mod uac;
