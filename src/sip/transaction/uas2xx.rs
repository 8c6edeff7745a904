//! The UAS core's retransmission of a 2xx to INVITE until the ACK (RFC 3261 §13.3.1.4,
//! RFC 6026 §7.1).
//!
//! The INVITE server transaction does not resend a 2xx: the UAS core does, over every
//! transport (a reliable hop does not make the path to the UAC reliable). This machine
//! sends the 2xx at creation, then after T1, 2*T1, ... capped at T2, stops on the ACK, and
//! gives up at 64*T1; the caller then sends a BYE and records the call as failed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{TimerConfig, Timers};

/// Something that happened to the retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uas2xxInput {
    /// The ACK for this 2xx arrived (matched by the dialog layer: §13.3.1.4 matches the
    /// ACK to the dialog, not to the transaction).
    Ack,
}

/// What the machine asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uas2xxOutput {
    /// Send these bytes (the 2xx) to the peer.
    Transmit(Bytes),
    /// No ACK within 64*T1: end the session with a BYE and record the call as failed.
    GiveUp,
}

/// The two timers of §13.3.1.4, in the order they fire when due at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Stop retransmitting and give up (64*T1).
    GiveUp,
    /// Retransmit the 2xx.
    Retransmit,
}

const TIMERS: usize = 2;

/// A 2xx retransmitter.
#[derive(Debug, Clone)]
pub struct Uas2xx {
    config: TimerConfig,
    timers: Timers<TIMERS>,
    response: Option<Bytes>,
    interval: Duration,
    outputs: VecDeque<Uas2xxOutput>,
}

impl Uas2xx {
    /// Starts retransmitting `response` (the serialised 2xx) and sends it at `now`.
    pub fn new(now: Instant, config: TimerConfig, response: Bytes) -> Self {
        let mut timers = Timers::new();
        timers.set(Timer::Retransmit as usize, now + config.t1);
        timers.set(Timer::GiveUp as usize, now + config.t1x64());
        let mut outputs = VecDeque::new();
        outputs.push_back(Uas2xxOutput::Transmit(response.clone()));
        Self {
            config,
            timers,
            response: Some(response),
            interval: config.t1,
            outputs,
        }
    }

    /// True once the ACK arrived or the machine gave up.
    pub fn is_done(&self) -> bool {
        self.response.is_none()
    }

    /// Feeds one input. Drain [`Uas2xx::poll_output`] afterwards.
    pub fn handle(&mut self, _now: Instant, input: Uas2xxInput) {
        match input {
            Uas2xxInput::Ack => self.finish(),
        }
    }

    /// Fires every timer due at `now`. Calling it early or twice is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(index) = self.timers.pop_due(now) {
            if index == Timer::GiveUp as usize {
                if !self.is_done() {
                    self.outputs.push_back(Uas2xxOutput::GiveUp);
                    self.finish();
                }
            } else if let Some(response) = &self.response {
                self.outputs
                    .push_back(Uas2xxOutput::Transmit(response.clone()));
                self.interval = self.config.backoff(self.interval);
                self.timers
                    .set(Timer::Retransmit as usize, now + self.interval);
            }
        }
    }

    /// The next output to act on. Call after creation and after every `handle*` call until
    /// it returns `None`.
    pub fn poll_output(&mut self) -> Option<Uas2xxOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Uas2xx::handle_timeout`] next; `None` once done. Call after draining
    /// [`Uas2xx::poll_output`], and re-arm the sleep with the answer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn finish(&mut self) {
        self.response = None;
        self.timers.clear_all();
    }
}
