//! Non-INVITE server transaction (RFC 3261 §17.2.2, with RFC 4320).
//!
//! Created when a new non-INVITE request (BYE, OPTIONS, CANCEL, ...) arrives. It never
//! retransmits on its own: the last response is resent only when the request is
//! retransmitted, and Timer J keeps the final response around to absorb late
//! retransmissions. It never produces a 408 (RFC 4320 §4.2): if the TU stays silent the
//! request simply goes unanswered.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{TimerConfig, Timers, TransactionError, Transport, check_status};

/// The states of the non-INVITE server transaction (RFC 3261 figure 8).
///
/// ```text
///                       | request received: machine created
///                       V
///                 +-----------+  request: absorb
///                 |  Trying   |------+
///                 |           |<-----+
///                 +-----------+
///          1xx from TU |    | 200-699 from TU: send it
///          send it     |    +-------------------+
///                      V                        |
///                 +------------+  request:      |
///                 | Proceeding |  resend 1xx    |
///                 |            |------+         |
///                 |            |<-----+         |
///   1xx from TU:  +------------+                |
///   send it            | 200-699 from TU:       |
///                      | send it                |
///                      V                        |
///                 +-----------+<----------------+
///   request:      |           |
///   resend final  | Completed |
///            +----|           |
///            +--->+-----------+
///                      | Timer J (64*T1 on UDP, 0 on TCP)
///                      | or transport error (any state)
///                      V
///                 +------------+
///                 | Terminated |
///                 +------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NistState {
    /// The TU has not answered yet.
    Trying,
    /// A provisional was sent.
    Proceeding,
    /// A final was sent; absorbing request retransmissions for Timer J.
    Completed,
    /// Finished; the machine can be dropped.
    Terminated,
}

impl NistState {
    fn name(self) -> &'static str {
        match self {
            NistState::Trying => "Trying",
            NistState::Proceeding => "Proceeding",
            NistState::Completed => "Completed",
            NistState::Terminated => "Terminated",
        }
    }
}

/// Something that happened to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NistInput {
    /// A retransmission of the request arrived (same key).
    Request,
    /// The TU sends a response: `response` is the serialised message with status `status`.
    Respond {
        /// The status code of `response`.
        status: u16,
        /// The serialised response.
        response: Bytes,
    },
    /// The transport could not deliver a response (§17.2.4).
    TransportError,
}

/// What the machine asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NistOutput {
    /// Send these bytes to the peer the request came from.
    Transmit(Bytes),
    /// The transaction ended; drop it.
    Terminated,
}

/// Timer J: leave Completed.
const TIMER_J: usize = 0;

/// A non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct Nist {
    state: NistState,
    config: TimerConfig,
    transport: Transport,
    timers: Timers<1>,
    last_response: Option<Bytes>,
    outputs: VecDeque<NistOutput>,
}

impl Nist {
    /// Creates the transaction for a request that arrived (the TU has it).
    pub fn new(config: TimerConfig, transport: Transport) -> Self {
        Self {
            state: NistState::Trying,
            config,
            transport,
            timers: Timers::new(),
            last_response: None,
            outputs: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> NistState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == NistState::Terminated
    }

    /// Feeds one input. Network inputs never fail; a response after the final fails and
    /// changes nothing. Drain [`Nist::poll_output`] afterwards.
    pub fn handle(&mut self, now: Instant, input: NistInput) -> Result<(), TransactionError> {
        match input {
            NistInput::Request => {
                match self.state {
                    NistState::Proceeding | NistState::Completed => {
                        if let Some(response) = &self.last_response {
                            self.outputs
                                .push_back(NistOutput::Transmit(response.clone()));
                        }
                    }
                    NistState::Trying | NistState::Terminated => {}
                }
                Ok(())
            }
            NistInput::Respond { status, response } => self.on_respond(now, status, response),
            NistInput::TransportError => {
                if self.state != NistState::Terminated {
                    self.terminate();
                }
                Ok(())
            }
        }
    }

    /// Fires Timer J if it is due at `now`. Calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.pop_due(now).is_some() && self.state == NistState::Completed {
            self.terminate();
        }
    }

    /// The next output to act on. Call after every `handle*` call until it returns `None`.
    pub fn poll_output(&mut self) -> Option<NistOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Nist::handle_timeout`] next; `None` when no timer runs. Call after
    /// draining [`Nist::poll_output`], and re-arm the sleep with the answer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn on_respond(
        &mut self,
        now: Instant,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        if !matches!(self.state, NistState::Trying | NistState::Proceeding) {
            return Err(TransactionError::NotAllowed {
                input: "a response from the TU",
                state: self.state.name(),
            });
        }
        self.outputs
            .push_back(NistOutput::Transmit(response.clone()));
        self.last_response = Some(response);
        if status < 200 {
            self.state = NistState::Proceeding;
        } else if self.transport.is_reliable() {
            self.terminate();
        } else {
            self.state = NistState::Completed;
            self.timers.set(TIMER_J, now + self.config.t1x64());
        }
        Ok(())
    }

    fn terminate(&mut self) {
        self.state = NistState::Terminated;
        self.timers.clear_all();
        self.last_response = None;
        self.outputs.push_back(NistOutput::Terminated);
    }
}
