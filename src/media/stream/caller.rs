//! The caller's audio re-framed for the agent: 20 ms messages (160 samples) placed on the
//! stream's timeline, whatever lengths and timestamps the carrier side hands in.
//!
//! Every message's timestamp is the place of its first sample, counted in samples from the
//! stream's start. Input that continues the producer's timeline (its timestamp is the one
//! after the last sample taken) fills the current frame; a forward jump of up to
//! [`MAX_GAP_SAMPLES`] (lost packets, silence suppression) moves the timeline on by the
//! jump; a longer or backward jump, a new source, or the first input places the audio at the
//! time it arrived (never before what was already sent, so timestamps only grow). A frame
//! that a jump leaves part-filled is sent padded with silence, so that every message holds
//! exactly 20 ms and its timestamp is exact.

use crate::media::leg::FRAME_SAMPLES;

/// Longest forward jump of the producer's timestamps taken as a gap in its audio: 10 s.
pub const MAX_GAP_SAMPLES: u32 = 80_000;

/// A frame ready to send: the place of its first sample and its samples.
pub(super) type Ready = (u64, [i16; FRAME_SAMPLES]);

#[derive(Debug)]
pub(super) struct Framer {
    buf: [i16; FRAME_SAMPLES],
    len: usize,
    /// The place of `buf[0]` on the stream's timeline, in samples.
    buf_start: u64,
    /// The producer's timestamp of the next sample, once there was input.
    next_ts: Option<u32>,
}

impl Framer {
    pub fn new() -> Self {
        Framer {
            buf: [0; FRAME_SAMPLES],
            len: 0,
            buf_start: 0,
            next_ts: None,
        }
    }

    /// Places input whose first sample has the producer's timestamp `ts`; `restart` when
    /// its source started over, `arrived` the stream time (in samples) it came at. Returns
    /// the part-filled frame that a jump closes, padded with silence.
    pub fn place(&mut self, ts: u32, restart: bool, arrived: u64) -> Option<Ready> {
        let next = self.buf_start + self.len as u64;
        let target = match self.next_ts {
            Some(expected) if !restart => {
                // A backward jump wraps to a large forward one, past the gap allowed.
                let jump = ts.wrapping_sub(expected);
                if jump == 0 {
                    return None;
                }
                if jump <= MAX_GAP_SAMPLES {
                    next + u64::from(jump)
                } else {
                    next.max(arrived)
                }
            }
            _ => next.max(arrived),
        };
        self.next_ts = Some(ts);
        let closed = self.flush();
        self.buf_start = self.buf_start.max(target);
        closed
    }

    /// Takes samples into the current frame, as many as it has room for; returns how many.
    pub fn fill(&mut self, samples: &[i16]) -> usize {
        let Some(room) = self.buf.get_mut(self.len..) else {
            return 0;
        };
        let n = room.len().min(samples.len());
        for (slot, &s) in room.iter_mut().zip(samples) {
            *slot = s;
        }
        self.len += n;
        self.next_ts = self.next_ts.map(|t| t.wrapping_add(n as u32));
        n
    }

    /// The current frame, once full.
    pub fn take_full(&mut self) -> Option<Ready> {
        if self.len == FRAME_SAMPLES {
            self.flush()
        } else {
            None
        }
    }

    fn flush(&mut self) -> Option<Ready> {
        if self.len == 0 {
            return None;
        }
        if let Some(rest) = self.buf.get_mut(self.len..) {
            rest.fill(0);
        }
        let ready = (self.buf_start, self.buf);
        self.buf_start += FRAME_SAMPLES as u64;
        self.len = 0;
        Some(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one input and collects the frames it completes.
    fn feed(f: &mut Framer, ts: u32, restart: bool, arrived: u64, samples: &[i16]) -> Vec<Ready> {
        let mut out: Vec<Ready> = f.place(ts, restart, arrived).into_iter().collect();
        let mut rest = samples;
        while !rest.is_empty() {
            let n = f.fill(rest);
            rest = &rest[n..];
            out.extend(f.take_full());
        }
        out
    }

    #[test]
    fn continuous_frames_are_placed_from_their_arrival_and_then_by_timestamp() {
        let mut f = Framer::new();
        let a = [1i16; 160];
        // The first frame arrives 30 ms into the stream.
        let out = feed(&mut f, 5000, false, 240, &a);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 240);
        // The next ones follow by timestamp, however late they arrive.
        let out = feed(&mut f, 5160, false, 9999, &a);
        assert_eq!(out[0].0, 400);
        let out = feed(&mut f, 5320, false, 0, &a);
        assert_eq!(out[0].0, 560);
    }

    #[test]
    fn other_lengths_are_re_framed_to_20_ms() {
        let mut f = Framer::new();
        let samples: Vec<i16> = (0..240).collect();
        // 30 ms packets: one frame from the first, then one from the rest and the second.
        let out = feed(&mut f, 0, false, 0, &samples);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, out[0].1[0], out[0].1[159]), (0, 0, 159));
        let out = feed(&mut f, 240, false, 0, &samples);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1[0], out[0].1[80]), (160, 160, 0));
        assert_eq!((out[1].0, out[1].1[0]), (320, 80));
    }

    #[test]
    fn gaps_move_the_timeline_and_close_part_filled_frames() {
        let mut f = Framer::new();
        let half = [7i16; 80];
        assert!(feed(&mut f, 0, false, 0, &half).is_empty());
        // 100 ms of loss: the half frame goes out padded, the new audio 100 ms later.
        let out = feed(&mut f, 80 + 800, false, 0, &[9i16; 160]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1[79], out[0].1[80]), (0, 7, 0));
        assert_eq!((out[1].0, out[1].1[0]), (880, 9));
    }

    #[test]
    fn jumps_backward_or_too_far_and_restarts_follow_the_arrival_and_never_go_back() {
        let mut f = Framer::new();
        let a = [1i16; 160];
        feed(&mut f, 1000, false, 0, &a);
        // Backward: placed at its arrival, 1 s in.
        let out = feed(&mut f, 500, false, 8000, &a);
        assert_eq!(out[0].0, 8000);
        // Far forward, arriving "before" what was sent: right after it.
        let out = feed(&mut f, 500 + 160 + MAX_GAP_SAMPLES + 1, false, 100, &a);
        assert_eq!(out[0].0, 8160);
        // A restart with a continuous timestamp is still placed by arrival.
        let next = 500 + 160 + MAX_GAP_SAMPLES + 1 + 160;
        let out = feed(&mut f, next, true, 20_000, &a);
        assert_eq!(out[0].0, 20_000);
        // The producer's timestamps wrap.
        let mut f = Framer::new();
        feed(&mut f, u32::MAX - 79, false, 0, &a);
        let out = feed(&mut f, 80, false, 0, &a);
        assert_eq!(out[0].0, 160);
    }
}
