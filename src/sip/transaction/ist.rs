//! INVITE server transaction (RFC 3261 §17.2.1, with the Accepted state of RFC 6026 §7.1).
//!
//! The machine is created when a new INVITE arrives (the TU has already been handed the
//! request). It sends 100 Trying on its own if the TU stays silent for
//! [`TRYING_DELAY`](super::TRYING_DELAY), answers retransmitted INVITEs with the last
//! response, retransmits a non-2xx final over UDP until the ACK (Timer G) and gives up at
//! Timer H. A 2xx moves it to Accepted, where it absorbs retransmitted INVITEs for Timer L;
//! sending (and resending) the 2xx itself is the UAS core's job, see [`super::uas2xx`].

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{TRYING_DELAY, TimerConfig, Timers, TransactionError, Transport, check_status};

/// The states of the INVITE server transaction (RFC 3261 figure 7 as amended by RFC 6026
/// figure 5).
///
/// ```text
///                               | INVITE received: machine created
///                               | 100 Trying after 200 ms if the TU is silent
///       INVITE                  V
///       resend last 1xx  +------------+  101-199 from TU: send it
///            +-----------|            |<----------+
///            |           | Proceeding |-----------+
///            +---------->|            |
///                        +------------+---------------------------+
///        300-699 from TU:  |        |                             |
///        send it           |        | 2xx from TU                 | transport
///                          V        | (the UAS core sends it)     | error
///       INVITE     +-----------+    V                             | (any state)
///       resend     |           |   +-----------+  INVITE: absorb  |
///       final +----| Completed |   |           |-----+            |
///             |    |           |   | Accepted  |     |            |
///             +--->|           |   |           |<----+            |
///  Timer G: resend +-----------+   |           |  ACK: to TU      |
///  (UDP only)        |       |     +-----------+                  |
///               ACK  |       |           |                        |
///                    V       | Timer H:  | Timer L                |
///             +-----------+  | no ACK    |                        |
///   INVITE,   |           |  |           |                        |
///   ACK:      | Confirmed |  |           |                        |
///   absorb    |           |  |           |                        |
///             +-----------+  |           |                        |
///                    |       |           |                        |
///          Timer I   |       |           |                        |
///          (0 on TCP)V       V           V                        |
///                   +-----------------------+                     |
///                   |      Terminated       |<--------------------+
///                   +-----------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IstState {
    /// Waiting for the TU's final response; provisionals may be sent.
    Proceeding,
    /// A 300-699 final was sent; waiting for the ACK.
    Completed,
    /// The ACK arrived; absorbing ACK retransmissions for Timer I.
    Confirmed,
    /// A 2xx was sent (RFC 6026); absorbing INVITE retransmissions for Timer L.
    Accepted,
    /// Finished; the machine can be dropped.
    Terminated,
}

impl IstState {
    fn name(self) -> &'static str {
        match self {
            IstState::Proceeding => "Proceeding",
            IstState::Completed => "Completed",
            IstState::Confirmed => "Confirmed",
            IstState::Accepted => "Accepted",
            IstState::Terminated => "Terminated",
        }
    }
}

/// Something that happened to the transaction: a message from the network or a step of
/// the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstInput {
    /// A retransmission of the INVITE arrived (same key).
    Request,
    /// An ACK matching this transaction arrived.
    Ack,
    /// The TU sends a response: `response` is the serialised message with status `status`.
    /// 100-199 is a provisional; 200-299 moves to Accepted without sending (the
    /// [`Uas2xx`](super::Uas2xx) of the UAS core sends it); 300-699 is sent and retransmitted.
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
pub enum IstOutput {
    /// Send these bytes to the peer the INVITE came from.
    Transmit(Bytes),
    /// Pass the ACK that was just handed in to the TU (an ACK in Accepted, RFC 6026 §7.1).
    AckToTu,
    /// Timer H fired: the non-2xx final was never acknowledged.
    NoAck,
    /// The transaction ended; drop it.
    Terminated,
}

/// The IST's timers, in the order they fire when due at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Timer H: give up waiting for the ACK (64*T1).
    H,
    /// Timer L: leave Accepted (64*T1, RFC 6026).
    L,
    /// Timer I: leave Confirmed (T4 on UDP).
    I,
    /// Timer G: retransmit the non-2xx final (UDP only).
    G,
    /// Send 100 Trying if the TU has sent nothing (§17.2.1).
    Trying,
}

const TIMERS: usize = 5;

/// An INVITE server transaction.
#[derive(Debug, Clone)]
pub struct Ist {
    state: IstState,
    config: TimerConfig,
    transport: Transport,
    timers: Timers<TIMERS>,
    /// The serialised 100 Trying to send if the TU stays silent.
    trying: Option<Bytes>,
    /// The last response sent (the last provisional in Proceeding, the final in Completed).
    last_response: Option<Bytes>,
    /// The current Timer G interval.
    g_interval: std::time::Duration,
    outputs: VecDeque<IstOutput>,
}

