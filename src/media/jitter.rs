//! The jitter buffer and re-framer of one incoming G.711 RTP stream (RFC 3550 §5.1, with the
//! sequence accounting of §A.1 and §A.3): packets of any packet time, reordered, duplicated,
//! lost or late, in; exactly one 20 ms frame per 20 ms slot out, on a deadline clock.
//! Sans-IO: the time is passed in, and nothing reads a clock or a socket.
//!
//! ```text
//!   every RTP packet of the stream ──handle_packet(now, &RtpMedia)──┐
//!                                                                    ▼
//!     sequence accounting (all payload types) ── lost, duplicate, reordered
//!                                                                    │ audio PT only
//!                                                                    ▼
//!     timeline: sender timestamp + the stream's offset ── late, out of range
//!                                                                    │ one byte a sample
//!                                                                    ▼
//!     512 ms ring ──> playout cursor ──handle_timeout(now)──> poll_frame: 160 bytes
//!                                       at start + n * 20 ms
//! ```
//!
//! This is the seam between the carrier's RTP and an agent stream, which must get one 20 ms
//! frame per 20 ms of call time with continuous timestamps. The agent stream leg feeds every
//! [`RtpMedia`] it is handed to [`JitterBuffer::handle_packet`] (and to a
//! [`super::dtmf::DtmfDetector`]), wakes the buffer at [`JitterBuffer::poll_timeout`] and sends
//! what [`JitterBuffer::poll_frame`] hands out after each [`JitterBuffer::handle_timeout`].
//!
//! # Payload bytes, not samples
//! The buffer keeps G.711 payload bytes (PCMU or PCMA, one byte per 8 kHz sample) and hands
//! out 160 bytes a frame in the stream's own codec; decoding or transcoding is the caller's
//! (an agent stream that speaks mu-law sends PCMU frames as they are). Because a G.711 byte
//! is a sample, a packet's length in samples is its payload length: 10, 20, 30 or 40 ms
//! packets (or any other length) are placed by their timestamp and length, never by the SDP's
//! `ptime`.
//!
//! # The output clock
//! Slot `n` is due at `start + n * 20 ms`, where `start` is the `now` the buffer was made at;
//! [`JitterBuffer::poll_timeout`] is always the next slot. A tick that comes late hands out one
//! frame, the newest slot's, and skips the slots it missed (their audio is discarded and
//! counted in [`JitterStats::skipped_slots`]): no burst of frames, and the next deadline stays
//! on the 20 ms grid. Output timestamps start at the caller's base and grow by 160 per frame
//! handed out, whatever the input does.
//!
//! # The timeline
//! Each stream (one SSRC) is anchored at its first audio packet: that packet's first sample
//! plays `initial_delay` after it arrived, or right after the audio still buffered from the
//! previous stream, whichever is later. Later packets are placed at their timestamp's
//! distance from the anchor (unwrapped across the 32-bit wrap), so reordered packets and mixed
//! packet times simply land where they belong; a sender's silence suppression, whose
//! timestamps keep pace with time, leaves a gap that plays as silence. A new SSRC (or the
//! latch's [`StreamEvent::Restart`]) re-anchors; sequence numbers are then counted afresh, so
//! a stream change is not counted as loss.
//!
//! Audio that cannot be placed — further ahead than the ring holds, or later than
//! `max_delay` behind the playout point — is a timestamp jump when it keeps coming: after 200
//! ms of arrivals with nothing placeable the stream is re-anchored on the newest packet
//! ([`JitterStats::resyncs`]). A burst of old packets after a network outage ends well before
//! that and is dropped as late.
//!
//! # Concealment
//! A sample that is missing at its playout point (lost, late, or the sender was silent) plays
//! as the codec's silence byte. Silence was chosen over repeating the previous frame: a 20 ms
//! G.711 repeat cannot be faded without decoding and buzzes on a burst of loss, which harms a
//! speech recogniser more than a gap.
//!
//! # Adaptive delay
//! The buffer measures each packet's lead: how long before its first sample's playout it
//! arrived. The delay moves in whole frames:
//! - a late packet raises it by one frame (a frame of silence is inserted and everything after
//!   plays 20 ms later), unless that would make the earliest arrivals of the last two to four
//!   seconds lead by more than `max_delay`;
//! - after a two-second window with no late packet in which every packet led by at least
//!   `min_lead` + 20 ms, it drops one frame of audio (or, when even the latest packet led by
//!   more than `max_delay`, as many frames as bring the lead back to `initial_delay`);
//! - after such a window in which the latest packet led by less than half of `min_lead`, it
//!   is raised by a frame before anything comes late.
//!
//! This keeps the latest arrivals about `min_lead` ahead of their playout, and absorbs a
//! sender whose clock runs faster or slower than ours. The frame dropped is whatever plays
//! next: G.711 bytes are not decoded here to look for a quiet one.

use std::time::{Duration, Instant};

use super::leg::{FRAME_SAMPLES, RtpMedia, StreamEvent};
use super::rtp::{Pt, Ssrc};
use crate::kinds::Codec;

/// The output frame interval.
pub const SLOT: Duration = Duration::from_millis(20);

/// The longest `max_delay` honoured: the ring (512 ms) must still hold the largest packet on
/// top of it.
pub const MAX_DELAY_LIMIT: Duration = Duration::from_millis(300);

/// Largest payload placed, in bytes (samples): 240 ms, longer than any datagram carries.
pub const MAX_PACKET_SAMPLES: usize = 1920;

const SLOT_US: i64 = 20_000;
/// One sample at 8 kHz, in microseconds.
const SAMPLE_US: i64 = 125;
const FRAME: i64 = FRAME_SAMPLES as i64;
/// Samples the ring holds: 512 ms at 8 kHz.
const RING: usize = 4096;
const RING_I: i64 = RING as i64;
/// Slots in one window of lead measurements (2 s).
const WINDOW_SLOTS: u32 = 100;
/// How long audio must keep arriving unplaceable before the stream is re-anchored.
const RESYNC_AFTER: Duration = Duration::from_millis(200);
/// RFC 3550 §A.1: a sequence number this far ahead is a jump, not a gap.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 §A.1: a sequence number up to this far behind is a reordered packet.
const MAX_MISORDER: u16 = 100;
/// Sequence numbers behind the highest whose arrival is remembered (to tell duplicates).
const SEQ_WINDOW: u16 = 64;

/// The silence byte of a G.711 codec: the encoding of a zero sample.
fn silence_byte(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xff,
        Codec::Pcma => 0xd5,
    }
}

/// How a jitter buffer plays out one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// The audio payload type of the SDP answer: packets of other types (telephone-event,
    /// comfort noise) are counted in the sequence but not played.
    pub audio_pt: Pt,
    /// The codec of `audio_pt`, which gives the silence byte.
    pub codec: Codec,
    /// How long after its arrival a stream's first packet plays.
    pub initial_delay: Duration,
    /// How far ahead of its playout the latest packets should arrive; the delay is lowered
    /// only while every packet leads by this plus a frame.
    pub min_lead: Duration,
    /// The bound on the delay: it is not raised past this (at most [`MAX_DELAY_LIMIT`]), and
    /// a packet later than this behind its playout point cannot be rescued.
    pub max_delay: Duration,
}

