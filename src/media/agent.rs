//! The agent side of a stream call: what a call gives the media shard to open its agent's
//! WebSocket ([`AgentStart`]), what the session tells the call while it runs
//! ([`AgentNotice`]), and the leg that joins the carrier's RTP to the agent stream
//! ([`AgentLeg`]), sans-IO.
//!
//! ```text
//!   RtpLeg ──Media::Rtp──> JitterBuffer ──one 20 ms frame per slot──> g711 decode ──┐
//!                    └───> DtmfDetector ──digit──> StreamSession::handle_dtmf        │
//!                                                                                    ▼
//!   RtpLeg <──Media::Frame── StreamSession's playout (20 ms deadline clock) <── StreamSession
//! ```
//!
//! The leg is side B of a [`super::bridge::Bridge`] whose side A is the carrier's
//! [`super::rtp_leg::RtpLeg`]. Every RTP packet the carrier leg hands out goes to the jitter
//! buffer (audio and telephone-events alike, so that the sequence accounting sees them all)
//! and to the DTMF detector; the buffer's frames are decoded to linear audio and given to the
//! [`StreamSession`], but only once the WebSocket is up ([`AgentLeg::set_connected`]): the
//! agent's stream starts with its `connected` and `start` messages, and the caller's audio
//! of the connect time is not queued for it. The session's playout hands out one frame per
//! 20 ms slot, silence until the agent sends audio, and the bridge gives it to the carrier
//! leg, which encodes and sends it: the caller hears silence from the start, as early media
//! too. The jitter buffer, the detector and the playout all run on deadlines; the leg's
//! deadline is the earliest.
//!
//! A recorded call ([`AgentLeg::record`]) also lays both sides out on the call's 20 ms slots
//! ([`super::recording`]): each frame of the jitter buffer, decoded, in the slot its audio
//! arrived in (connected or not), and each frame of the playout in the slot it is played
//! out in; the driver takes the stereo batches with [`AgentLeg::poll_recording`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dtmf::DtmfDetector;
use super::g711;
use super::jitter::{JitterBuffer, JitterConfig};
use super::leg::{FRAME_SAMPLES, Frame, Input, Leg, LegEvent, Media, StreamEvent, Transmit};
use super::recording::{Batch, CallerClock, FramerStats, StereoFramer, slot_of};
use super::rtp::Pt;
use super::session::MediaConfig;
use super::stream::{InvalidDigit, StreamConfig, StreamSession};
use crate::kinds::Codec;

/// What the shard needs to open the agent's WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStart {
    /// Where the call's audio is recorded, when it is.
    pub recording: Option<super::recorder::RecordingTap>,
    /// The `ws://` or `wss://` URL as configured (path and query kept).
    pub url: String,
    /// The URL's host resolved and already checked by the caller; tried in order.
    pub addrs: Vec<SocketAddr>,
    /// Sent as `Authorization: Bearer ...` on the upgrade.
    pub auth_token: Option<String>,
    /// Extra PEM roots for `wss://`; without them the public web roots are used.
    pub ca_pem: Option<String>,
    /// How long connecting may take, from the start through the upgrade's 101 (all
    /// addresses and the TLS handshake included).
    pub connect_timeout: Duration,
    pub stream: StreamConfig,
}

/// What the session tells its call while it runs, through a bounded channel: the shard
/// never waits on it, and a notice that finds it full is dropped and counted
/// ([`super::session::MediaStats::notices_dropped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentNotice {
    /// The WebSocket is upgraded, `connected` and `start` sent.
    Connected,
    /// Connecting failed: refused, TLS failure, HTTP error or redirect on the upgrade,
    /// timeout. The reason, for the call record; the session then ends with
    /// [`super::session::MediaEnd::AgentUnreachable`].
    Unreachable(String),
    /// A digit sent to the agent (from the caller's RTP or a SIP INFO).
    Dtmf(char),
    /// The agent's `clear`: its queued audio dropped and `marks` marks echoed.
    Cleared { marks: usize },
}

/// How long a digit from a SIP INFO without a duration is said to have been held.
pub const INFO_DIGIT_DURATION: Duration = Duration::from_millis(100);

/// Digits kept for [`AgentLeg::poll_digit`]; the driver drains them after every input.
const DIGITS: usize = 16;

/// The agent side of a stream call. See the module documentation.
#[derive(Debug)]
pub struct AgentLeg {
    session: StreamSession,
    jitter: JitterBuffer,
    dtmf: Option<DtmfDetector>,
    codec: Codec,
    connected: bool,
    /// Digits sent to the agent, for the call's notices.
    digits: VecDeque<char>,
    pcm: [i16; FRAME_SAMPLES],
    audio_pt: Pt,
    /// The call's recording, when it is recorded (boxed: most calls are not).
    recording: Option<Box<LegRecording>>,
}

/// A recorded call's two sides on its slot timeline.
#[derive(Debug)]
struct LegRecording {
    framer: StereoFramer,
    caller: CallerClock,
    start: Instant,
    /// The last time the leg was woken: the playout's frames are for its slot.
    last: Instant,
}

impl AgentLeg {
    /// A leg whose clocks start at `now`, for a call answered with `config`.
    pub fn new(now: Instant, config: &MediaConfig, stream: StreamConfig) -> Self {
        let codec = if config.audio_pt == Pt::PCMA {
            Codec::Pcma
        } else {
            Codec::Pcmu
        };
        AgentLeg {
            session: StreamSession::new(now, stream),
            jitter: JitterBuffer::new(now, &JitterConfig::new(config.audio_pt, codec), 0),
            dtmf: config
                .event_pt
                .map(|pt| DtmfDetector::new(pt, codec.clock_rate())),
            codec,
            connected: false,
            digits: VecDeque::with_capacity(DIGITS),
            pcm: [0; FRAME_SAMPLES],
            audio_pt: config.audio_pt,
            recording: None,
        }
    }

