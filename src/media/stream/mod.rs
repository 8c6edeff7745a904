//! The agent stream: one call's audio carried to and from a tenant's AI agent as JSON text
//! messages over a WebSocket (Twilio Media Streams, or Exotel's Voicebot stream), sans-IO.
//!
//! vca-sip is the WebSocket client. This machine does no IO, holds no socket and reads no
//! clock: its driver owns the socket, hands in the text messages it reads and `now`, and
//! sends the text messages the machine hands out.
//!
//! ```text
//!                      Media (frames, G.711 RTP)             text messages
//!   carrier leg ──bridge──> handle_input ─> [ StreamSession ] ─> poll_message ──> socket ──> agent
//!   carrier leg <──bridge── poll_media <── 20 ms playout <──── handle_message <── socket <── agent
//!                                            poll_stream_event: close, agent stop, clear, errors
//! ```
//!
//! The session is a [`Leg`] on its bridge side, so that a [`super::bridge::Bridge`] joins it
//! to the carrier's leg: it takes the caller's audio as [`Media::Frame`]s (20 ms or any other
//! length, re-framed) or as G.711 [`Media::Rtp`] (PCMU, PCMA; other payload types, such as
//! RFC 4733 telephone-events, are counted and dropped: digits come in decoded, through
//! [`StreamSession::handle_dtmf`]), and each 20 ms of it becomes one `media` message. It hands
//! out the agent's audio as one [`Media::Frame`] per 20 ms slot on a deadline clock
//! ([`playout`]), silence when nothing is queued. It has no network side of its own: the
//! WebSocket is not datagrams, so the message side is methods of its own
//! ([`StreamSession::handle_message`], [`StreamSession::poll_message`],
//! [`StreamSession::poll_stream_event`]) and [`Leg::poll_event`] reports nothing.
//!
//! ## Messages
//! On creation the session queues `connected` and `start` (with the stream, account and call
//! identifiers and the custom parameters); then a `media` message per 20 ms of the caller's
//! audio, a `dtmf` per digit, a `mark` echo per mark of the agent once the audio queued
//! before it has been played, and `stop` when the call hangs up. Every message but
//! `connected` carries a sequence number counting from 1; `media` messages carry a chunk
//! number counting from 1 and a timestamp, the milliseconds of stream time of their first
//! sample. The two dialects differ only in spelling and audio encoding: the docs of the
//! private modules `twilio` and `exotel` show every message of each.
//!
//! From the agent: `media` (base64 audio of any length: µ-law for Twilio, 16-bit PCM for
//! Exotel, a whole number of samples) is queued up to `max_queued_audio_ms`, past which the
//! newest audio is dropped and counted; `mark` is echoed when played; `clear` empties the
//! queue at once (the next slot plays silence) and echoes every pending mark in order;
//! `stop` is reported. Other events are ignored and counted.
//!
//! ## Errors and the end
//! A message that is not JSON, not an object with an `event`, a `media` without a payload,
//! with bad base64 or a partial sample, a `mark` without a name or past the mark limits, or a
//! binary message is refused whole, counted and reported as a
//! [`SessionEvent::ProtocolError`]; the stream goes on. A message longer than
//! `max_message_bytes` is reported too, and then [`SessionEvent::Close`] with code 1009
//! (RFC 6455 §7.4.1, message too big): the driver closes the socket with it. A driver whose
//! framing refuses such a message before reading it whole reports it with
//! [`StreamSession::handle_too_large`], to the same effect.
//! [`StreamSession::hang_up`] (the caller hung up, or the call ends) queues `stop` and then
//! reports [`SessionEvent::Close`] with code 1000. The agent's `stop` is
//! [`SessionEvent::AgentStopped`] (its queued audio still plays; the caller's audio is no
//! longer sent); the socket closing, which the driver reports with
//! [`StreamSession::handle_close`], is [`SessionEvent::AgentClosed`]. Once closed the session
//! sends nothing and ignores messages, but its playout goes on with silence, so that the
//! carrier always gets audio until the call drops the leg.
//!
//! ## Calling contract
//! As for every machine of this crate: after any `handle_*` call, drain
//! [`StreamSession::poll_message`], [`StreamSession::poll_stream_event`] and
//! [`Leg::poll_media`] until each says `None`, then wake the session at
//! [`Leg::poll_timeout`]. A message borrows the session until the next call on it. Message
//! buffers are reused, and the 20 ms paths (a caller frame in, a playout frame out) allocate
//! nothing once the queues have grown to their working size.

