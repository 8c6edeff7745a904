//! The playout of an agent's audio: a bounded queue of 8 kHz linear samples re-framed to
//! 20 ms, the marks placed in it, and the deadline clock that plays one frame per slot.
//!
//! ```text
//!   agent media (any length) ──push──> [ queue, capped ] ──one 20 ms frame per slot──> leg
//!   agent mark ──mark──> [ marks at their place in the queue ] ──played past──> echo
//!   agent clear ──clear──> queue emptied, every pending mark echoed
//! ```
//!
//! Slot `n` begins at `start + n * 20 ms`. [`Playout::handle_timeout`] at or after a slot's
//! beginning plays the frame of the slot `now` falls in; slots that went by unplayed (a late
//! wake-up) are skipped and counted, never played in a burst, so that the far end hears the
//! queue at the real-time rate whatever the driver's lateness. The queue is not drained by
//! skipped slots: what was queued is delayed, not lost. A slot with less than 20 ms queued
//! plays what there is followed by silence, and one with nothing queued plays silence, so
//! that the far end always gets audio.
//!
//! A mark's place is the count of samples queued before it; it is due once that many have
//! finished playing: the slot after the frame that held the last of them has begun (at once
//! if the queue is empty and the frame playing holds none of the agent's audio). A mark is
//! thus never echoed while its audio is still being sent to the caller, let alone before.
//! Clearing counts the dropped samples as played, which makes every pending mark due, in the
//! order they came.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::leg::{FRAME_SAMPLES, Frame};

/// The length of a slot: one frame.
pub const SLOT: Duration = Duration::from_millis(20);

/// Samples per millisecond at 8 kHz.
pub const SAMPLES_PER_MS: u64 = 8;

/// Most marks waiting to be played past; more are refused. Without it an agent sending
/// marks without end while audio is queued would grow the session's memory without end.
pub const MAX_PENDING_MARKS: usize = 1024;

/// Longest mark name kept, in bytes; longer names are refused. With
/// [`MAX_PENDING_MARKS`] it bounds what pending marks hold to 1 MiB.
pub const MAX_MARK_NAME_BYTES: usize = 1024;

/// Why a mark was not placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRefused {
    /// [`MAX_PENDING_MARKS`] are already waiting.
    TooMany,
    /// The name is longer than [`MAX_MARK_NAME_BYTES`].
    NameTooLong,
}

/// Counts of one playout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Frames played that held some of the agent's audio.
    pub audio_frames: u64,
    /// Frames of silence played because nothing was queued.
    pub silent_frames: u64,
    /// Slots that went by before a late wake-up, not played.
    pub skipped_slots: u64,
    /// Samples accepted into the queue.
    pub queued_samples: u64,
    /// Samples refused because the queue held its maximum.
    pub dropped_samples: u64,
    /// Samples emptied from the queue by a clear.
    pub cleared_samples: u64,
}

/// The playout of one stream.
#[derive(Debug)]
pub struct Playout {
    start: Instant,
    /// The next slot to play.
    slot: u64,
    queue: VecDeque<i16>,
    max_samples: usize,
    /// Samples ever accepted, and ever played or cleared: the places marks are measured in.
    enqueued: u64,
    played: u64,
    /// Samples whose frame has finished playing (its slot is over), or cleared: marks come
    /// due against it.
    finished: u64,
    marks: VecDeque<(u64, String)>,
    frame: [i16; FRAME_SAMPLES],
    frame_slot: u64,
    stats: PlayoutStats,
}

impl Playout {
    /// A playout whose slot 0 begins at `start`, holding at most `max_queued` of audio.
    pub fn new(start: Instant, max_queued: Duration) -> Self {
        let max_samples = usize::try_from(max_queued.as_millis())
            .unwrap_or(usize::MAX)
            .saturating_mul(SAMPLES_PER_MS as usize);
        Playout {
            start,
            slot: 0,
            queue: VecDeque::new(),
            max_samples,
            enqueued: 0,
            played: 0,
            finished: 0,
            marks: VecDeque::new(),
            frame: [0; FRAME_SAMPLES],
            frame_slot: 0,
            stats: PlayoutStats::default(),
        }
    }

    /// Queues `samples` after what is queued, as many as fit under the maximum; returns how
    /// many were dropped (the newest: the end of `samples`).
    pub fn push(&mut self, samples: impl ExactSizeIterator<Item = i16>) -> usize {
        let n = samples.len();
        let room = self.max_samples.saturating_sub(self.queue.len());
        let take = n.min(room);
        self.queue.extend(samples.take(take));
        self.enqueued += take as u64;
        self.stats.queued_samples += take as u64;
        let dropped = n - take;
        self.stats.dropped_samples += dropped as u64;
        dropped
    }

