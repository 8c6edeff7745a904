//! Non-INVITE client transaction (RFC 3261 §17.1.2), used for the requests vca-sip sends
//! itself, chiefly the BYE that ends a call.
//!
//! The machine sends the request at creation, retransmits it over UDP on Timer E (T1
//! doubling up to T2, then every T2 once a provisional arrived), reports a timeout on
//! Timer F (64*T1), and after a final response absorbs retransmitted responses for Timer K.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{TimerConfig, Timers, Transport};

/// The states of the non-INVITE client transaction (RFC 3261 figure 6).
///
/// ```text
///                        | request from TU: send it
///   Timer E:             V
///   resend request +-----------+
///   (UDP)     +----|           |  Timer F or transport error:
///             |    |  Trying   |---------------------------+
///             +--->|           |  inform TU                |
///                  +-----------+                           |
///            1xx: to TU |    | 200-699: to TU              |
///                       V    +------------------+          |
///   Timer E:       +------------+               |          |
///   resend, E=T2   |            |  1xx: to TU   |          |
///            +-----| Proceeding |-----+         |          |
///            +---->|            |<----+         |          |
///                  +------------+               |          |
///       200-699: to TU |     | Timer F or transport error: |
///                      |     +--------------------------->+|
///                      V                        |          ||
///                  +-----------+<---------------+          ||
///   responses:     |           |                           ||
///   absorb    +----| Completed |                           ||
///             +--->|           |                           ||
///                  +-----------+                           ||
///                        | Timer K (T4 on UDP, 0 on TCP)   ||
///                        V                                 VV
///                  +----------------------------------------+
///                  |               Terminated               |
///                  +----------------------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NictState {
    /// The request was sent; no response yet.
    Trying,
    /// A provisional arrived.
    Proceeding,
    /// A final arrived; absorbing response retransmissions for Timer K.
    Completed,
    /// Finished; the machine can be dropped.
    Terminated,
}

/// Something that happened to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NictInput {
    /// A response matching this transaction arrived with this status code.
    Response(u16),
    /// The transport could not deliver the request (§17.1.4).
    TransportError,
}

/// What the machine asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NictOutput {
    /// Send these bytes (the request) to the peer.
    Transmit(Bytes),
    /// Pass the response just handed in, with this status, to the TU.
    Response(u16),
    /// Timer F fired: no final response within 64*T1 (the TU treats it as a 408).
    Timeout,
    /// The transport failed; the TU treats it as a 503 (§8.1.3.1).
    TransportError,
    /// The transaction ended; drop it.
    Terminated,
}

/// The NICT's timers, in the order they fire when due at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Timer F: transaction timeout (64*T1).
    F,
    /// Timer K: leave Completed (T4 on UDP).
    K,
    /// Timer E: retransmit the request (UDP only).
    E,
}

const TIMERS: usize = 3;

/// A non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct Nict {
    state: NictState,
    config: TimerConfig,
    transport: Transport,
    timers: Timers<TIMERS>,
    request: Option<Bytes>,
    e_interval: Duration,
    outputs: VecDeque<NictOutput>,
}

impl Nict {
    /// Creates the transaction and sends `request` (the serialised request) at `now`.
    pub fn new(now: Instant, config: TimerConfig, transport: Transport, request: Bytes) -> Self {
        let mut timers = Timers::new();
        timers.set(Timer::F as usize, now + config.t1x64());
        if !transport.is_reliable() {
            timers.set(Timer::E as usize, now + config.t1);
        }
        let mut outputs = VecDeque::new();
        outputs.push_back(NictOutput::Transmit(request.clone()));
        Self {
            state: NictState::Trying,
            config,
            transport,
            timers,
            request: Some(request),
            e_interval: config.t1,
            outputs,
        }
    }

    /// The current state.
    pub fn state(&self) -> NictState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == NictState::Terminated
    }

    /// Feeds one input; inputs from the network never fail. Drain [`Nict::poll_output`]
    /// afterwards.
    pub fn handle(&mut self, now: Instant, input: NictInput) {
        match input {
            NictInput::Response(status) => self.on_response(now, status),
            NictInput::TransportError => {
                if matches!(self.state, NictState::Trying | NictState::Proceeding) {
                    self.outputs.push_back(NictOutput::TransportError);
                }
                if self.state != NictState::Terminated {
                    self.terminate();
                }
            }
        }
    }

    /// Fires every timer due at `now`. Calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(index) = self.timers.pop_due(now) {
            match index {
                i if i == Timer::F as usize => {
                    if matches!(self.state, NictState::Trying | NictState::Proceeding) {
                        self.outputs.push_back(NictOutput::Timeout);
                        self.terminate();
                    }
                }
                i if i == Timer::K as usize => {
                    if self.state == NictState::Completed {
                        self.terminate();
                    }
                }
                _ => self.on_timer_e(now),
            }
        }
    }

    /// The next output to act on. Call after every `handle*` call (and after creation)
    /// until it returns `None`.
    pub fn poll_output(&mut self) -> Option<NictOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Nict::handle_timeout`] next; `None` when no timer runs. Call after
    /// draining [`Nict::poll_output`], and re-arm the sleep with the answer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn on_timer_e(&mut self, now: Instant) {
        let interval = match self.state {
            NictState::Trying => self.config.backoff(self.e_interval),
            NictState::Proceeding => self.config.t2,
            NictState::Completed | NictState::Terminated => return,
        };
        if let Some(request) = &self.request {
            self.outputs
                .push_back(NictOutput::Transmit(request.clone()));
        }
        self.e_interval = interval;
        self.timers.set(Timer::E as usize, now + interval);
    }

    fn on_response(&mut self, now: Instant, status: u16) {
        if !matches!(self.state, NictState::Trying | NictState::Proceeding) {
            return;
        }
        match status {
            100..=199 => {
                self.state = NictState::Proceeding;
                self.outputs.push_back(NictOutput::Response(status));
            }
            200..=699 => {
                self.outputs.push_back(NictOutput::Response(status));
                self.timers.clear(Timer::E as usize);
                self.timers.clear(Timer::F as usize);
                self.request = None;
                if self.transport.is_reliable() {
                    self.terminate();
                } else {
                    self.state = NictState::Completed;
                    self.timers.set(Timer::K as usize, now + self.config.t4);
                }
            }
            // Not a SIP status: the parser should not let it through; ignore it.
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = NictState::Terminated;
        self.timers.clear_all();
        self.request = None;
        self.outputs.push_back(NictOutput::Terminated);
    }
}