mod caller;
mod exotel;
pub mod playout;
mod twilio;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use self::caller::Framer;
use self::playout::{MarkRefused, Playout, PlayoutStats};
use self::wire::{AgentMessage, Ids, ReadError};
use super::g711;
use super::leg::{self, FRAME_SAMPLES, Input, Leg, LegEvent, Media, Transmit};
use super::rtp::Pt;
use crate::kinds::Codec;

/// Default for [`StreamConfig::max_queued_audio_ms`]: 30 s of agent audio.
pub const DEFAULT_MAX_QUEUED_AUDIO_MS: u32 = 30_000;

/// Default for [`StreamConfig::max_message_bytes`]: 1 MiB, about 90 s of µ-law in base64.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// WebSocket close code after the session's own `stop` (RFC 6455 §7.4.1, normal closure).
pub const CLOSE_NORMAL: u16 = 1000;

/// WebSocket close code for a message over the size limit (RFC 6455 §7.4.1, message too big).
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Message buffers kept for reuse once handed out.
const SPARE_BUFFERS: usize = 16;

/// Largest base64 decoding buffer kept between messages; one grown past it by a long
/// message is given back.
const KEPT_PAYLOAD_BYTES: usize = 64 * 1024;

/// Base64 as the agents write it (standard alphabet), with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which stream protocol the agent speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Twilio Media Streams: camelCase, µ-law.
    #[default]
    Twilio,
    /// Exotel's stream: snake_case, 16-bit linear PCM.
    Exotel,
}

/// What a session is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub dialect: Dialect,
    /// The stream's identifier (`streamSid`), unique per stream.
    pub stream_sid: String,
    /// The account (`accountSid`): the tenant's id.
    pub account_sid: String,
    /// The call (`callSid`): the call's id.
    pub call_sid: String,
    /// The `start` message's custom parameters: tenant_id, call_id, phone_number_id,
    /// ai_profile_id, from, to, called_raw and the AI profile's own parameters.
    pub custom_parameters: BTreeMap<String, String>,
    /// Most agent audio queued for playout, in milliseconds; past it the newest is dropped.
    /// It stops an agent that sends faster than real time from growing the queue without end.
    pub max_queued_audio_ms: u32,
    /// Longest message taken from the agent, in bytes; a longer one closes the socket (1009).
    /// It stops an agent from making the session hold and decode unbounded messages.
    pub max_message_bytes: usize,
}

impl StreamConfig {
    /// A configuration with no custom parameters and the default limits.
    pub fn new(dialect: Dialect, stream_sid: &str, account_sid: &str, call_sid: &str) -> Self {
        StreamConfig {
            dialect,
            stream_sid: stream_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            call_sid: call_sid.to_owned(),
            custom_parameters: BTreeMap::new(),
            max_queued_audio_ms: DEFAULT_MAX_QUEUED_AUDIO_MS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// A message from the agent that was refused. None ends the stream but
/// [`ProtocolError::TooLarge`]: see [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("message is not JSON")]
    NotJson,
    #[error("message is not an object with a string \"event\" and well-typed fields")]
    Malformed,
    #[error("media message without a payload")]
    MediaWithoutPayload,
    #[error("media payload is not base64")]
    BadBase64,
    #[error("media payload of {bytes} bytes is not a whole number of 16-bit samples")]
    PartialSample { bytes: usize },
    #[error("mark without a name")]
    MarkWithoutName,
    #[error(
        "mark name of {bytes} bytes is over the {} bytes allowed",
        playout::MAX_MARK_NAME_BYTES
    )]
    MarkNameTooLong { bytes: usize },
    #[error("more than {} marks pending", playout::MAX_PENDING_MARKS)]
    TooManyMarks,
    #[error("binary message of {bytes} bytes: the protocol is text")]
    Binary { bytes: usize },
    #[error("message of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
}

impl ProtocolError {
    /// The WebSocket close code the error calls for, when it ends the stream.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ProtocolError::TooLarge { .. } => Some(CLOSE_MESSAGE_TOO_BIG),
            _ => None,
        }
    }
}