impl JitterConfig {
    /// The defaults: 60 ms initial delay, 20 ms minimum lead, 200 ms bound.
    pub fn new(audio_pt: Pt, codec: Codec) -> Self {
        JitterConfig {
            audio_pt,
            codec,
            initial_delay: Duration::from_millis(60),
            min_lead: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// Counts of one jitter buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames handed out.
    pub frames: u64,
    /// RTP packets handed in, of every payload type.
    pub packets: u64,
    /// Sequence numbers that never arrived (RFC 3550 §6.4.1 cumulative loss, duplicates
    /// left out; a reordered packet that fills a gap takes its count back).
    pub lost: u64,
    /// Audio packets that arrived after (part of) their audio was played; what was still
    /// ahead of the playout point is kept.
    pub late: u64,
    /// Packets whose sequence number had already arrived: dropped.
    pub duplicate: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Audio packets that could not be placed: too far ahead for the ring, or too long.
    pub out_of_range: u64,
    /// Packets of another payload type (telephone-event, comfort noise): not played.
    pub other_pt: u64,
    /// Samples played as silence for want of audio (inserted frames included), from the
    /// first audio sample on.
    pub concealed_samples: u64,
    /// Slots missed by a late tick: no frame was handed out for them.
    pub skipped_slots: u64,
    /// Frames of silence inserted to raise the delay.
    pub delay_raised: u64,
    /// Frames of audio dropped to lower the delay.
    pub delay_lowered: u64,
    /// New streams after the first (SSRC changes).
    pub restarts: u64,
    /// Re-anchorings of a stream whose timestamps jumped.
    pub resyncs: u64,
}

/// A place on a sender's timeline: its SSRC and an RTP timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPosition {
    pub ssrc: Ssrc,
    pub timestamp: u32,
}

/// One 20 ms frame handed out by [`JitterBuffer::poll_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterFrame<'a> {
    /// The frame's place on the output clock: the base given to [`JitterBuffer::new`] plus
    /// 160 per frame handed out before it (wrapping).
    pub timestamp: u32,
    /// [`FRAME_SAMPLES`] G.711 bytes in the stream's codec.
    pub payload: &'a [u8],
    /// How many of them are silence put in for missing audio.
    pub concealed: usize,
    /// Where the frame's first sample lies on the current stream's timeline, so that what is
    /// stamped on that timeline (an RFC 4733 event's timestamp) can be ordered against the
    /// audio. `None` before the current stream's first audio packet and for a frame of
    /// silence inserted to raise the delay.
    pub origin: Option<RtpPosition>,
}

/// How a sequence number stands against those seen (RFC 3550 §A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqClass {
    Next,
    Reordered,
    Duplicate,
    Jump,
}

/// The sequence accounting of one stream: the highest sequence number, which of the
/// [`SEQ_WINDOW`] below it arrived, and a pending jump.
#[derive(Debug, Clone, Copy, Default)]
struct SeqTrack {
    started: bool,
    max: u16,
    /// Bit i: `max - i` arrived.
    window: u64,
    /// RFC 3550 §A.1: after a jump, the number that must come next to restart the count.
    bad_seq: Option<u16>,
}

impl SeqTrack {
    fn restart(&mut self, seq: u16) {
        self.started = true;
        self.max = seq;
        self.window = 1;
        self.bad_seq = None;
    }

    fn classify(&mut self, seq: u16, lost: &mut u64) -> SeqClass {
        if !self.started {
            self.restart(seq);
            return SeqClass::Next;
        }
        let ahead = seq.wrapping_sub(self.max);
        if ahead == 0 {
            return SeqClass::Duplicate;
        }
        if ahead < MAX_DROPOUT {
            *lost += u64::from(ahead - 1);
            self.window = self.window.checked_shl(u32::from(ahead)).unwrap_or(0) | 1;
            self.max = seq;
            self.bad_seq = None;
            return SeqClass::Next;
        }
        let behind = self.max.wrapping_sub(seq);
        if behind <= MAX_MISORDER {
            if behind >= SEQ_WINDOW {
                // Too old to tell a duplicate from a straggler: counted as reordered only.
                return SeqClass::Reordered;
            }
            let bit = 1u64 << behind;
            if self.window & bit != 0 {
                return SeqClass::Duplicate;
            }
            self.window |= bit;
            *lost = lost.saturating_sub(1);
            return SeqClass::Reordered;
        }
        if self.bad_seq == Some(seq) {
            // Two packets in a row after the jump: the sender restarted its numbering.
            self.restart(seq);
            SeqClass::Next
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            SeqClass::Jump
        }
    }
}

/// Where a stream's samples go: timeline position = unwrapped timestamp + `offset`.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    offset: i64,
    /// The newest timestamp placed, and its unwrapped value: the reference for unwrapping.
    last_ts: u32,
    last_ext: i64,
}

impl Timeline {
    /// A timeline on which `ts` lands at `pos`.
    fn anchored(ts: u32, pos: i64) -> Self {
        Timeline {
            offset: pos - i64::from(ts),
            last_ts: ts,
            last_ext: i64::from(ts),
        }
    }

    /// `ts` unwrapped: the nearest value to the reference on the 32-bit circle.
    fn extend(&self, ts: u32) -> i64 {
        self.last_ext + i64::from(ts.wrapping_sub(self.last_ts).cast_signed())
    }

    fn note(&mut self, ts: u32, ext: i64) {
        if ext > self.last_ext {
            self.last_ts = ts;
            self.last_ext = ext;
        }
    }
}

/// The stream being received.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: Ssrc,
    seq: SeqTrack,
    /// Set by the stream's first audio packet.
    timeline: Option<Timeline>,
    /// Since when audio has arrived that could not be placed.
    unplaceable_since: Option<Instant>,
}

/// A delay change waiting for the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adjust {
    None,
    /// Insert a frame of silence: everything plays 20 ms later.
    Hold,
    /// Drop this many frames of audio: everything plays that much sooner.
    Skip(u32),
}

/// Lead measurements of the current window, in microseconds, and the previous window's
/// largest.
#[derive(Debug, Clone, Copy, Default)]
struct Leads {
    slots: u32,
    min: Option<i64>,
    max: Option<i64>,
    late: bool,
    prev_max: Option<i64>,
}

impl Leads {
    fn record(&mut self, lead: i64) {
        self.min = Some(self.min.map_or(lead, |m| m.min(lead)));
        self.max = Some(self.max.map_or(lead, |m| m.max(lead)));
    }

