//! INVITE client transaction (RFC 3261 §17.1.1, with the Accepted state of RFC 6026 §8.4).
//!
//! The machine sends the INVITE at creation, retransmits it over UDP on Timer A (T1
//! doubling, with no cap: the INVITE is the one request whose retransmissions are not
//! bounded by T2) and reports a timeout on Timer B (64*T1) while no response has arrived.
//! A 300-699 final is passed to the TU and acknowledged here, with an ACK built from the
//! INVITE and the response ([`ack_for_non_2xx`]); a retransmission of that final gets the
//! same ACK again until Timer D. A 2xx moves it to Accepted, where every further 2xx (a
//! retransmission, or another fork's answer) goes to the TU for Timer M: the ACK for a 2xx
//! is a request of the dialog, which the TU sends (§13.2.2.4).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{TimerConfig, Timers, Transport};
use crate::sip::message::{Request, Response, ack_for_non_2xx};

/// Timer D on an unreliable transport: "at least 32 seconds" (§17.1.1.2).
pub const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// The states of the INVITE client transaction (RFC 3261 figure 5 as amended by RFC 6026
/// figure 3).
///
/// ```text
///                                | INVITE from TU: send it
///              Timer A fires     | Timer A = T1 (UDP), Timer B = 64*T1
///              resend INVITE,    V
///              A = 2*A     +-----------+
///                  +-------|           |  Timer B fires or transport error:
///                  |       |  Calling  |--------------------------------+
///                  +------>|           |  inform TU                     |
///                          +-----------+                                |
///      300-699: ACK, to TU |   |     | 2xx: to TU                       |
///           +--------------+   |1xx  +--------------------+             |
///           |                  |to TU                     |             |
///           |                  V                          |             |
///           |  1xx: to TU +------------+                  |             |
///           |   +---------|            |                  |             |
///           |   |         | Proceeding |                  |             |
///           |   +-------->|            |------------------+             |
///           |             +------------+  2xx: to TU      |             |
///           |  300-699: ACK, to TU |                      V             |
///           +----------------------+            +-----------+           |
///           V                                   |           | 2xx:      |
///    +-----------+                              | Accepted  | to TU     |
///    |           | 300-699: resend ACK          |           |<---+      |
///    | Completed |-----+                        +-----------+----+      |
///    |           |<----+                              |                 |
///    +-----------+                                    | Timer M (64*T1) |
///           | Timer D (32 s UDP, 0 reliable)          |                 |
///           V                                         V                 |
///    +-----------------------------------------------------+            |
///    |                      Terminated                     |<-----------+
///    +-----------------------------------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IctState {
    /// The INVITE was sent; no response yet.
    Calling,
    /// A provisional arrived; waiting for the final.
    Proceeding,
    /// A 300-699 final arrived and was acknowledged; absorbing its retransmissions.
    Completed,
    /// A 2xx arrived (RFC 6026); passing further 2xx to the TU for Timer M.
    Accepted,
    /// Finished; the machine can be dropped.
    Terminated,
}

/// Something that happened to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "an input is built, moved in and consumed at once; boxing would cost an allocation per response"
)]
pub enum IctInput {
    /// A response matching this transaction arrived (§17.1.3).
    Response(Response),
    /// The transport could not deliver the INVITE or the ACK (§17.1.4).
    TransportError,
}

/// What the machine asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IctOutput {
    /// Send these bytes (the INVITE, or the ACK of a non-2xx final) to the peer.
    Transmit(Bytes),
    /// Pass this response to the TU: a provisional, a final, or in Accepted a further 2xx.
    Response(Response),
    /// Timer B fired: no response within 64*T1 (the TU treats it as a 408, §8.1.3.1).
    Timeout,
    /// The transport failed before a final response; the TU treats it as a 503.
    TransportError,
    /// The transaction ended; drop it.
    Terminated,
}

/// The ICT's timers, in the order they fire when due at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Timer B: transaction timeout in Calling (64*T1).
    B,
    /// Timer D: leave Completed (32 s on UDP).
    D,
    /// Timer M: leave Accepted (64*T1, RFC 6026).
    M,
    /// Timer A: retransmit the INVITE (UDP only).
    A,
}

const TIMERS: usize = 4;

/// An INVITE client transaction.
#[derive(Debug, Clone)]
pub struct Ict {
    state: IctState,
    config: TimerConfig,
    transport: Transport,
    timers: Timers<TIMERS>,
    /// The INVITE as sent: retransmitted in Calling, copied into the ACK of a non-2xx.
    invite: Request,
    /// The ACK of the non-2xx final, resent for each retransmission of that final.
    ack: Option<Bytes>,
    a_interval: Duration,
    outputs: VecDeque<IctOutput>,
}