/// A DTMF digit that is none of 0-9, *, #, A-D (the events 0-15 of RFC 4733 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
pub struct InvalidDigit(pub char);

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Close the socket with `code`, after sending the messages already handed out.
    Close { code: u16 },
    /// The agent sent `stop`.
    AgentStopped,
    /// The socket closed (as the driver reported), with the agent's close code if any.
    AgentClosed { code: Option<u16> },
    /// The agent's `clear` emptied the queue: `dropped` audio, `marks_echoed` marks echoed.
    Cleared {
        dropped: Duration,
        marks_echoed: usize,
    },
    /// Agent audio past `max_queued_audio_ms` was dropped (successive drops add up here
    /// until the driver takes the event).
    AudioDropped { dropped: Duration },
    /// A message from the agent was refused.
    ProtocolError(ProtocolError),
}

/// Counts of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Text and binary messages from the agent, until the session closed.
    pub messages_in: u64,
    /// Messages handed out.
    pub messages_out: u64,
    /// `media` messages of the caller's audio.
    pub caller_frames: u64,
    /// Caller audio inputs and digits not sent: the agent had stopped or the session closed.
    pub caller_dropped: u64,
    /// RTP packets of a payload type other than PCMU and PCMA.
    pub caller_unsupported: u64,
    /// `dtmf` messages.
    pub dtmf_digits: u64,
    /// The agent's `media` messages queued (in whole or in part).
    pub agent_media: u64,
    pub marks_echoed: u64,
    pub clears: u64,
    /// Messages of an event that is not read (ignored).
    pub unknown_events: u64,
    /// Messages refused ([`SessionEvent::ProtocolError`]).
    pub protocol_errors: u64,
    /// Messages that came after the session closed, ignored.
    pub after_close: u64,
    /// The playout's counts: frames, skipped slots, queued, dropped and cleared samples.
    pub playout: PlayoutStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The agent sent `stop`: nothing more of the caller's is sent.
    AgentStopped,
    /// Stopped and closed, or the socket is gone: nothing more is sent.
    Closed,
}

/// The messages to hand out, in order, with their buffers reused.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<String>,
    spare: Vec<String>,
    /// The message handed out last, kept until the next poll.
    taken: Option<String>,
}

impl Outbox {
    fn buffer(&mut self) -> String {
        self.spare.pop().unwrap_or_default()
    }

    fn push(&mut self, message: String) {
        self.queue.push_back(message);
    }

    fn poll(&mut self) -> Option<&str> {
        if let Some(mut done) = self.taken.take()
            && self.spare.len() < SPARE_BUFFERS
        {
            done.clear();
            self.spare.push(done);
        }
        self.taken = self.queue.pop_front();
        self.taken.as_deref()
    }
}