    /// Places a mark after what is queued. Due at once when nothing is queued and the frame
    /// playing holds none of the agent's audio: take it with [`Playout::pop_due_mark`].
    pub fn mark(&mut self, name: &str) -> Result<(), MarkRefused> {
        if name.len() > MAX_MARK_NAME_BYTES {
            return Err(MarkRefused::NameTooLong);
        }
        if self.marks.len() >= MAX_PENDING_MARKS {
            return Err(MarkRefused::TooMany);
        }
        self.marks.push_back((self.enqueued, name.to_owned()));
        Ok(())
    }

    /// Empties the queue; returns how many samples it held. Every pending mark is then due.
    pub fn clear(&mut self) -> usize {
        let dropped = self.queue.len();
        self.queue.clear();
        self.played = self.enqueued;
        self.finished = self.enqueued;
        self.stats.cleared_samples += dropped as u64;
        dropped
    }

    /// The first mark whose audio has finished playing (or was cleared), in the order marks
    /// came; call until `None` after every push, mark, clear and frame.
    pub fn pop_due_mark(&mut self) -> Option<String> {
        if self
            .marks
            .front()
            .is_some_and(|&(at, _)| at <= self.finished)
        {
            return self.marks.pop_front().map(|(_, name)| name);
        }
        None
    }

    /// Marks waiting for their audio to be played.
    pub fn pending_marks(&self) -> usize {
        self.marks.len()
    }

    /// How much audio is queued.
    pub fn queued(&self) -> Duration {
        Duration::from_micros(self.queue.len() as u64 * 125)
    }

    /// Samples queued.
    pub fn queued_samples(&self) -> usize {
        self.queue.len()
    }