    /// The largest lead of this window and the previous one.
    fn recent_max(&self) -> Option<i64> {
        match (self.max, self.prev_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves every measurement by `by`, as a delay change moves every lead.
    fn shift(&mut self, by: i64) {
        self.min = self.min.map(|m| m + by);
        self.max = self.max.map(|m| m + by);
        self.prev_max = self.prev_max.map(|m| m + by);
    }

    fn next_window(&mut self) {
        *self = Leads {
            prev_max: self.max,
            ..Leads::default()
        };
    }
}

/// A frame made and not yet taken.
#[derive(Debug, Clone, Copy)]
struct Ready {
    timestamp: u32,
    concealed: usize,
    origin: Option<RtpPosition>,
}

/// The jitter buffer and re-framer of one call's incoming audio. See the module
/// documentation for the calling contract.
#[derive(Debug)]
pub struct JitterBuffer {
    audio_pt: Pt,
    silence: u8,
    initial_us: i64,
    min_lead_us: i64,
    max_delay_us: i64,
    start: Instant,
    /// The slot the next frame is for.
    next_slot: u64,
    /// Timeline position of the next frame's first sample.
    cursor: i64,
    /// The end of the newest audio placed.
    newest_end: i64,
    stream: Option<Stream>,
    /// Where the first audio ever placed begins: silence before it is the initial delay,
    /// not concealment.
    first_audio: Option<i64>,
    adjust: Adjust,
    leads: Leads,
    next_timestamp: u32,
    ready: Option<Ready>,
    stats: JitterStats,
    frame: [u8; FRAME_SAMPLES],
    ring: [u8; RING],
    /// Bit per ring sample: holds audio not yet played.
    filled: [u64; RING / 64],
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `to - from` in microseconds, negative when `to` is earlier.
fn micros_between(from: Instant, to: Instant) -> i64 {
    match to.checked_duration_since(from) {
        Some(d) => micros(d),
        None => -micros(from.duration_since(to)),
    }
}

fn ring_index(pos: i64) -> usize {
    // rem_euclid of a positive modulus is in 0..RING.
    usize::try_from(pos.rem_euclid(RING_I)).unwrap_or(0)
}

impl JitterBuffer {
    /// A buffer whose first slot is due at `now`, handing out frames stamped from
    /// `first_timestamp` on. Delays are bounded as [`JitterConfig`] says: `max_delay` to
    /// [`MAX_DELAY_LIMIT`], `initial_delay` to `max_delay`, `min_lead` to `initial_delay`.
    pub fn new(now: Instant, config: &JitterConfig, first_timestamp: u32) -> Self {
        let max_delay_us = micros(config.max_delay.min(MAX_DELAY_LIMIT));
        let initial_us = micros(config.initial_delay).min(max_delay_us);
        let min_lead_us = micros(config.min_lead).min(initial_us);
        let silence = silence_byte(config.codec);
        JitterBuffer {
            audio_pt: config.audio_pt,
            silence,
            initial_us,
            min_lead_us,
            max_delay_us,
            start: now,
            next_slot: 0,
            cursor: 0,
            newest_end: 0,
            stream: None,
            first_audio: None,
            adjust: Adjust::None,
            leads: Leads::default(),
            next_timestamp: first_timestamp,
            ready: None,
            stats: JitterStats::default(),
            frame: [silence; FRAME_SAMPLES],
            ring: [silence; RING],
            filled: [0; RING / 64],
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// How much audio is buffered ahead of the playout point.
    pub fn buffered(&self) -> Duration {
        let samples = u64::try_from(self.newest_end - self.cursor).unwrap_or(0);
        Duration::from_micros(samples * SAMPLE_US.unsigned_abs())
    }

    /// Takes one RTP packet of the stream at `now`. Give it every packet of the stream, of
    /// every payload type: an RFC 4733 event shares the stream's sequence numbers, so leaving
    /// one out would count it as lost. Only the audio payload type is played.
    pub fn handle_packet(&mut self, now: Instant, packet: &RtpMedia<'_>) {
        self.stats.packets += 1;
        let header = &packet.header;
        let new_stream = match &self.stream {
            None => true,
            Some(s) => s.ssrc != header.ssrc || packet.stream == StreamEvent::Restart,
        };
        if new_stream {
            if self.stream.is_some() {
                self.stats.restarts += 1;
            }
            self.stream = Some(Stream {
                ssrc: header.ssrc,
                seq: SeqTrack::default(),
                timeline: None,
                unplaceable_since: None,
            });
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        match stream
            .seq
            .classify(header.sequence_number, &mut self.stats.lost)
        {
            SeqClass::Duplicate => {
                self.stats.duplicate += 1;
                return;
            }
            SeqClass::Reordered => self.stats.reordered += 1,
            SeqClass::Next | SeqClass::Jump => {}
        }
        if header.payload_type != self.audio_pt {
            self.stats.other_pt += 1;
            return;
        }
        if packet.payload.is_empty() {
            return;
        }
        if packet.payload.len() > MAX_PACKET_SAMPLES {
            self.stats.out_of_range += 1;
            return;
        }
        self.place(now, header.timestamp, packet.payload);
    }

    /// Puts one audio packet on the timeline.
    fn place(&mut self, now: Instant, ts: u32, payload: &[u8]) {
        let len = i64::try_from(payload.len()).unwrap_or(RING_I);
        let anchor = self.anchor_position(now, len);
        let cursor = self.cursor;
        let max_delay_samples = self.max_delay_us / SAMPLE_US;
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let timeline = stream
            .timeline
            .get_or_insert_with(|| Timeline::anchored(ts, anchor));
        let mut ext = timeline.extend(ts);
        let mut pos = ext + timeline.offset;
        let beyond = pos + len > cursor + RING_I;
        let far_behind = pos + len + max_delay_samples < cursor;
        if beyond || far_behind {
            let since = *stream.unplaceable_since.get_or_insert(now);
            if now.saturating_duration_since(since) < RESYNC_AFTER {
                if beyond {
                    self.stats.out_of_range += 1;
                } else {
                    self.stats.late += 1;
                    self.leads.late = true;
                }
                return;
            }
            // The sender's timestamps jumped: start its timeline over at this packet.
            *timeline = Timeline::anchored(ts, anchor);
            ext = timeline.extend(ts);
            pos = anchor;
            stream.unplaceable_since = None;
            self.stats.resyncs += 1;
        } else {
            stream.unplaceable_since = None;
        }
        timeline.note(ts, ext);

        let end = pos + len;
        if pos < cursor {
            self.stats.late += 1;
            self.on_late();
            if end <= cursor {
                return;
            }
        } else {
            let lead = self.lead(now, pos);
            self.leads.record(lead);
        }
        let from = pos.max(cursor);
        let skip = usize::try_from(from - pos).unwrap_or(0);
        for (i, &byte) in payload.iter().enumerate().skip(skip) {
            let idx = ring_index(pos + i64::try_from(i).unwrap_or(0));
            self.ring[idx] = byte;
            self.filled[idx / 64] |= 1 << (idx % 64);
        }
        self.newest_end = self.newest_end.max(end);
        self.first_audio.get_or_insert(from);
    }

    /// The change the pending adjustment makes to every playout time, in microseconds.
    fn adjust_us(&self) -> i64 {
        match self.adjust {
            Adjust::None => 0,
            Adjust::Hold => SLOT_US,
            Adjust::Skip(n) => -i64::from(n) * SLOT_US,
        }
    }

    /// How long after `now` the sample at `pos` (at or after the cursor) plays.
    fn lead(&self, now: Instant, pos: i64) -> i64 {
        micros_between(now, self.deadline(self.next_slot))
            + (pos - self.cursor) * SAMPLE_US
            + self.adjust_us()
    }

    /// Where a stream's first packet of `len` samples, arriving at `now`, goes:
    /// `initial_delay` ahead of its playout and after anything still buffered, as far as the
    /// ring reaches.
    fn anchor_position(&self, now: Instant, len: i64) -> i64 {
        let after_next =
            self.initial_us - micros_between(now, self.deadline(self.next_slot)) - self.adjust_us();
        let samples = if after_next > 0 {
            (after_next + SAMPLE_US - 1) / SAMPLE_US
        } else {
            0
        };
        (self.cursor + samples)
            .max(self.newest_end)
            .min(self.cursor + RING_I - len)
    }

    /// A late packet: raise the delay by a frame, within `max_delay`; a pending drop of
    /// audio is called off instead.
    fn on_late(&mut self) {
        self.leads.late = true;
        match self.adjust {
            Adjust::Hold => {}
            Adjust::Skip(n) => {
                self.adjust = Adjust::None;
                self.leads.shift(i64::from(n) * SLOT_US);
            }
            Adjust::None => self.raise(),
        }
    }

    /// Schedules a frame of silence, unless the earliest arrivals already lead by
    /// `max_delay`.
    fn raise(&mut self) {
        let room = self
            .leads
            .recent_max()
            .is_none_or(|m| m + SLOT_US <= self.max_delay_us);
        if room {
            self.adjust = Adjust::Hold;
            self.leads.shift(SLOT_US);
        }
    }

    fn deadline(&self, slot: u64) -> Instant {
        let us = slot.saturating_mul(SLOT_US.unsigned_abs());
        self.start
            .checked_add(Duration::from_micros(us))
            .unwrap_or(self.start)
    }

    /// When the next slot is due: `start + n * 20 ms`. Ask again after every
    /// [`JitterBuffer::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        self.deadline(self.next_slot)
    }

    /// Tells the buffer that `now` has come: makes the frame of the newest slot due, skipping
    /// the slots a late tick missed. Before [`JitterBuffer::poll_timeout`] it does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return;
        };
        let due = u64::try_from(elapsed.as_micros() / SLOT.as_micros()).unwrap_or(u64::MAX);
        if due < self.next_slot {
            return;
        }
        let mut missed = due - self.next_slot;
        if missed > 0 {
            self.stats.skipped_slots += missed;
            self.leads.slots = self
                .leads
                .slots
                .saturating_add(u32::try_from(missed).unwrap_or(u32::MAX));
            if self.adjust == Adjust::Hold {
                // A missed slot that plays nothing is the frame the hold would have inserted.
                self.adjust = Adjust::None;
                self.stats.delay_raised += 1;
                missed -= 1;
            }
            self.discard(missed.saturating_mul(FRAME_SAMPLES as u64));
        }
        self.next_slot = due.saturating_add(1);
        self.emit();
    }

    /// Drops `samples` of audio at the cursor and moves past them.
    fn discard(&mut self, samples: u64) {
        if samples >= RING as u64 {
            self.filled = [0; RING / 64];
        } else {
            for i in 0..samples {
                let idx = ring_index(self.cursor + i64::try_from(i).unwrap_or(0));
                self.filled[idx / 64] &= !(1 << (idx % 64));
            }
        }
        self.cursor = self
            .cursor
            .saturating_add(i64::try_from(samples).unwrap_or(i64::MAX));
    }

    /// Makes the frame of one slot.
    fn emit(&mut self) {
        let mut concealed = 0;
        let mut missing = 0;
        let origin;
        match std::mem::replace(&mut self.adjust, Adjust::None) {
            Adjust::Hold => {
                self.frame.fill(self.silence);
                concealed = FRAME_SAMPLES;
                missing = FRAME_SAMPLES * usize::from(self.first_audio.is_some());
                self.stats.delay_raised += 1;
                origin = None;
            }
            adjust => {
                if let Adjust::Skip(n) = adjust {
                    self.discard(u64::from(n) * FRAME_SAMPLES as u64);
                    self.stats.delay_lowered += u64::from(n);
                }
                origin = self.stream.and_then(|s| {
                    let timeline = s.timeline?;
                    Some(RtpPosition {
                        ssrc: s.ssrc,
                        // Truncation is the wrap of RTP timestamps.
                        timestamp: (self.cursor - timeline.offset) as u32,
                    })
                });
                for (i, out) in self.frame.iter_mut().enumerate() {
                    let pos = self.cursor + i64::try_from(i).unwrap_or(0);
                    let idx = ring_index(pos);
                    let bit = 1u64 << (idx % 64);
                    if self.filled[idx / 64] & bit != 0 {
                        *out = self.ring[idx];
                        self.filled[idx / 64] &= !bit;
                    } else {
                        *out = self.silence;
                        concealed += 1;
                        if self.first_audio.is_some_and(|first| pos >= first) {
                            missing += 1;
                        }
                    }
                }
                self.cursor += FRAME;
            }
        }
        self.stats.concealed_samples += missing as u64;
        self.ready = Some(Ready {
            timestamp: self.next_timestamp,
            concealed,
            origin,
        });
        self.next_timestamp = self.next_timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.stats.frames += 1;
        self.leads.slots = self.leads.slots.saturating_add(1);
        if self.leads.slots >= WINDOW_SLOTS {
            self.end_window();
        }
    }

    /// Closes a window of lead measurements: lowers the delay when every packet in it led
    /// by a frame more than needed, raises it when the latest led by less than half of
    /// `min_lead` (before they come late, as with a sender whose clock is slow).
    fn end_window(&mut self) {
        if !self.leads.late
            && self.adjust == Adjust::None
            && let Some(min) = self.leads.min
        {
            if min >= self.min_lead_us + SLOT_US {
                let frames = if min > self.max_delay_us {
                    ((min - self.initial_us) / SLOT_US).max(1)
                } else {
                    1
                };
                let frames = frames.min(RING_I / FRAME);
                self.adjust = Adjust::Skip(u32::try_from(frames).unwrap_or(1));
                self.leads.shift(-frames * SLOT_US);
            } else if min < self.min_lead_us / 2 {
                self.raise();
            }
        }
        self.leads.next_window();
    }

    /// The frame made by the last [`JitterBuffer::handle_timeout`], once; call after each.
    pub fn poll_frame(&mut self) -> Option<JitterFrame<'_>> {
        let ready = self.ready.take()?;
        Some(JitterFrame {
            timestamp: ready.timestamp,
            payload: &self.frame,
            concealed: ready.concealed,
            origin: ready.origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::clock::origin;
    use crate::media::rtp::RtpHeader;

    const EVENT_PT: Pt = match Pt::new(101) {
        Some(pt) => pt,
        None => Pt::PCMU,
    };

    /// SplitMix64's output function.
    fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// A seeded generator, so that every run sends the same packets.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(1);
            mix(self.0) % n
        }

        fn chance(&mut self, per_mille: u64) -> bool {
            self.below(1000) < per_mille
        }
    }

    /// The test sender's audio: one byte per sample, a function of its SSRC and timestamp,
    /// never the silence byte of PCMU (0xff) or PCMA (0xd5).
    fn content(ssrc: u32, ts: u32) -> u8 {
        let b = (mix((u64::from(ssrc) << 32) | u64::from(ts)) % 253) as u8;
        if b == 0xd5 { 0xfe } else { b }
    }

    fn header(ssrc: u32, seq: u16, ts: u32, pt: Pt) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
        }
    }

    /// What the test sender sends and how the network treats it.
    #[derive(Clone, Copy)]
    struct Plan {
        ssrc: u32,
        first_seq: u16,
        first_ts: u32,
        /// Samples per packet.
        ptime: u32,
        packets: u32,
        /// When the first packet is sent, after the buffer's start.
        sent_from: Duration,
        /// Every packet's network delay, before jitter.
        delay: Duration,
        /// Extra delay, uniform in 0..=jitter.
        jitter: Duration,
        /// Per mille of packets lost, duplicated, and held 1.5 packet times more (reordered).
        loss: u64,
        dup: u64,
        reorder: u64,
        /// How much faster than ours the sender's clock runs, in parts per million.
        drift_ppm: i64,
        seed: u64,
    }

    impl Plan {
        fn clean(ssrc: u32, ptime: u32, packets: u32) -> Self {
            Plan {
                ssrc,
                first_seq: 1000,
                first_ts: 50_000,
                ptime,
                packets,
                sent_from: Duration::from_millis(5),
                delay: Duration::from_millis(10),
                jitter: Duration::ZERO,
                loss: 0,
                dup: 0,
                reorder: 0,
                drift_ppm: 0,
                seed: 1,
            }
        }
    }

    #[derive(Clone)]
    struct Delivery {
        at: Instant,
        /// The packet's index in the sender's stream.
        k: u32,
        header: RtpHeader,
        payload: Vec<u8>,
    }

    impl Delivery {
        fn media(&self) -> RtpMedia<'_> {
            RtpMedia {
                header: self.header,
                stream: StreamEvent::Continue,
                payload: &self.payload,
            }
        }
    }