/// A message to write.
enum Outgoing<'a> {
    Connected,
    Start(&'a BTreeMap<String, String>),
    Media {
        place: u64,
        samples: &'a [i16; FRAME_SAMPLES],
    },
    Dtmf {
        digit: char,
        duration: Duration,
    },
    Mark(&'a str),
    Stop,
}

/// The agent stream of one call. See the module documentation.
#[derive(Debug)]
pub struct StreamSession {
    dialect: Dialect,
    ids: Ids,
    max_message_bytes: usize,
    start: Instant,
    state: State,
    /// The next message's sequence number, and the next media message's chunk number.
    seq: u64,
    chunk: u64,
    outbox: Outbox,
    events: VecDeque<SessionEvent>,
    playout: Playout,
    framer: Framer,
    frame_ready: bool,
    /// Decoded base64 of the agent's media, and encoded audio of the caller's.
    payload: Vec<u8>,
    scratch: Vec<u8>,
    stats: StreamStats,
}

impl StreamSession {
    /// A session whose stream starts at `now`, with `connected` and `start` queued and the
    /// first playout slot due at once.
    pub fn new(now: Instant, config: StreamConfig) -> Self {
        let mut session = StreamSession {
            dialect: config.dialect,
            ids: Ids::new(&config.stream_sid, &config.account_sid, &config.call_sid),
            max_message_bytes: config.max_message_bytes,
            start: now,
            state: State::Open,
            seq: 1,
            chunk: 1,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            playout: Playout::new(
                now,
                Duration::from_millis(config.max_queued_audio_ms.into()),
            ),
            framer: Framer::new(),
            frame_ready: false,
            payload: Vec::new(),
            scratch: Vec::new(),
            stats: StreamStats::default(),
        };
        session.send(Outgoing::Connected);
        session.send(Outgoing::Start(&config.custom_parameters));
        session
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Counts so far.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            playout: self.playout.stats(),
            ..self.stats
        }
    }

    /// Agent audio dropped because the queue was full, in all.
    pub fn dropped_audio(&self) -> Duration {
        samples_to_duration(self.playout.stats().dropped_samples)
    }

    /// When the next playout slot begins: the deadline of the next 20 ms frame to the
    /// carrier (the leg's own timeout may be earlier, for the caller's side).
    pub fn next_slot(&self) -> Instant {
        self.playout.poll_timeout()
    }

    /// Agent audio queued and not yet played.
    pub fn queued_audio(&self) -> Duration {
        self.playout.queued()
    }

    /// Whether the session has closed: it sends nothing more.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Takes one text message from the agent.
    pub fn handle_message(&mut self, _now: Instant, text: &str) {
        if self.state == State::Closed {
            self.stats.after_close += 1;
            return;
        }
        self.stats.messages_in += 1;
        if text.len() > self.max_message_bytes {
            self.too_large(text.len());
            return;
        }
        let message = match wire::read(text) {
            Ok(message) => message,
            Err(ReadError::NotJson) => return self.refuse(ProtocolError::NotJson),
            Err(ReadError::Malformed) => return self.refuse(ProtocolError::Malformed),
        };
        match message {
            AgentMessage::Media(Some(payload)) => self.queue_media(&payload),
            AgentMessage::Media(None) => self.refuse(ProtocolError::MediaWithoutPayload),
            AgentMessage::Mark(Some(name)) if !name.is_empty() => match self.playout.mark(&name) {
                Ok(()) => {
                    self.echo_due_marks();
                }
                Err(MarkRefused::TooMany) => self.refuse(ProtocolError::TooManyMarks),
                Err(MarkRefused::NameTooLong) => {
                    self.refuse(ProtocolError::MarkNameTooLong { bytes: name.len() })
                }
            },
            AgentMessage::Mark(_) => self.refuse(ProtocolError::MarkWithoutName),
            AgentMessage::Clear => {
                let dropped = self.playout.clear();
                let marks_echoed = self.echo_due_marks();
                self.stats.clears += 1;
                self.events.push_back(SessionEvent::Cleared {
                    dropped: samples_to_duration(dropped as u64),
                    marks_echoed,
                });
            }
            AgentMessage::Stop => {
                if self.state == State::Open {
                    self.state = State::AgentStopped;
                    self.events.push_back(SessionEvent::AgentStopped);
                }
            }
            AgentMessage::Other => self.stats.unknown_events += 1,
        }
    }

    /// Takes one binary message of `len` bytes from the agent: refused, since the protocol
    /// is text (and closing the socket when over the size limit).
    pub fn handle_binary(&mut self, _now: Instant, len: usize) {
        if self.state == State::Closed {
            self.stats.after_close += 1;
            return;
        }
        self.stats.messages_in += 1;
        if len > self.max_message_bytes {
            self.too_large(len);
        } else {
            self.refuse(ProtocolError::Binary { bytes: len });
        }
    }

    /// The driver's framing refused a message of at least `bytes` bytes, over
    /// `max_message_bytes`, before reading it whole (a WebSocket checks a frame's length
    /// first): refused and counted as [`ProtocolError::TooLarge`], then
    /// [`SessionEvent::Close`] with 1009, as for a long message handed in.
    pub fn handle_too_large(&mut self, _now: Instant, bytes: usize) {
        if self.state == State::Closed {
            self.stats.after_close += 1;
            return;
        }
        self.stats.messages_in += 1;
        self.too_large(bytes);
    }

    /// The socket closed, by the agent or under the driver, with the agent's close code if
    /// it sent one.
    pub fn handle_close(&mut self, _now: Instant, code: Option<u16>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.events.push_back(SessionEvent::AgentClosed { code });
    }

    /// The caller pressed `digit` (0-9, *, #, A-D; a-d are taken as A-D) for `duration`:
    /// one `dtmf` message.
    pub fn handle_dtmf(
        &mut self,
        _now: Instant,
        digit: char,
        duration: Duration,
    ) -> Result<(), InvalidDigit> {
        let upper = digit.to_ascii_uppercase();
        if !matches!(upper, '0'..='9' | '*' | '#' | 'A'..='D') {
            return Err(InvalidDigit(digit));
        }
        let digit = upper;
        if self.state != State::Open {
            self.stats.caller_dropped += 1;
            return Ok(());
        }
        self.send(Outgoing::Dtmf { digit, duration });
        self.stats.dtmf_digits += 1;
        Ok(())
    }

    /// The call ends (the caller hung up, or the call is torn down): `stop`, then
    /// [`SessionEvent::Close`] with [`CLOSE_NORMAL`]. Once closed, a no-op.
    pub fn hang_up(&mut self, _now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.send(Outgoing::Stop);
        self.state = State::Closed;
        self.events
            .push_back(SessionEvent::Close { code: CLOSE_NORMAL });
    }

    /// The next text message to send on the socket; call until `None` after every input.
    pub fn poll_message(&mut self) -> Option<&str> {
        self.outbox.poll()
    }

    /// What the session reports; call until `None` after every input.
    pub fn poll_stream_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn refuse(&mut self, error: ProtocolError) {
        self.stats.protocol_errors += 1;
        self.events.push_back(SessionEvent::ProtocolError(error));
    }

    fn too_large(&mut self, bytes: usize) {
        let error = ProtocolError::TooLarge {
            bytes,
            limit: self.max_message_bytes,
        };
        let code = error.close_code().unwrap_or(CLOSE_MESSAGE_TOO_BIG);
        self.refuse(error);
        self.state = State::Closed;
        self.events.push_back(SessionEvent::Close { code });
    }

    fn queue_media(&mut self, payload: &str) {
        self.payload.clear();
        if self.payload.capacity() > KEPT_PAYLOAD_BYTES {
            self.payload.shrink_to(KEPT_PAYLOAD_BYTES);
        }
        if BASE64.decode_vec(payload, &mut self.payload).is_err() {
            self.refuse(ProtocolError::BadBase64);
            return;
        }
        let dropped = match self.dialect {
            Dialect::Twilio => self.playout.push(twilio::samples(&self.payload)),
            Dialect::Exotel => {
                let Some(samples) = exotel::samples(&self.payload) else {
                    let bytes = self.payload.len();
                    self.refuse(ProtocolError::PartialSample { bytes });
                    return;
                };
                self.playout.push(samples)
            }
        };
        self.stats.agent_media += 1;
        if dropped > 0 {
            let more = samples_to_duration(dropped as u64);
            match self.events.back_mut() {
                Some(SessionEvent::AudioDropped { dropped }) => *dropped += more,
                _ => self
                    .events
                    .push_back(SessionEvent::AudioDropped { dropped: more }),
            }
        }
    }

    /// Echoes the marks whose audio has been played; returns how many.
    fn echo_due_marks(&mut self) -> usize {
        let mut n = 0;
        while let Some(name) = self.playout.pop_due_mark() {
            if self.state != State::Closed {
                self.send(Outgoing::Mark(&name));
                self.stats.marks_echoed += 1;
                n += 1;
            }
        }
        n
    }

    /// Takes caller audio whose first sample has the producer's timestamp `ts`.
    fn handle_caller(&mut self, now: Instant, ts: u32, restart: bool, samples: &[i16]) {
        let arrived = duration_to_samples(now.saturating_duration_since(self.start));
        if let Some((place, frame)) = self.framer.place(ts, restart, arrived) {
            self.send(Outgoing::Media {
                place,
                samples: &frame,
            });
        }
        let mut rest = samples;
        while !rest.is_empty() {
            let n = self.framer.fill(rest);
            rest = rest.get(n..).unwrap_or_default();
            if let Some((place, frame)) = self.framer.take_full() {
                self.send(Outgoing::Media {
                    place,
                    samples: &frame,
                });
            }
        }
    }

    fn send(&mut self, message: Outgoing<'_>) {
        let mut out = self.outbox.buffer();
        let seq = self.seq;
        let ids = &self.ids;
        let numbered = !matches!(message, Outgoing::Connected);
        match (self.dialect, message) {
            (Dialect::Twilio, Outgoing::Connected) => twilio::connected(&mut out),
            (Dialect::Exotel, Outgoing::Connected) => exotel::connected(&mut out),
            (Dialect::Twilio, Outgoing::Start(params)) => twilio::start(&mut out, seq, ids, params),
            (Dialect::Exotel, Outgoing::Start(params)) => exotel::start(&mut out, seq, ids, params),
            (dialect, Outgoing::Media { place, samples }) => {
                let (chunk, ms) = (self.chunk, place / playout::SAMPLES_PER_MS);
                let scratch = &mut self.scratch;
                match dialect {
                    Dialect::Twilio => {
                        twilio::media(&mut out, seq, ids, chunk, ms, samples, scratch)
                    }
                    Dialect::Exotel => {
                        exotel::media(&mut out, seq, ids, chunk, ms, samples, scratch)
                    }
                }
                self.chunk += 1;
                self.stats.caller_frames += 1;
            }
            (Dialect::Twilio, Outgoing::Dtmf { digit, .. }) => {
                twilio::dtmf(&mut out, seq, ids, digit)
            }
            (Dialect::Exotel, Outgoing::Dtmf { digit, duration }) => {
                let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                exotel::dtmf(&mut out, seq, ids, digit, ms)
            }
            (Dialect::Twilio, Outgoing::Mark(name)) => twilio::mark(&mut out, seq, ids, name),
            (Dialect::Exotel, Outgoing::Mark(name)) => exotel::mark(&mut out, seq, ids, name),
            (Dialect::Twilio, Outgoing::Stop) => twilio::stop(&mut out, seq, ids),
            (Dialect::Exotel, Outgoing::Stop) => exotel::stop(&mut out, seq, ids),
        }
        if numbered {
            self.seq += 1;
        }
        self.outbox.push(out);
        self.stats.messages_out += 1;
    }
}