impl Ist {
    /// Creates the transaction for an INVITE that arrived at `now`.
    ///
    /// `trying` is the serialised 100 Trying for this INVITE: if given, the machine sends it
    /// at `now` + 200 ms unless the TU sends a response first. Pass `None` when the TU sends
    /// its own 100 at once.
    pub fn new(
        now: Instant,
        config: TimerConfig,
        transport: Transport,
        trying: Option<Bytes>,
    ) -> Self {
        let mut timers = Timers::new();
        if trying.is_some() {
            timers.set(Timer::Trying as usize, now + TRYING_DELAY);
        }
        Self {
            state: IstState::Proceeding,
            config,
            transport,
            timers,
            trying,
            last_response: None,
            g_interval: config.t1,
            outputs: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> IstState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == IstState::Terminated
    }

    /// Feeds one input. Network inputs never fail; a TU step that the state does not allow
    /// fails and changes nothing. Drain [`Ist::poll_output`] afterwards.
    pub fn handle(&mut self, now: Instant, input: IstInput) -> Result<(), TransactionError> {
        match input {
            IstInput::Request => {
                self.on_request();
                Ok(())
            }
            IstInput::Ack => {
                self.on_ack(now);
                Ok(())
            }
            IstInput::Respond { status, response } => self.on_respond(now, status, response),
            IstInput::TransportError => {
                if self.state != IstState::Terminated {
                    self.terminate();
                }
                Ok(())
            }
        }
    }

    /// Fires every timer due at `now`. Calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(index) = self.timers.pop_due(now) {
            match index {
                i if i == Timer::H as usize => {
                    if self.state == IstState::Completed {
                        self.outputs.push_back(IstOutput::NoAck);
                        self.terminate();
                    }
                }
                i if i == Timer::L as usize => {
                    if self.state == IstState::Accepted {
                        self.terminate();
                    }
                }
                i if i == Timer::I as usize => {
                    if self.state == IstState::Confirmed {
                        self.terminate();
                    }
                }
                i if i == Timer::G as usize => {
                    if self.state == IstState::Completed {
                        if let Some(final_response) = &self.last_response {
                            self.outputs
                                .push_back(IstOutput::Transmit(final_response.clone()));
                        }
                        self.g_interval = self.config.backoff(self.g_interval);
                        self.timers.set(Timer::G as usize, now + self.g_interval);
                    }
                }
                _ => {
                    if self.state == IstState::Proceeding && self.last_response.is_none() {
                        self.send_trying();
                    }
                }
            }
        }
    }

    /// The next output to act on. Call after every `handle*` call until it returns `None`.
    pub fn poll_output(&mut self) -> Option<IstOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Ist::handle_timeout`] next; `None` when no timer runs. Call after
    /// draining [`Ist::poll_output`], and re-arm the sleep with the answer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn on_request(&mut self) {
        match self.state {
            IstState::Proceeding => {
                match &self.last_response {
                    // Nothing sent yet: the retransmission shows the peer is waiting, so
                    // send the 100 Trying now rather than at the 200 ms mark.
                    None => self.send_trying(),
                    Some(provisional) => {
                        self.outputs
                            .push_back(IstOutput::Transmit(provisional.clone()));
                    }
                }
            }
            IstState::Completed => {
                if let Some(final_response) = &self.last_response {
                    self.outputs
                        .push_back(IstOutput::Transmit(final_response.clone()));
                }
            }
            IstState::Confirmed | IstState::Accepted | IstState::Terminated => {}
        }
    }

    fn on_ack(&mut self, now: Instant) {
        match self.state {
            IstState::Completed => {
                self.timers.clear(Timer::G as usize);
                self.timers.clear(Timer::H as usize);
                if self.transport.is_reliable() {
                    self.terminate();
                } else {
                    self.state = IstState::Confirmed;
                    self.timers.set(Timer::I as usize, now + self.config.t4);
                }
            }
            IstState::Accepted => self.outputs.push_back(IstOutput::AckToTu),
            IstState::Proceeding | IstState::Confirmed | IstState::Terminated => {}
        }
    }

    fn on_respond(
        &mut self,
        now: Instant,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        if self.state != IstState::Proceeding {
            return Err(TransactionError::NotAllowed {
                input: "a response from the TU",
                state: self.state.name(),
            });
        }
        self.timers.clear(Timer::Trying as usize);
        self.trying = None;
        match status {
            100..=199 => {
                self.outputs
                    .push_back(IstOutput::Transmit(response.clone()));
                self.last_response = Some(response);
            }
            200..=299 => {
                self.state = IstState::Accepted;
                self.last_response = None;
                self.timers
                    .set(Timer::L as usize, now + self.config.t1x64());
            }
            _ => {
                self.state = IstState::Completed;
                self.outputs
                    .push_back(IstOutput::Transmit(response.clone()));
                self.last_response = Some(response);
                if !self.transport.is_reliable() {
                    self.g_interval = self.config.t1;
                    self.timers.set(Timer::G as usize, now + self.g_interval);
                }
                self.timers
                    .set(Timer::H as usize, now + self.config.t1x64());
            }
        }
        Ok(())
    }

    fn send_trying(&mut self) {
        self.timers.clear(Timer::Trying as usize);
        if let Some(trying) = self.trying.take() {
            self.outputs.push_back(IstOutput::Transmit(trying.clone()));
            self.last_response = Some(trying);
        }
    }

    fn terminate(&mut self) {
        self.state = IstState::Terminated;
        self.timers.clear_all();
        self.last_response = None;
        self.trying = None;
        self.outputs.push_back(IstOutput::Terminated);
    }
}