    /// Records the call from `start` (the leg's own start) on: slot 0 begins then.
    pub fn record(&mut self, start: Instant) {
        self.recording = Some(Box::new(LegRecording {
            framer: StereoFramer::new(),
            caller: CallerClock::new(start),
            start,
            last: start,
        }));
    }

    /// A batch of the recording's final slots; call until `None` after every input.
    pub fn poll_recording(&mut self) -> Option<Batch> {
        self.recording.as_mut()?.framer.poll_batch()
    }

    /// Ends the recording with the slot of the leg's last wake-up; its last batches then
    /// come out of [`AgentLeg::poll_recording`]. Returns the slots recorded.
    pub fn finish_recording(&mut self) -> Option<u64> {
        let rec = self.recording.as_mut()?;
        rec.framer
            .finish(slot_of(rec.start, rec.last).saturating_add(1));
        Some(rec.framer.slots())
    }

    /// The recording's counts, when the call is recorded.
    pub fn recording_stats(&self) -> Option<FramerStats> {
        self.recording.as_ref().map(|r| r.framer.stats())
    }

    pub fn session(&self) -> &StreamSession {
        &self.session
    }

    /// The stream session, for the driver's message side (handle_message, poll_message, ...).
    pub fn session_mut(&mut self) -> &mut StreamSession {
        &mut self.session
    }

    pub fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// The WebSocket is up: the caller's audio goes to the agent from the next frame on.
    pub fn set_connected(&mut self) {
        self.connected = true;
    }

    /// A digit the call received (a SIP INFO): sent to the agent as a `dtmf` message.
    pub fn handle_info_digit(&mut self, now: Instant, digit: char) -> Result<(), InvalidDigit> {
        self.session.handle_dtmf(now, digit, INFO_DIGIT_DURATION)?;
        self.note_digit(digit.to_ascii_uppercase());
        Ok(())
    }

    /// A digit sent to the agent since the last call; call until `None` after every input.
    pub fn poll_digit(&mut self) -> Option<char> {
        self.digits.pop_front()
    }

    fn note_digit(&mut self, digit: char) {
        note(&mut self.digits, digit);
    }
}

fn note(digits: &mut VecDeque<char>, digit: char) {
    if digits.len() < DIGITS {
        digits.push_back(digit);
    }
}

/// Sends the digits the detector found to the agent, one `dtmf` message each.
fn forward_digits(
    now: Instant,
    dtmf: &mut DtmfDetector,
    session: &mut StreamSession,
    digits: &mut VecDeque<char>,
) {
    while let Some(d) = dtmf.poll_digit() {
        let digit = d.digit.as_char();
        let duration = d.duration.unwrap_or(INFO_DIGIT_DURATION);
        if session.handle_dtmf(now, digit, duration).is_ok() {
            note(digits, digit);
        }
    }
}

impl Leg for AgentLeg {
    /// The caller's RTP from the carrier leg: into the jitter buffer and the DTMF detector.
    fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let Input::Media(Media::Rtp(packet)) = input else {
            return;
        };
        self.jitter.handle_packet(now, &packet);
        if let Some(rec) = &mut self.recording
            && packet.header.payload_type == self.audio_pt
        {
            let restart = packet.stream == StreamEvent::Restart;
            rec.caller
                .handle_packet(now, packet.header.ssrc, packet.header.timestamp, restart);
        }
        if let Some(dtmf) = &mut self.dtmf {
            dtmf.handle_packet(now, &packet);
            forward_digits(now, dtmf, &mut self.session, &mut self.digits);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.jitter.poll_timeout() <= now {
            self.jitter.handle_timeout(now);
            if let Some(frame) = self.jitter.poll_frame()
                && (self.connected || self.recording.is_some())
            {
                let n = g711::decode(self.codec, frame.payload, &mut self.pcm);
                let samples = self.pcm.get(..n).unwrap_or_default();
                if let Some(rec) = &mut self.recording
                    && let Some(slot) = rec.caller.slot(now, frame.origin)
                {
                    rec.framer.left(slot, samples);
                }
                if self.connected {
                    let frame = Frame {
                        timestamp: frame.timestamp,
                        samples,
                    };
                    self.session
                        .handle_input(now, Input::Media(Media::Frame(frame)));
                }
            }
        }
        if let Some(rec) = &mut self.recording {
            rec.last = now;
            rec.framer.advance(slot_of(rec.start, now));
        }
        if let Some(dtmf) = &mut self.dtmf
            && dtmf.poll_timeout().is_some_and(|t| t <= now)
        {
            dtmf.handle_timeout(now);
            forward_digits(now, dtmf, &mut self.session, &mut self.digits);
        }
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
    }

    /// The playout's frame for the carrier leg, once per slot.
    fn poll_media(&mut self) -> Option<Media<'_>> {
        let media = self.session.poll_media()?;
        if let (Some(rec), Media::Frame(frame)) = (&mut self.recording, &media) {
            rec.framer
                .right(slot_of(rec.start, rec.last), frame.samples);
        }
        Some(media)
    }

    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        None
    }

    fn poll_event(&mut self) -> Option<LegEvent> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.jitter.poll_timeout();
        if let Some(t) = self.session.poll_timeout() {
            next = next.min(t);
        }
        if let Some(t) = self.dtmf.as_ref().and_then(DtmfDetector::poll_timeout) {
            next = next.min(t);
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests;