impl Leg for StreamSession {
    /// The caller's audio, from the bridge: frames of linear audio, or G.711 RTP packets.
    /// Datagrams cannot reach the session (it has no socket of its own) and are ignored.
    fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let Input::Media(media) = input else {
            return;
        };
        if self.state != State::Open {
            self.stats.caller_dropped += 1;
            return;
        }
        match media {
            Media::Frame(frame) => self.handle_caller(now, frame.timestamp, false, frame.samples),
            Media::Rtp(packet) => {
                let codec = match packet.header.payload_type {
                    Pt::PCMU => Codec::Pcmu,
                    Pt::PCMA => Codec::Pcma,
                    _ => {
                        self.stats.caller_unsupported += 1;
                        return;
                    }
                };
                let mut restart = packet.stream != leg::StreamEvent::Continue;
                let mut ts = packet.header.timestamp;
                let mut pcm = [0i16; FRAME_SAMPLES];
                for codes in packet.payload.chunks(FRAME_SAMPLES) {
                    let n = g711::decode(codec, codes, &mut pcm);
                    self.handle_caller(now, ts, restart, pcm.get(..n).unwrap_or_default());
                    ts = ts.wrapping_add(n as u32);
                    restart = false;
                }
            }
        }
    }

    /// Plays the slot due: one frame of the agent's audio (or silence) for
    /// [`Leg::poll_media`], and the echoes of the marks it played past.
    fn handle_timeout(&mut self, now: Instant) {
        if self.playout.handle_timeout(now) {
            self.frame_ready = true;
            self.echo_due_marks();
        }
    }

    /// The frame played last, once.
    fn poll_media(&mut self) -> Option<Media<'_>> {
        if !std::mem::take(&mut self.frame_ready) {
            return None;
        }
        Some(Media::Frame(self.playout.frame()))
    }

    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        None
    }

    /// Nothing: what the session reports is [`StreamSession::poll_stream_event`]'s.
    fn poll_event(&mut self) -> Option<LegEvent> {
        None
    }

    /// The next playout slot: always one, so that the carrier always gets audio.
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.playout.poll_timeout())
    }
}

fn samples_to_duration(samples: u64) -> Duration {
    // 125 µs per sample at 8 kHz.
    Duration::from_micros(samples.saturating_mul(125))
}

fn duration_to_samples(d: Duration) -> u64 {
    u64::try_from(d.as_micros() / 125).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
