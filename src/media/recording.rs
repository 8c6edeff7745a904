//! Call recording, sans-IO: the stereo WAV layout (RIFF `WAVE`, PCM 16-bit little-endian,
//! 8 kHz, two channels) and the framer that lays a call's two sides out on one timeline of
//! 20 ms slots, caller on the left channel and agent on the right.
//!
//! ```text
//!   caller frame (slot of its arrival) ──left(slot, samples)──┐
//!                                                              ▼
//!                          ring of RING_SLOTS slots ── a slot LAG_SLOTS behind `now` is final
//!                                                              │ interleaved L R L R ...
//!   agent frame (slot it played out) ──right(slot, samples)───┘          ▼
//!                                                   poll_batch: BATCH_SLOTS slots of audio
//! ```
//!
//! Slot `n` covers call time `[start + n * 20 ms, start + (n + 1) * 20 ms)`. Each channel
//! has at most one frame per slot; a slot that got nothing on a side is silence on that
//! side, so both channels stay aligned within a slot whatever either side sent. The agent's
//! frames are placed in the slot they are played out in; the caller's come out of the jitter
//! buffer a few slots after they arrived, and [`CallerClock`] places each in the slot of its
//! arrival instead, from the frame's place on the caller's RTP timeline. A frame for a slot
//! already final (a caller frame later than [`LAG_SLOTS`]) is dropped and counted.
//!
//! The framer hands out batches of interleaved bytes, each with its first slot, so that the
//! writer that puts them in a file (see [`super::recorder`]) can write silence for a batch
//! that never reached it and the file keeps its timeline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::jitter::{RtpPosition, SLOT};
use super::leg::FRAME_SAMPLES;
use super::rtp::Ssrc;

/// Sample rate of a recording, the G.711 clock.
pub const SAMPLE_RATE: u32 = 8000;
/// Channels of a recording: caller (left), agent (right).
pub const CHANNELS: u16 = 2;
/// Bits per sample.
pub const BITS_PER_SAMPLE: u16 = 16;
/// Bytes of one 20 ms slot of stereo audio.
pub const SLOT_BYTES: usize = FRAME_SAMPLES * CHANNELS as usize * 2;
/// The canonical 44-byte header of a PCM WAV file.
pub const HEADER_BYTES: usize = 44;
/// How far behind the newest slot a slot is held open for late caller frames: more than
/// the jitter buffer's longest delay (200 ms) and a packet.
pub const LAG_SLOTS: u64 = 16;
/// Slots the framer holds: the open ones and room for the agent's newest.
const RING_SLOTS: usize = 32;
/// Slots per batch handed out: 200 ms, 6,400 bytes.
pub const BATCH_SLOTS: usize = 10;

/// The header of a PCM WAV file whose audio is `data_bytes` long: the RIFF chunk, the `fmt `
/// chunk (PCM, [`CHANNELS`], [`SAMPLE_RATE`], [`BITS_PER_SAMPLE`]) and the head of the `data`
/// chunk. Sizes past what RIFF can say (4 GiB) are capped.
pub fn wav_header(data_bytes: u64) -> [u8; HEADER_BYTES] {
    let data = u32::try_from(data_bytes).unwrap_or(u32::MAX - 36);
    let block_align = CHANNELS * (BITS_PER_SAMPLE / 8);
    let byte_rate = SAMPLE_RATE * u32::from(block_align);
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    // Format 1: integer PCM.
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&CHANNELS.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&BITS_PER_SAMPLE.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// The duration of `slots` slots.
pub fn slots_duration(slots: u64) -> Duration {
    Duration::from_millis(slots.saturating_mul(SLOT.as_millis() as u64))
}

/// The slot of call time `now` falls in, for a call whose slot 0 began at `start`.
pub fn slot_of(start: Instant, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(start);
    u64::try_from(elapsed.as_micros() / SLOT.as_micros()).unwrap_or(u64::MAX)
}

/// Interleaved audio of `slots` consecutive slots from `first_slot` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub first_slot: u64,
    pub slots: usize,
    /// [`SLOT_BYTES`] per slot: left and right samples in turn, 16-bit little-endian.
    pub data: Vec<u8>,
}

/// Counts of one framer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Frames dropped because their slot was already final (or further ahead than the
    /// framer holds).
    pub late_frames: u64,
    /// A second frame for a slot of a channel that had one: it replaced the first.
    pub replaced_frames: u64,
}

#[derive(Debug, Clone, Copy)]
struct SlotAudio {
    left: [i16; FRAME_SAMPLES],
    right: [i16; FRAME_SAMPLES],
    has_left: bool,
    has_right: bool,
}