    /// The packets of `plan` as they reach the receiver, in arrival order. The first packet
    /// is never lost or held, so that it starts the sequence count.
    fn send(plan: &Plan, t0: Instant) -> Vec<Delivery> {
        let mut rng = Rng(plan.seed);
        let jitter_us = plan.jitter.as_micros() as u64;
        let mut out = Vec::new();
        for k in 0..plan.packets {
            let ts = plan.first_ts.wrapping_add(k * plan.ptime);
            let seq = plan.first_seq.wrapping_add(k as u16);
            let nominal = i64::from(k * plan.ptime) * 125;
            let sent_us = nominal * 1_000_000 / (1_000_000 + plan.drift_ppm);
            let sent = t0 + plan.sent_from + Duration::from_micros(sent_us.unsigned_abs());
            if k > 0 && rng.chance(plan.loss) {
                continue;
            }
            let payload: Vec<u8> = (0..plan.ptime)
                .map(|i| content(plan.ssrc, ts.wrapping_add(i)))
                .collect();
            let mut at = sent + plan.delay + Duration::from_micros(rng.below(jitter_us + 1));
            if k > 0 && rng.chance(plan.reorder) {
                at += Duration::from_micros(u64::from(plan.ptime) * 125 * 3 / 2);
            }
            let delivery = Delivery {
                at,
                k,
                header: header(plan.ssrc, seq, ts, Pt::PCMU),
                payload,
            };
            if k > 0 && rng.chance(plan.dup) {
                let mut copy = delivery.clone();
                copy.at += Duration::from_micros(rng.below(jitter_us + 1));
                out.push(copy);
            }
            out.push(delivery);
        }
        out.sort_by_key(|d| d.at);
        out
    }