impl Ict {
    /// Creates the transaction and sends `invite` (as parsed from the bytes vca-sip
    /// serialised) at `now`. Drain [`Ict::poll_output`] afterwards.
    pub fn new(now: Instant, config: TimerConfig, transport: Transport, invite: Request) -> Self {
        let mut timers = Timers::new();
        timers.set(Timer::B as usize, now + config.t1x64());
        if !transport.is_reliable() {
            timers.set(Timer::A as usize, now + config.t1);
        }
        let mut outputs = VecDeque::new();
        outputs.push_back(IctOutput::Transmit(invite.as_bytes().clone()));
        Self {
            state: IctState::Calling,
            config,
            transport,
            timers,
            invite,
            ack: None,
            a_interval: config.t1,
            outputs,
        }
    }

    /// The current state.
    pub fn state(&self) -> IctState {
        self.state
    }

    /// True once the transaction has ended.
    pub fn is_terminated(&self) -> bool {
        self.state == IctState::Terminated
    }

    /// The transport the transaction runs over (its CANCEL runs over the same, §9.1).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The state's name, for errors.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            IctState::Calling => "Calling",
            IctState::Proceeding => "Proceeding",
            IctState::Completed => "Completed",
            IctState::Accepted => "Accepted",
            IctState::Terminated => "Terminated",
        }
    }

    /// The INVITE this transaction sent (to build its CANCEL, §9.1).
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// Feeds one input; inputs from the network never fail. Drain [`Ict::poll_output`]
    /// afterwards.
    pub fn handle(&mut self, now: Instant, input: IctInput) {
        match input {
            IctInput::Response(response) => self.on_response(now, response),
            IctInput::TransportError => {
                if matches!(self.state, IctState::Calling | IctState::Proceeding) {
                    self.outputs.push_back(IctOutput::TransportError);
                }
                if self.state != IctState::Terminated {
                    self.terminate();
                }
            }
        }
    }

    /// Fires every timer due at `now`. Calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(index) = self.timers.pop_due(now) {
            match index {
                i if i == Timer::B as usize => {
                    if self.state == IctState::Calling {
                        self.outputs.push_back(IctOutput::Timeout);
                        self.terminate();
                    }
                }
                i if i == Timer::D as usize => {
                    if self.state == IctState::Completed {
                        self.terminate();
                    }
                }
                i if i == Timer::M as usize => {
                    if self.state == IctState::Accepted {
                        self.terminate();
                    }
                }
                _ => {
                    if self.state == IctState::Calling {
                        self.outputs
                            .push_back(IctOutput::Transmit(self.invite.as_bytes().clone()));
                        self.a_interval = self.a_interval.saturating_mul(2);
                        self.timers.set(Timer::A as usize, now + self.a_interval);
                    }
                }
            }
        }
    }

    /// The next output to act on. Call after every `handle*` call (and after creation)
    /// until it returns `None`.
    pub fn poll_output(&mut self) -> Option<IctOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Ict::handle_timeout`] next; `None` when no timer runs. Call after
    /// draining [`Ict::poll_output`], and re-arm the sleep with the answer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn on_response(&mut self, now: Instant, response: Response) {
        let status = response.status();
        match (self.state, status) {
            (IctState::Calling | IctState::Proceeding, 100..=199) => {
                // A provisional stops the retransmissions and Timer B (figure 5): from
                // here the TU decides how long to wait (and CANCELs, §9.1).
                self.state = IctState::Proceeding;
                self.timers.clear(Timer::A as usize);
                self.timers.clear(Timer::B as usize);
                self.outputs.push_back(IctOutput::Response(response));
            }
            (IctState::Calling | IctState::Proceeding, 200..=299) => {
                self.state = IctState::Accepted;
                self.timers.clear(Timer::A as usize);
                self.timers.clear(Timer::B as usize);
                self.timers
                    .set(Timer::M as usize, now + self.config.t1x64());
                self.outputs.push_back(IctOutput::Response(response));
            }
            (IctState::Calling | IctState::Proceeding, 300..=699) => {
                self.state = IctState::Completed;
                self.timers.clear(Timer::A as usize);
                self.timers.clear(Timer::B as usize);
                // A final whose To cannot be read cannot be acknowledged; the TU still
                // learns the outcome and Timer D still ends the transaction.
                self.ack = ack_for_non_2xx(&self.invite, &response).ok();
                if let Some(ack) = &self.ack {
                    self.outputs.push_back(IctOutput::Transmit(ack.clone()));
                }
                self.outputs.push_back(IctOutput::Response(response));
                // Timer D is zero over a reliable transport: nothing can be retransmitted.
                if self.transport.is_reliable() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::D as usize, now + TIMER_D_UNRELIABLE);
                }
            }
            (IctState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.outputs.push_back(IctOutput::Transmit(ack.clone()));
                }
            }
            (IctState::Accepted, 200..=299) => {
                self.outputs.push_back(IctOutput::Response(response));
            }
            // A provisional after a final, a 2xx after a non-2xx or the reverse: a stray
            // the state has no use for (RFC 6026 §8.4 leaves them to be discarded).
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = IctState::Terminated;
        self.timers.clear_all();
        self.ack = None;
        self.outputs.push_back(IctOutput::Terminated);
    }
}