const EMPTY: SlotAudio = SlotAudio {
    left: [0; FRAME_SAMPLES],
    right: [0; FRAME_SAMPLES],
    has_left: false,
    has_right: false,
};

/// Lays a call's two channels out on its slot timeline. See the module documentation.
#[derive(Debug)]
pub struct StereoFramer {
    ring: Box<[SlotAudio; RING_SLOTS]>,
    /// The next slot to hand out; every slot before it is final.
    next_out: u64,
    batch: Option<Batch>,
    ready: VecDeque<Batch>,
    stats: FramerStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Left,
    Right,
}

impl Default for StereoFramer {
    fn default() -> Self {
        StereoFramer::new()
    }
}

impl StereoFramer {
    pub fn new() -> Self {
        StereoFramer {
            ring: Box::new([EMPTY; RING_SLOTS]),
            next_out: 0,
            batch: None,
            ready: VecDeque::new(),
            stats: FramerStats::default(),
        }
    }

    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Slots handed out (or final and waiting in a batch) so far.
    pub fn slots(&self) -> u64 {
        self.next_out
    }

    /// The caller's frame for `slot`; samples past [`FRAME_SAMPLES`] are ignored and a short
    /// frame is padded with silence.
    pub fn left(&mut self, slot: u64, samples: &[i16]) {
        self.put(Channel::Left, slot, samples);
    }

    /// The agent's frame for `slot`, as [`StereoFramer::left`].
    pub fn right(&mut self, slot: u64, samples: &[i16]) {
        self.put(Channel::Right, slot, samples);
    }

    fn put(&mut self, channel: Channel, slot: u64, samples: &[i16]) {
        if slot < self.next_out {
            self.stats.late_frames += 1;
            return;
        }
        // A slot this far ahead would overwrite one still open: make room by closing the
        // oldest.
        if slot >= self.next_out + RING_SLOTS as u64 {
            self.close_before(slot + 1 - RING_SLOTS as u64);
        }
        let audio = &mut self.ring[ring_index(slot)];
        let (dst, has) = match channel {
            Channel::Left => (&mut audio.left, &mut audio.has_left),
            Channel::Right => (&mut audio.right, &mut audio.has_right),
        };
        if *has {
            self.stats.replaced_frames += 1;
        }
        *has = true;
        let n = samples.len().min(FRAME_SAMPLES);
        dst[..n].copy_from_slice(&samples[..n]);
        dst[n..].fill(0);
    }

    /// Call time has reached `slot`: every slot [`LAG_SLOTS`] or more before it is final.
    pub fn advance(&mut self, slot: u64) {
        self.close_before(slot.saturating_sub(LAG_SLOTS));
    }

    /// The call's audio ended at `end_slot` (exclusive): every slot before it is final, the
    /// last batch handed out however short. Frames for later slots are left out.
    pub fn finish(&mut self, end_slot: u64) {
        self.close_before(end_slot);
        if let Some(batch) = self.batch.take() {
            self.ready.push_back(batch);
        }
    }

    /// A batch of final slots; call until `None` after every input.
    pub fn poll_batch(&mut self) -> Option<Batch> {
        self.ready.pop_front()
    }

    fn close_before(&mut self, end: u64) {
        while self.next_out < end {
            let slot = self.next_out;
            let audio = std::mem::replace(&mut self.ring[ring_index(slot)], EMPTY);
            let batch = self.batch.get_or_insert_with(|| Batch {
                first_slot: slot,
                slots: 0,
                data: Vec::with_capacity(BATCH_SLOTS * SLOT_BYTES),
            });
            interleave(&audio.left, &audio.right, &mut batch.data);
            batch.slots += 1;
            if batch.slots == BATCH_SLOTS
                && let Some(full) = self.batch.take()
            {
                self.ready.push_back(full);
            }
            self.next_out += 1;
        }
    }
}

fn ring_index(slot: u64) -> usize {
    // The remainder is below RING_SLOTS.
    (slot % RING_SLOTS as u64) as usize
}