    /// One frame as the test driver took it.
    struct Out {
        at: Instant,
        timestamp: u32,
        payload: Vec<u8>,
        concealed: usize,
        origin: Option<RtpPosition>,
        buffered: Duration,
        stats: JitterStats,
    }

    /// Drives the buffer on virtual time: every packet due before a slot, then the slot, for
    /// every slot up to `until`. Returns the frames and how many packets were handed in.
    fn drive(jb: &mut JitterBuffer, deliveries: &[Delivery], until: Instant) -> (Vec<Out>, usize) {
        let mut next = 0;
        let mut frames = Vec::new();
        loop {
            let tick = jb.poll_timeout();
            if tick > until {
                break;
            }
            while let Some(d) = deliveries.get(next).filter(|d| d.at <= tick) {
                jb.handle_packet(d.at, &d.media());
                next += 1;
                assert!(jb.poll_frame().is_none(), "a packet makes no frame");
            }
            jb.handle_timeout(tick);
            let frame = jb.poll_frame().expect("one frame per slot");
            assert_eq!(frame.payload.len(), FRAME_SAMPLES);
            let out = Out {
                at: tick,
                timestamp: frame.timestamp,
                payload: frame.payload.to_vec(),
                concealed: frame.concealed,
                origin: frame.origin,
                buffered: jb.buffered(),
                stats: jb.stats(),
            };
            assert!(jb.poll_frame().is_none(), "one frame per slot");
            frames.push(out);
        }
        (frames, next)
    }

    /// Every slot on the 20 ms grid from `t0`, with timestamps 160 apart from `base`.
    fn assert_paced(frames: &[Out], t0: Instant, base: u32) {
        for (n, f) in frames.iter().enumerate() {
            assert_eq!(f.at, t0 + SLOT * n as u32, "frame {n} off the grid");
            assert_eq!(f.timestamp, base.wrapping_add(160 * n as u32), "frame {n}");
            let silent = f.payload.iter().filter(|&&b| b == 0xff).count();
            assert_eq!(f.concealed, silent, "frame {n} counts its silence");
        }
    }

    /// Each sample handed in, as (SSRC, timestamp).
    fn samples(deliveries: &[Delivery]) -> HashSet<(u32, u32)> {
        deliveries
            .iter()
            .flat_map(|d| {
                let (ssrc, ts) = (d.header.ssrc.0, d.header.timestamp);
                (0..d.payload.len() as u32).map(move |i| (ssrc, ts.wrapping_add(i)))
            })
            .collect()
    }

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Audio {
        /// Samples of frames placed on the stream's timeline.
        covered: u64,
        /// Of those, samples played as sent.
        played: u64,
        /// Samples that were handed in but played as silence.
        missing: u64,
    }

    /// Checks each frame placed on a timeline against what was sent: every byte that is not
    /// silence is the sender's byte for that place and was handed in.
    fn check_audio(frames: &[Out], delivered: &HashSet<(u32, u32)>) -> Audio {
        let mut audio = Audio::default();
        for (n, f) in frames.iter().enumerate() {
            let Some(origin) = f.origin else {
                continue;
            };
            for (i, &byte) in f.payload.iter().enumerate() {
                let place = (origin.ssrc.0, origin.timestamp.wrapping_add(i as u32));
                audio.covered += 1;
                if byte == 0xff {
                    if delivered.contains(&place) {
                        audio.missing += 1;
                    }
                    continue;
                }
                assert_eq!(byte, content(place.0, place.1), "frame {n} sample {i}");
                assert!(
                    delivered.contains(&place),
                    "frame {n} sample {i} never sent"
                );
                audio.played += 1;
            }
        }
        audio
    }

    /// The sequence counts the packets handed in imply: (lost, duplicate, reordered).
    fn sequence_counts(deliveries: &[Delivery]) -> (u64, u64, u64) {
        let mut seen = HashSet::new();
        let (mut max, mut dup, mut reordered) = (0, 0, 0);
        for d in deliveries {
            if !seen.insert(d.k) {
                dup += 1;
                continue;
            }
            if d.k < max {
                reordered += 1;
            }
            max = max.max(d.k);
        }
        (u64::from(max) + 1 - seen.len() as u64, dup, reordered)
    }

    fn buffer(t0: Instant, base: u32) -> JitterBuffer {
        JitterBuffer::new(t0, &JitterConfig::new(Pt::PCMU, Codec::Pcmu), base)
    }

    #[test]
    fn thirty_ms_packets_with_jitter_loss_duplicates_and_reordering_come_out_one_frame_a_slot() {
        let t0 = origin();
        let plan = Plan {
            jitter: Duration::from_millis(30),
            loss: 10,
            dup: 10,
            reorder: 20,
            seed: 7,
            ..Plan::clean(0x1234_5678, 240, 334)
        };
        let deliveries = send(&plan, t0);
        let mut jb = buffer(t0, 7_000);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(10));
        let handed = &deliveries[..handed];