    /// When the next slot begins: call [`Playout::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Instant {
        self.slot_start(self.slot)
    }

    /// Plays the frame of the slot `now` is in, if that slot has not been played; returns
    /// whether a frame was played (then read it with [`Playout::frame`]). Earlier slots not
    /// played are skipped. Before the next slot's beginning this is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if now < self.poll_timeout() {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let due = u64::try_from(elapsed.as_micros() / SLOT.as_micros()).unwrap_or(u64::MAX);
        // `now` is at or past the start of `self.slot`, so `due >= self.slot`.
        self.stats.skipped_slots += due.saturating_sub(self.slot);
        self.frame_slot = due;
        self.slot = due.saturating_add(1);
        // The frame played before this slot is over.
        self.finished = self.played;

        let take = self.queue.len().min(FRAME_SAMPLES);
        for (out, sample) in self.frame.iter_mut().zip(self.queue.drain(..take)) {
            *out = sample;
        }
        self.frame[take..].fill(0);
        self.played += take as u64;
        if take == 0 {
            self.stats.silent_frames += 1;
        } else {
            self.stats.audio_frames += 1;
        }
        true
    }

    /// The frame played last: its timestamp counts 160 per slot from 0 at `start` (wrapping,
    /// as RTP's), so that skipped slots show as a gap.
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            timestamp: (self.frame_slot as u32).wrapping_mul(FRAME_SAMPLES as u32),
            samples: &self.frame,
        }
    }

    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    fn slot_start(&self, slot: u64) -> Instant {
        // Slots count real time from `start`: one past the clock's range cannot come.
        let offset = Duration::from_micros(slot.saturating_mul(SLOT.as_micros() as u64));
        self.start.checked_add(offset).unwrap_or(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ramp(n: usize, from: i16) -> impl ExactSizeIterator<Item = i16> {
        (0..n).map(move |i| from.wrapping_add(i as i16))
    }

    #[test]
    fn one_frame_per_slot_from_the_start_and_silence_when_empty() {
        let t0 = origin();
        let mut p = Playout::new(t0, ms(1000));
        assert_eq!(p.poll_timeout(), t0);
        assert!(p.handle_timeout(t0));
        assert_eq!(p.frame().timestamp, 0);
        assert!(p.frame().samples.iter().all(|&s| s == 0));
        assert_eq!(p.poll_timeout(), t0 + ms(20));
        // Before the next slot: nothing.
        assert!(!p.handle_timeout(t0 + ms(19)));
        assert_eq!(p.push(ramp(400, 1)), 0);
        assert!(p.handle_timeout(t0 + ms(20)));
        let f = p.frame();
        assert_eq!((f.timestamp, f.samples[0], f.samples[159]), (160, 1, 160));
        assert!(p.handle_timeout(t0 + ms(40)));
        assert_eq!(p.frame().samples[0], 161);
        // The last 80 samples, then silence.
        assert!(p.handle_timeout(t0 + ms(60)));
        let f = p.frame();
        assert_eq!((f.samples[0], f.samples[79], f.samples[80]), (321, 400, 0));
        assert!(p.handle_timeout(t0 + ms(80)));
        assert!(p.frame().samples.iter().all(|&s| s == 0));
        let s = p.stats();
        assert_eq!(
            (s.audio_frames, s.silent_frames, s.skipped_slots),
            (3, 2, 0)
        );
    }

    #[test]
    fn a_late_wake_up_skips_the_missed_slots_and_keeps_the_audio() {
        let t0 = origin();
        let mut p = Playout::new(t0, ms(1000));
        p.push(ramp(1600, 0));
        assert!(p.handle_timeout(t0 + ms(5)));
        assert_eq!(p.frame().samples[0], 0);
        // 75 ms late: slots 1..=3 went by; slot 4 is played, with the next audio queued.
        assert!(p.handle_timeout(t0 + ms(95)));
        assert_eq!((p.frame().timestamp, p.frame().samples[0]), (4 * 160, 160));
        assert_eq!(p.poll_timeout(), t0 + ms(100));
        // No burst: the slot just played is not played again.
        assert!(!p.handle_timeout(t0 + ms(99)));
        assert!(p.handle_timeout(t0 + ms(100)));
        assert_eq!(p.frame().samples[0], 320);
        assert_eq!(p.stats().skipped_slots, 3);
        assert_eq!(p.queued(), ms(140));
    }

    #[test]
    fn the_cap_drops_the_newest_audio() {
        let t0 = origin();
        let mut p = Playout::new(t0, ms(100));
        assert_eq!(p.push(ramp(600, 0)), 0);
        assert_eq!(p.push(ramp(400, 600)), 200);
        assert_eq!(p.queued(), ms(100));
        assert!(p.handle_timeout(t0));
        assert_eq!(p.push(ramp(400, 800)), 240);
        let s = p.stats();
        assert_eq!((s.queued_samples, s.dropped_samples), (960, 440));
        // What was kept plays in order: 0..800, then 800..960.
        for slot in 1..5 {
            assert!(p.handle_timeout(t0 + ms(20 * slot)));
        }
        assert_eq!(p.frame().samples[0], 640);
        assert!(p.handle_timeout(t0 + ms(100)));
        assert_eq!(p.frame().samples[0], 800);
        assert!(p.handle_timeout(t0 + ms(120)));
        assert!(p.frame().samples.iter().all(|&s| s == 0));
    }

    #[test]
    fn marks_come_due_as_their_audio_is_played_or_cleared() {
        let t0 = origin();
        let mut p = Playout::new(t0, ms(1000));
        // Nothing queued: due at once.
        p.mark("a").unwrap();
        assert_eq!(p.pop_due_mark().as_deref(), Some("a"));
        assert_eq!(p.pop_due_mark(), None);
        p.push(ramp(240, 0));
        p.mark("b").unwrap();
        p.push(ramp(320, 0));
        p.mark("c").unwrap();
        p.mark("d").unwrap();
        assert_eq!(p.pop_due_mark(), None);
        assert!(p.handle_timeout(t0));
        assert_eq!(p.pop_due_mark(), None);
        // b's last samples are in the frame of this slot: due once it has played.
        assert!(p.handle_timeout(t0 + ms(20)));
        assert_eq!(p.pop_due_mark(), None);
        assert!(p.handle_timeout(t0 + ms(40)));
        assert_eq!(p.pop_due_mark().as_deref(), Some("b"));
        assert_eq!(p.pop_due_mark(), None);
        assert_eq!(p.pending_marks(), 2);
        assert_eq!(p.clear(), 80);
        assert_eq!(p.pop_due_mark().as_deref(), Some("c"));
        assert_eq!(p.pop_due_mark().as_deref(), Some("d"));
        assert_eq!(p.pop_due_mark(), None);
        assert_eq!(p.stats().cleared_samples, 80);
    }

    #[test]
    fn marks_are_bounded_in_number_and_name_length() {
        let mut p = Playout::new(origin(), ms(1000));
        p.push(ramp(160, 0));
        let long = "x".repeat(MAX_MARK_NAME_BYTES + 1);
        assert_eq!(p.mark(&long), Err(MarkRefused::NameTooLong));
        for i in 0..MAX_PENDING_MARKS {
            p.mark(&i.to_string()).unwrap();
        }
        assert_eq!(p.mark("one more"), Err(MarkRefused::TooMany));
        assert_eq!(p.clear(), 160);
        assert_eq!(p.pop_due_mark().as_deref(), Some("0"));
    }
}