/// Appends `left` and `right` as interleaved 16-bit little-endian stereo samples.
pub fn interleave(left: &[i16], right: &[i16], out: &mut Vec<u8>) {
    for (l, r) in left.iter().zip(right) {
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
}

/// Places the caller's frames in the slot of their arrival: each stream (SSRC) is anchored
/// at its first audio packet's arrival, and a frame lies its RTP timestamp's distance
/// (at 8 kHz) from the anchor. The jitter buffer's delay and its changes (a frame of silence
/// put in, one of audio dropped) are taken out this way, and a frame put in for a delay
/// change (no place on the timeline) is left out.
///
/// A frame that would land in the future or more than [`LAG_SLOTS`] behind its hand-out
/// (the sender's timestamps jumped, or a stream the anchor missed) re-anchors the stream on
/// that frame, [`JITTER_DELAY`] before its hand-out.
#[derive(Debug, Clone, Copy)]
pub struct CallerClock {
    start: Instant,
    anchor: Option<Anchor>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: Ssrc,
    timestamp: u32,
    /// Microseconds of call time at which `timestamp` arrived (may be negative after a
    /// re-anchoring early in the call).
    at_us: i64,
}

/// The jitter buffer's first delay, assumed when a stream must be re-anchored.
pub const JITTER_DELAY: Duration = Duration::from_millis(60);

impl CallerClock {
    /// A clock whose slot 0 begins at `start`.
    pub fn new(start: Instant) -> Self {
        CallerClock {
            start,
            anchor: None,
        }
    }

    /// An audio packet of the caller's stream arrived at `now`: a new stream is anchored.
    pub fn handle_packet(&mut self, now: Instant, ssrc: Ssrc, timestamp: u32, restart: bool) {
        if restart || self.anchor.is_none_or(|a| a.ssrc != ssrc) {
            self.anchor = Some(Anchor {
                ssrc,
                timestamp,
                at_us: micros_since(self.start, now),
            });
        }
    }

    /// The slot of a frame handed out at `now` whose first sample is at `origin` on the
    /// caller's timeline; `None` for a frame with no place there.
    pub fn slot(&mut self, now: Instant, origin: Option<RtpPosition>) -> Option<u64> {
        let origin = origin?;
        let now_us = micros_since(self.start, now);
        let placed = self
            .anchor
            .filter(|a| a.ssrc == origin.ssrc)
            .map(|a| a.at_us + i64::from(origin.timestamp.wrapping_sub(a.timestamp) as i32) * 125);
        let slot_us = SLOT.as_micros() as i64;
        let lag_us = LAG_SLOTS as i64 * slot_us;
        let at_us = match placed {
            Some(at) if at <= now_us && at > now_us - lag_us => at,
            _ => {
                let at = now_us - JITTER_DELAY.as_micros() as i64;
                self.anchor = Some(Anchor {
                    ssrc: origin.ssrc,
                    timestamp: origin.timestamp,
                    at_us: at,
                });
                at
            }
        };
        // Rounded to the nearest slot: the frame straddles at most two.
        u64::try_from((at_us + slot_us / 2) / slot_us).ok()
    }
}

fn micros_since(start: Instant, now: Instant) -> i64 {
    i64::try_from(now.saturating_duration_since(start).as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;

    fn frame(v: i16) -> [i16; FRAME_SAMPLES] {
        [v; FRAME_SAMPLES]
    }

    /// The (left, right) sample pairs of a batch's first sample of each slot.
    fn firsts(batch: &Batch) -> Vec<(i16, i16)> {
        batch
            .data
            .chunks(SLOT_BYTES)
            .map(|s| {
                (
                    i16::from_le_bytes([s[0], s[1]]),
                    i16::from_le_bytes([s[2], s[3]]),
                )
            })
            .collect()
    }

    #[test]
    fn the_header_says_pcm_16_bit_8_khz_stereo_and_the_sizes() {
        let h = wav_header(32_000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 32_036);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(h[16..20].try_into().unwrap()), 16);
        assert_eq!(u16::from_le_bytes([h[20], h[21]]), 1);
        assert_eq!(u16::from_le_bytes([h[22], h[23]]), 2);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 8000);
        assert_eq!(u32::from_le_bytes(h[28..32].try_into().unwrap()), 32_000);
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 4);
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 16);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 32_000);
        // One second of stereo is 32,000 bytes: 50 slots.
        assert_eq!(SLOT_BYTES * 50, 32_000);
        // Past 4 GiB the sizes stop at what RIFF can say, without wrapping.
        let big = wav_header(u64::MAX);
        assert_eq!(u32::from_le_bytes(big[4..8].try_into().unwrap()), u32::MAX);
    }

    #[test]
    fn interleaving_puts_left_then_right_little_endian() {
        let mut out = Vec::new();
        interleave(&[1, -2], &[0x0102, -1], &mut out);
        assert_eq!(out, vec![1, 0, 0x02, 0x01, 0xfe, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn each_channel_gets_one_frame_per_slot_and_silence_where_a_side_sent_nothing() {
        let mut f = StereoFramer::new();
        // The agent speaks in slots 0..10, the caller only in 2 and 5.
        for slot in 0..10 {
            f.right(slot, &frame(100 + slot as i16));
        }
        f.left(5, &frame(-5));
        f.left(2, &frame(-2));
        f.advance(10 + LAG_SLOTS - 1);
        assert_eq!(f.poll_batch(), None, "slot 9 is still open");
        f.advance(10 + LAG_SLOTS);
        let batch = f.poll_batch().unwrap();
        assert_eq!((batch.first_slot, batch.slots), (0, 10));
        assert_eq!(batch.data.len(), 10 * SLOT_BYTES);
        let want: Vec<(i16, i16)> = (0..10)
            .map(|s| {
                let left = match s {
                    2 => -2,
                    5 => -5,
                    _ => 0,
                };
                (left, 100 + s as i16)
            })
            .collect();
        assert_eq!(firsts(&batch), want);
        assert_eq!(f.poll_batch(), None);
        assert_eq!(f.stats(), FramerStats::default());
    }

    #[test]
    fn a_frame_for_a_final_slot_is_dropped_and_a_second_one_replaces_the_first() {
        let mut f = StereoFramer::new();
        f.left(3, &frame(1));
        f.left(3, &frame(2));
        f.advance(LAG_SLOTS + 5);
        f.left(4, &frame(9));
        f.finish(6);
        let batch = f.poll_batch().unwrap();
        assert_eq!((batch.first_slot, batch.slots), (0, 6));
        assert_eq!(firsts(&batch)[3], (2, 0));
        assert_eq!(firsts(&batch)[4], (0, 0));
        assert_eq!(
            f.stats(),
            FramerStats {
                late_frames: 1,
                replaced_frames: 1
            }
        );
    }

    #[test]
    fn finish_hands_out_every_slot_to_the_end_and_a_short_last_batch() {
        let mut f = StereoFramer::new();
        for slot in 0..23 {
            f.right(slot, &frame(1));
        }
        // A frame past the end is left out.
        f.right(40, &frame(1));
        f.finish(23);
        let batches: Vec<Batch> = std::iter::from_fn(|| f.poll_batch()).collect();
        let spans: Vec<(u64, usize)> = batches.iter().map(|b| (b.first_slot, b.slots)).collect();
        assert_eq!(spans, vec![(0, 10), (10, 10), (20, 3)]);
        assert_eq!(f.slots(), 23);
        let total: usize = batches.iter().map(|b| b.data.len()).sum();
        assert_eq!(total, 23 * SLOT_BYTES);
    }

    #[test]
    fn a_frame_far_ahead_closes_the_oldest_slots_instead_of_overwriting_them() {
        let mut f = StereoFramer::new();
        f.left(0, &frame(7));
        f.right(RING_SLOTS as u64 + 4, &frame(8));
        // Slots 0..=4 had to be closed to make room.
        assert_eq!(f.slots(), 5);
        f.finish(RING_SLOTS as u64 + 5);
        let all: Vec<(i16, i16)> = std::iter::from_fn(|| f.poll_batch())
            .flat_map(|b| firsts(&b))
            .collect();
        assert_eq!(all.len(), RING_SLOTS + 5);
        assert_eq!(all[0], (7, 0));
        assert_eq!(all[RING_SLOTS + 4], (0, 8));
    }

    #[test]
    fn caller_frames_land_in_the_slot_of_their_arrival_whatever_the_jitter_delay() {
        let t0 = origin();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut clock = CallerClock::new(t0);
        let pos = |ts: u32| {
            Some(RtpPosition {
                ssrc: Ssrc(7),
                timestamp: ts,
            })
        };
        // Before any packet a frame has no place, and the silence of a delay change neither.
        assert_eq!(clock.slot(ms(20), None), None);
        // The stream's first packet (timestamp 1000) arrives 100 ms into the call.
        clock.handle_packet(ms(100), Ssrc(7), 1000, false);
        // Later packets of the stream do not move the anchor.
        clock.handle_packet(ms(125), Ssrc(7), 1160, false);
        // Handed out 60 ms later: slot 5, where it arrived.
        assert_eq!(clock.slot(ms(160), pos(1000)), Some(5));
        assert_eq!(clock.slot(ms(180), pos(1160)), Some(6));
        // The buffer dropped a frame of audio to lower its delay: the next frame keeps its
        // own place, a slot is skipped.
        assert_eq!(clock.slot(ms(200), pos(1480)), Some(8));
        // A timestamp jump (no new SSRC) re-anchors 60 ms before the hand-out.
        assert_eq!(clock.slot(ms(400), pos(900_000)), Some(17));
        assert_eq!(clock.slot(ms(420), pos(900_160)), Some(18));
        // A new stream is anchored at its own first packet.
        clock.handle_packet(ms(500), Ssrc(8), 5, false);
        let other = Some(RtpPosition {
            ssrc: Ssrc(8),
            timestamp: 5,
        });
        assert_eq!(clock.slot(ms(560), other), Some(25));
    }
}