        // Ten seconds of call time: 501 slots (0 and 10 s included), no slot missed.
        assert_eq!(frames.len(), 501);
        assert_paced(&frames, t0, 7_000);
        let stats = jb.stats();
        assert_eq!(stats.frames, 501);
        assert_eq!(stats.skipped_slots, 0);

        // Sequence accounting matches what the network did.
        let (lost, dup, reordered) = sequence_counts(handed);
        assert!(
            lost >= 1 && dup >= 1 && reordered >= 1,
            "{lost} {dup} {reordered}"
        );
        assert_eq!(
            (stats.lost, stats.duplicate, stats.reordered),
            (lost, dup, reordered),
            "{stats:?}"
        );
        assert_eq!(stats.packets, handed.len() as u64);
        assert_eq!(
            (stats.restarts, stats.resyncs, stats.out_of_range),
            (0, 0, 0)
        );

        // The audio is the sender's, in order, wherever it arrived in time.
        let audio = check_audio(&frames, &samples(handed));
        assert!(audio.missing <= stats.late * 240, "{audio:?} {stats:?}");
        assert!(stats.late <= 5, "{stats:?}");
        assert!(
            audio.played * 100 >= (audio.played + audio.missing) * 98,
            "{audio:?}"
        );
        // Frames stay on one timeline: each starts 160 samples after the one before, or
        // further on where audio was dropped to lower the delay.
        let origins: Vec<_> = frames.iter().filter_map(|f| f.origin).collect();
        let lowered = origins
            .windows(2)
            .filter(|w| w[1].timestamp.wrapping_sub(w[0].timestamp) != 160)
            .count();
        assert!(lowered as u64 <= stats.delay_lowered, "{stats:?}");
        assert!(origins.iter().all(|o| o.ssrc == Ssrc(0x1234_5678)));

