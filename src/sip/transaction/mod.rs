//! SIP transaction layer: the RFC 3261 §17 state machines (with RFC 6026 and RFC 4320) and
//! the UAS core's 2xx retransmission (§13.3.1.4), sans-IO.
//!
//! Nothing here touches a socket or reads the clock. Every machine has the same face:
//!
//! ```text
//!            handle(now, input)          poll_output() -> Option<Output>
//!   caller ───────────────────▶ machine ───────────────────────────────▶ caller
//!            handle_timeout(now)         poll_timeout() -> Option<Instant>
//! ```
//!
//! The calling contract: after any `handle*` call, drain `poll_output()` until it returns
//! `None`, then (re-)arm one sleep until `poll_timeout()`. When that sleep ends, call
//! `handle_timeout(now)` and drain again. A timeout that arrives early or twice is a no-op.
//!
//! Server machines and the NICT never parse or build SIP messages: they see status codes
//! as `u16`, requests as "a retransmission of the request arrived", and messages to send
//! as already-serialised [`Bytes`]. The ICT is the exception §17.1.1.3 forces: it keeps
//! the parsed INVITE and builds the ACK of a non-2xx final from it and the response.
//! Client transactions hand every response they pass on to the TU whole. [`TransactionTable`] owns many machines, matches requests to them in O(1)
//! (§17.2.3) and multiplexes their timers into one deadline.
//!
//! - [`ist`]: INVITE server transaction (§17.2.1, RFC 6026 Accepted state).
//! - [`nist`]: non-INVITE server transaction (§17.2.2, RFC 4320).
//! - [`ict`]: INVITE client transaction (§17.1.1, RFC 6026 Accepted state), for the
//!   INVITE vca-sip sends; it builds the ACK of a non-2xx final itself.
//! - [`nict`]: non-INVITE client transaction (§17.1.2), for the BYE and CANCEL vca-sip
//!   sends.
//! - [`uas2xx`]: the 2xx-to-INVITE retransmission of the UAS core (§13.3.1.4).
//! - [`table`]: the transaction table and its keys.

pub mod ict;
pub mod ist;
pub mod nict;
pub mod nist;
pub mod table;
pub mod uas2xx;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use ict::{Ict, IctInput, IctOutput, IctState};
pub use ist::{Ist, IstInput, IstOutput, IstState};
pub use nict::{Nict, NictInput, NictOutput, NictState};
pub use nist::{Nist, NistInput, NistOutput, NistState};
pub use table::{
    AckMatch, Event, RequestMatch, ResponseMatch, TableOutput, TransactionKey, TransactionTable,
};
pub use uas2xx::{Uas2xx, Uas2xxInput, Uas2xxOutput};

/// How long an INVITE server transaction waits for the TU before it sends 100 Trying itself
/// (§17.2.1: "within 200 ms").
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The magic cookie that starts every RFC 3261 branch parameter (§8.1.1.7).
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// The RFC 3261 timer base values (§17.1.1.1, table 4 of §A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip time estimate; default 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses; default 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network; default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (unreliable), L and the 2xx give-up of §13.3.1.4.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next retransmit interval: double the current one, capped at T2.
    fn backoff(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

pub use crate::kinds::{Method, Transport};

/// Misuse of a transaction by its caller. None of these come from the network: a
/// retransmission or a stray response in an odd state is absorbed, never an error.
///
/// Each is a bug in the TU or a race with the transaction's end; at the edge it maps to
/// [`TransactionError::sip_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The status code is outside 100..=699.
    #[error("status {0} is not a SIP status code")]
    BadStatus(u16),
    /// The TU tried to respond after the final response, or to send 100-199 after it.
    #[error("{input} is not allowed in state {state}")]
    NotAllowed {
        /// The input the TU gave.
        input: &'static str,
        /// The state the transaction was in.
        state: &'static str,
    },
    /// No transaction matches the key (it ended, or never existed).
    #[error("no transaction matches the key")]
    NoMatch,
    /// A transaction with this key already exists.
    #[error("a transaction with this key already exists")]
    Exists,
    /// The key's method does not fit the machine (e.g. an IST for a BYE).
    #[error("method {0:?} does not fit this kind of transaction")]
    WrongMethod(Method),
    /// A server key was used for a client transaction, or the other way round.
    #[error("the key belongs to the other side (server or client)")]
    WrongSide,
    /// The INVITE of a client transaction lacks a header its CANCEL copies (§9.1).
    #[error("the INVITE cannot be cancelled: it lacks a header the CANCEL copies")]
    Uncancellable,
}

impl TransactionError {
    /// The response a server would send when a TU step fails this way: none of these is
    /// the peer's fault, so 500 when a response can still be sent, otherwise nothing.
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            TransactionError::BadStatus(_)
            | TransactionError::WrongMethod(_)
            | TransactionError::WrongSide => Some(500),
            TransactionError::NotAllowed { .. }
            | TransactionError::NoMatch
            | TransactionError::Exists
            | TransactionError::Uncancellable => None,
        }
    }
}

/// Checks that a status code is a SIP status code (§7.2).
fn check_status(status: u16) -> Result<(), TransactionError> {
    if (100..=699).contains(&status) {
        Ok(())
    } else {
        Err(TransactionError::BadStatus(status))
    }
}

/// A machine's timers: a small table of deadlines indexed by the machine's timer enum.
#[derive(Debug, Clone)]
struct Timers<const N: usize>([Option<Instant>; N]);

impl<const N: usize> Timers<N> {
    const fn new() -> Self {
        Self([None; N])
    }

    fn set(&mut self, index: usize, at: Instant) {
        if let Some(slot) = self.0.get_mut(index) {
            *slot = Some(at);
        }
    }

    fn clear(&mut self, index: usize) {
        if let Some(slot) = self.0.get_mut(index) {
            *slot = None;
        }
    }

    fn clear_all(&mut self) {
        self.0 = [None; N];
    }

    /// The earliest deadline.
    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Removes and returns the earliest timer due at `now` (lowest index first on ties).
    fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let mut best: Option<(usize, Instant)> = None;
        for (index, at) in self.0.iter().enumerate() {
            if let Some(at) = *at
                && at <= now
                && best.is_none_or(|(_, b)| at < b)
            {
                best = Some((index, at));
            }
        }
        let (index, _) = best?;
        self.clear(index);
        Some(index)
    }
}