        // The delay stays bounded and low.
        let most = frames.iter().map(|f| f.buffered).max().unwrap();
        assert!(most <= Duration::from_millis(230), "{most:?}");
        let last = frames.last().unwrap();
        assert!(
            last.buffered <= Duration::from_millis(120),
            "{:?}",
            last.buffered
        );
        assert_eq!(last.stats, stats);
    }

    /// Clean packets of `ptime` samples: every sample plays, in order, with no gap once the
    /// first one played.
    fn clean_stream_plays_whole(ptime: u32) {
        let t0 = origin();
        let plan = Plan::clean(99, ptime, 3 * 8000 / ptime);
        let deliveries = send(&plan, t0);
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(3));
        assert_eq!(frames.len(), 151);
        assert_paced(&frames, t0, 0);
        let stats = jb.stats();
        let audio = check_audio(&frames, &samples(&deliveries[..handed]));
        assert_eq!(audio.missing, 0, "{audio:?}");
        assert_eq!(
            (
                stats.lost,
                stats.late,
                stats.duplicate,
                stats.reordered,
                stats.delay_raised
            ),
            (0, 0, 0, 0, 0)
        );
        // Silence only before the first sample (the initial delay, ending mid-frame).
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        let first = bytes.iter().position(|&b| b != 0xff).unwrap();
        assert!(
            bytes[first..].iter().all(|&b| b != 0xff),
            "a gap in clean audio"
        );
        assert_eq!(stats.concealed_samples, 0, "{stats:?}");
        // The first sample played 60 ms after it arrived.
        let played_at = t0 + Duration::from_micros(first as u64 * 125);
        assert_eq!(played_at - deliveries[0].at, Duration::from_millis(60));
        // With no jitter the delay is lowered by a frame after the first two seconds.
        assert_eq!(stats.delay_lowered, 1, "{stats:?}");
        let packet = Duration::from_micros(u64::from(ptime) * 125);
        assert!(
            jb.buffered() <= Duration::from_millis(40) + packet,
            "{:?}",
            jb.buffered()
        );
    }

    #[test]
    fn ten_ms_packets_are_reframed_to_20_ms() {
        clean_stream_plays_whole(80);
    }

    #[test]
    fn twenty_ms_packets_pass_whole() {
        clean_stream_plays_whole(160);
    }

    #[test]
    fn forty_ms_packets_are_reframed_to_20_ms() {
        clean_stream_plays_whole(320);
    }

    #[test]
    fn ten_ms_packets_with_jitter_reorder_and_still_play() {
        let t0 = origin();
        let plan = Plan {
            jitter: Duration::from_millis(30),
            loss: 10,
            seed: 3,
            ..Plan::clean(5, 80, 500)
        };
        let deliveries = send(&plan, t0);
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(5));
        assert_paced(&frames, t0, 0);
        let stats = jb.stats();
        let (lost, _, reordered) = sequence_counts(&deliveries[..handed]);
        assert!(reordered > 10, "{reordered}");
        assert_eq!((stats.lost, stats.reordered), (lost, reordered));
        let audio = check_audio(&frames, &samples(&deliveries[..handed]));
        assert!(audio.missing <= stats.late * 80, "{audio:?} {stats:?}");
        assert!(
            audio.played * 100 >= (audio.played + audio.missing) * 98,
            "{audio:?}"
        );
    }

    #[test]
    fn sequence_and_timestamp_wraps_are_one_stream() {
        let t0 = origin();
        let plan = Plan {
            first_seq: 65_500,
            first_ts: u32::MAX - 4_000,
            jitter: Duration::from_millis(20),
            loss: 10,
            reorder: 20,
            seed: 11,
            ..Plan::clean(77, 160, 200)
        };
        let deliveries = send(&plan, t0);
        let mut jb = buffer(t0, u32::MAX - 320);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(4));
        assert_paced(&frames, t0, u32::MAX - 320);
        let stats = jb.stats();
        let (lost, _, reordered) = sequence_counts(&deliveries[..handed]);
        assert_eq!(
            (stats.lost, stats.reordered),
            (lost, reordered),
            "{stats:?}"
        );
        assert_eq!(
            (stats.resyncs, stats.out_of_range, stats.restarts),
            (0, 0, 0)
        );
        let audio = check_audio(&frames, &samples(&deliveries[..handed]));
        assert!(audio.played >= 150 * 160, "{audio:?}");
        assert!(audio.missing <= stats.late * 160, "{audio:?}");
        // Both wraps were crossed on the frames' timeline too.
        let origins: Vec<u32> = frames
            .iter()
            .filter_map(|f| f.origin)
            .map(|o| o.timestamp)
            .collect();
        assert!(origins.first().unwrap() > &(u32::MAX - 5_000));
        assert!(origins.last().unwrap() < &30_000);
    }

    #[test]
    fn a_new_ssrc_follows_the_old_streams_audio_without_loss_or_overlap() {
        let t0 = origin();
        let a = Plan::clean(0xaaaa, 160, 50);
        // One second later the far end switches to a new SSRC, sequence and timestamps.
        let b = Plan {
            first_seq: 7,
            first_ts: 3_000_000_000,
            sent_from: Duration::from_millis(1_005),
            ..Plan::clean(0xbbbb, 160, 40)
        };
        let mut deliveries = send(&a, t0);
        deliveries.extend(send(&b, t0));
        deliveries.sort_by_key(|d| d.at);
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_millis(1_950));
        assert_eq!(handed, 90);
        assert_paced(&frames, t0, 0);
        let stats = jb.stats();
        assert_eq!(
            (stats.restarts, stats.lost, stats.late),
            (1, 0, 0),
            "{stats:?}"
        );

        // The output is A's audio whole, then B's whole, with only a short gap between.
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        let a_audio: Vec<u8> = deliveries
            .iter()
            .filter(|d| d.header.ssrc.0 == 0xaaaa)
            .flat_map(|d| d.payload.clone())
            .collect();
        let b_audio: Vec<u8> = deliveries
            .iter()
            .filter(|d| d.header.ssrc.0 == 0xbbbb)
            .flat_map(|d| d.payload.clone())
            .collect();
        let start_a = bytes.iter().position(|&x| x != 0xff).unwrap();
        assert_eq!(&bytes[start_a..start_a + a_audio.len()], &a_audio[..]);
        let rest = &bytes[start_a + a_audio.len()..];
        let start_b = rest.iter().position(|&x| x != 0xff).unwrap();
        assert!(start_b <= 60 * 8 + 160, "gap of {start_b} samples");
        // B plays whole, except what the delay control dropped (none before its 2 s window).
        assert_eq!(&rest[start_b..start_b + b_audio.len()], &b_audio[..]);
        let last = frames.last().unwrap().origin.unwrap();
        assert_eq!(last.ssrc, Ssrc(0xbbbb));
    }

    #[test]
    fn a_timestamp_jump_on_the_same_ssrc_resyncs_after_200_ms() {
        let t0 = origin();
        let plan = Plan::clean(42, 160, 150);
        let mut deliveries = send(&plan, t0);
        // From the 50th packet on the sender's timestamps are a million samples further on.
        for d in deliveries.iter_mut().filter(|d| d.k >= 50) {
            d.header.timestamp = d.header.timestamp.wrapping_add(1_000_000);
            d.payload = (0..160)
                .map(|i| content(42, d.header.timestamp.wrapping_add(i)))
                .collect();
        }
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(3));
        let stats = jb.stats();
        assert_eq!(
            (stats.resyncs, stats.lost, stats.restarts),
            (1, 0, 0),
            "{stats:?}"
        );
        // The packets of the first 200 ms after the jump could not be placed.
        assert_eq!(stats.out_of_range, 10, "{stats:?}");
        let audio = check_audio(&frames, &samples(&deliveries[..handed]));
        assert!(audio.played >= 130 * 160 - 2 * 160, "{audio:?}");
        // What went missing is audio of the packets that could not be placed.
        assert!(audio.missing <= stats.out_of_range * 160, "{audio:?}");
        let last = frames.last().unwrap().origin.unwrap();
        assert_eq!(
            content(42, last.timestamp),
            frames.last().unwrap().payload[0]
        );
    }

    #[test]
    fn a_late_tick_hands_out_one_frame_and_skips_the_missed_slots() {
        let t0 = origin();
        let deliveries = send(&Plan::clean(1, 160, 20), t0);
        let mut jb = buffer(t0, 1_000);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_millis(200));
        assert_eq!(frames.len(), 11);
        let before = frames.last().unwrap().origin.unwrap();
        for d in &deliveries[handed..] {
            if d.at <= t0 + Duration::from_millis(275) {
                jb.handle_packet(d.at, &d.media());
            }
        }
        // Early: nothing.
        jb.handle_timeout(t0 + Duration::from_millis(219));
        assert!(jb.poll_frame().is_none());
        // 55 ms late: slots 11 and 12 are skipped, slot 13 is handed out, once.
        jb.handle_timeout(t0 + Duration::from_millis(275));
        let frame = jb.poll_frame().unwrap();
        assert_eq!(frame.timestamp, 1_000 + 11 * 160);
        let origin_now = frame.origin.unwrap();
        assert_eq!(origin_now.timestamp, before.timestamp + 3 * 160);
        assert_eq!(frame.payload[0], content(1, origin_now.timestamp));
        assert!(jb.poll_frame().is_none());
        assert_eq!(jb.poll_timeout(), t0 + Duration::from_millis(280));
        assert_eq!(jb.stats().skipped_slots, 2);
        jb.handle_timeout(t0 + Duration::from_millis(279));
        assert!(jb.poll_frame().is_none());
        jb.handle_timeout(t0 + Duration::from_millis(280));
        assert_eq!(jb.poll_frame().unwrap().timestamp, 1_000 + 12 * 160);
    }

    #[test]
    fn a_late_packet_is_dropped_counted_and_raises_the_delay_by_a_frame() {
        let t0 = origin();
        let mut deliveries = send(&Plan::clean(3, 160, 40), t0);
        // The 20th packet is held 150 ms: its audio has been played by then.
        let held = deliveries.iter().position(|d| d.k == 20).unwrap();
        deliveries[held].at += Duration::from_millis(150);
        deliveries.sort_by_key(|d| d.at);
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_millis(900));
        assert_eq!(handed, 40);
        let stats = jb.stats();
        assert_eq!(
            (stats.late, stats.reordered, stats.delay_raised),
            (1, 1, 1),
            "{stats:?}"
        );
        // The inserted frame is silence, on no timeline.
        let inserted: Vec<_> = frames
            .iter()
            .skip_while(|f| f.origin.is_none())
            .filter(|f| f.origin.is_none())
            .collect();
        assert_eq!(inserted.len(), 1);
        assert!(inserted[0].payload.iter().all(|&b| b == 0xff));
        // The late packet's audio is missing and nothing else is.
        let audio = check_audio(&frames, &samples(&deliveries));
        assert_eq!(audio.missing, 160, "{audio:?}");
    }

    #[test]
    fn telephone_events_share_the_sequence_and_are_not_played() {
        let t0 = origin();
        let mut deliveries = send(&Plan::clean(8, 160, 30), t0);
        // Packets 10..15 are an RFC 4733 event instead of audio.
        for d in deliveries.iter_mut().filter(|d| (10..15).contains(&d.k)) {
            d.header.payload_type = EVENT_PT;
            d.header.timestamp = 50_000 + 10 * 160;
            d.payload = vec![5, 0, 0, 160];
        }
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_millis(800));
        assert_eq!(handed, 30);
        let stats = jb.stats();
        assert_eq!((stats.lost, stats.other_pt), (0, 5), "{stats:?}");
        let audio_only: Vec<Delivery> = deliveries
            .iter()
            .filter(|d| d.header.payload_type == Pt::PCMU)
            .cloned()
            .collect();
        let audio = check_audio(&frames, &samples(&audio_only));
        assert_eq!(audio.missing, 0);
        assert_eq!(audio.played, 25 * 160);
    }

    #[test]
    fn pcma_conceals_with_its_own_silence_and_stray_packets_are_out_of_range() {
        let t0 = origin();
        let mut jb = JitterBuffer::new(t0, &JitterConfig::new(Pt::PCMA, Codec::Pcma), 0);
        jb.handle_timeout(t0);
        let frame = jb.poll_frame().unwrap();
        assert!(frame.payload.iter().all(|&b| b == 0xd5));
        assert_eq!((frame.concealed, frame.origin), (160, None));

        let hand = |jb: &mut JitterBuffer, at_ms: u64, seq: u16, ts: u32, payload: &[u8]| {
            let media = RtpMedia {
                header: header(9, seq, ts, Pt::PCMA),
                stream: StreamEvent::Continue,
                payload,
            };
            jb.handle_packet(t0 + Duration::from_millis(at_ms), &media);
        };
        let audio = [0x11u8; 160];
        hand(&mut jb, 5, 1, 1_000, &audio);
        // One packet whose timestamp is ten seconds off is dropped; the stream goes on.
        hand(&mut jb, 25, 2, 1_000 + 80_000, &audio);
        hand(&mut jb, 45, 3, 1_320, &audio);
        // Longer than any datagram.
        hand(&mut jb, 46, 4, 1_480, &[0x11; MAX_PACKET_SAMPLES + 1]);
        let stats = jb.stats();
        assert_eq!(
            (stats.out_of_range, stats.resyncs, stats.lost),
            (2, 0, 0),
            "{stats:?}"
        );
        let mut played = 0;
        for n in 1..8u32 {
            jb.handle_timeout(t0 + SLOT * n);
            let f = jb.poll_frame().unwrap();
            played += f.payload.iter().filter(|&&b| b == 0x11).count();
            assert_eq!(
                f.concealed + f.payload.iter().filter(|&&b| b == 0x11).count(),
                160
            );
        }
        // Packets 1 and 3 (160 samples each); the samples between them are silence.
        assert_eq!(played, 320);
    }

    /// A minute from a sender whose clock is `drift_ppm` off ours.
    fn drifting_sender(drift_ppm: i64) -> (JitterStats, Audio, Duration) {
        let t0 = origin();
        let plan = Plan {
            jitter: Duration::from_millis(10),
            drift_ppm,
            seed: 5,
            ..Plan::clean(21, 160, 3_000)
        };
        let deliveries = send(&plan, t0);
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(60));
        assert_eq!(frames.len(), 3_001);
        assert_paced(&frames, t0, 0);
        let audio = check_audio(&frames, &samples(&deliveries[..handed]));
        let most = frames.iter().skip(50).map(|f| f.buffered).max().unwrap();
        (jb.stats(), audio, most)
    }

    #[test]
    fn a_fast_sender_clock_is_absorbed_by_dropping_frames() {
        // 0.2% fast: 120 ms more audio than time in a minute.
        let (stats, audio, most) = drifting_sender(2_000);
        assert!(stats.delay_lowered >= 6, "{stats:?}");
        assert_eq!(
            (stats.late, stats.delay_raised, audio.missing),
            (0, 0, 0),
            "{stats:?}"
        );
        assert!(most <= Duration::from_millis(100), "{most:?}");
    }

    #[test]
    fn a_slow_sender_clock_is_absorbed_by_inserting_frames_before_anything_comes_late() {
        // 0.2% slow: 120 ms less audio than time in a minute.
        let (stats, audio, most) = drifting_sender(-2_000);
        assert!(stats.delay_raised >= 5, "{stats:?}");
        assert_eq!((stats.late, audio.missing), (0, 0), "{stats:?}");
        assert!(most <= Duration::from_millis(100), "{most:?}");
    }

    #[test]
    fn the_burst_after_a_network_outage_is_late_and_the_stream_goes_on() {
        let t0 = origin();
        let mut deliveries = send(&Plan::clean(31, 160, 150), t0);
        // Nothing gets through from 1 s to 1.5 s; what was sent then arrives at once.
        let outage_end = t0 + Duration::from_millis(1_500);
        for d in deliveries.iter_mut() {
            if d.at > t0 + Duration::from_secs(1) && d.at < outage_end {
                d.at = outage_end;
            }
        }
        let mut jb = buffer(t0, 0);
        let (frames, handed) = drive(&mut jb, &deliveries, t0 + Duration::from_secs(3));
        assert_eq!(handed, 150);
        assert_paced(&frames, t0, 0);
        let stats = jb.stats();
        // No jump: the same timeline throughout, and the burst's stale audio is dropped.
        assert_eq!(
            (stats.resyncs, stats.out_of_range, stats.lost),
            (0, 0, 0),
            "{stats:?}"
        );
        assert!(stats.late >= 20, "{stats:?}");
        let audio = check_audio(&frames, &samples(&deliveries));
        assert!(audio.missing <= stats.late * 160, "{audio:?}");
        // After the outage the audio plays again, on time.
        let tail = &frames[100..];
        assert!(
            tail.iter().all(|f| f.concealed == 0 || f.origin.is_none()),
            "gaps after the burst"
        );
        assert!(
            jb.buffered() <= Duration::from_millis(200),
            "{:?}",
            jb.buffered()
        );
    }

    #[test]
    fn delays_beyond_the_ring_are_bounded() {
        let t0 = origin();
        let config = JitterConfig {
            initial_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(1),
            ..JitterConfig::new(Pt::PCMU, Codec::Pcmu)
        };
        let mut jb = JitterBuffer::new(t0, &config, 0);
        let deliveries = send(&Plan::clean(4, 160, 30), t0);
        let (frames, _) = drive(&mut jb, &deliveries, t0 + Duration::from_millis(700));
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        let first = bytes.iter().position(|&b| b != 0xff).unwrap();
        let played_at = t0 + Duration::from_micros(first as u64 * 125);
        assert_eq!(played_at - deliveries[0].at, MAX_DELAY_LIMIT);
        assert_eq!(bytes[first], content(4, 50_000));
    }

    #[test]
    fn no_packet_stream_upsets_the_pacing() {
        // Seeded garbage: SSRCs flapping, sequence numbers and timestamps anywhere or close,
        // any payload type and length, packets bunched or spread; the frames keep coming.
        let t0 = origin();
        let mut rng = Rng(99);
        let mut jb = buffer(t0, 0);
        let mut now = t0;
        let mut ts = 0u32;
        let mut frames = 0u64;
        let payload = vec![0x42u8; MAX_PACKET_SAMPLES + 10];
        for n in 0..20_000u32 {
            now += Duration::from_micros(rng.below(12_000));
            while jb.poll_timeout() <= now {
                let due = jb.poll_timeout();
                jb.handle_timeout(due);
                let f = jb.poll_frame().unwrap();
                assert_eq!(f.timestamp, 160 * frames as u32);
                assert_eq!(f.payload.len(), FRAME_SAMPLES);
                frames += 1;
            }
            ts = match rng.below(10) {
                0 => rng.below(1 << 32) as u32,
                1 => ts.wrapping_sub(rng.below(20_000) as u32),
                _ => ts.wrapping_add(rng.below(400) as u32),
            };
            let pt = [Pt::PCMU, Pt::PCMU, Pt::PCMU, EVENT_PT, Pt::PCMA][rng.below(5) as usize];
            let seq = if rng.chance(900) {
                n as u16
            } else {
                rng.below(1 << 16) as u16
            };
            let len = match rng.below(8) {
                0 => rng.below(payload.len() as u64) as usize,
                _ => [80, 160, 240, 320][rng.below(4) as usize],
            };
            let media = RtpMedia {
                header: header(rng.below(3) as u32, seq, ts, pt),
                stream: StreamEvent::Continue,
                payload: &payload[..len],
            };
            jb.handle_packet(now, &media);
            assert!(jb.buffered() <= Duration::from_millis(512));
        }
        let stats = jb.stats();
        assert_eq!((stats.packets, stats.frames), (20_000, frames));
        assert!(
            stats.restarts > 1_000 && stats.out_of_range > 0,
            "{stats:?}"
        );
    }
}
