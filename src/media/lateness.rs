//! How late a stream session's outgoing 20 ms RTP packets leave against their playout
//! deadlines: a fixed-bucket histogram kept by each media shard and handed to the `metrics`
//! recorder about once a second, so that the per-packet cost is a bucket search and two
//! additions on the shard's own memory, never an atomic operation or a lock.
//!
//! ```text
//!   slot deadline (Playout::poll_timeout) ──> shard wakes, plays the slot, sends the RTP
//!   lateness = the send's instant - the deadline ──record──> [ SendLateness, shard-local ]
//!   about every second ──flush──> metrics histogram vca_sip_stream_send_lateness_seconds
//! ```
//!
//! The Prometheus exporter is given the same bucket bounds ([`bucket_bounds_seconds`]), and
//! each bucket is flushed as its samples' mean repeated its count (`record_many`): a mean of
//! values within a bucket lies within it, so the exported bucket counts are exact and the sum
//! is exact to the microsecond. Deadlines and sends are instants the driver passes in; this
//! module reads no clock.

use std::time::Duration;

/// The metric the shards flush into.
pub const SEND_LATENESS: &str = "vca_sip_stream_send_lateness_seconds";

/// Upper bounds of the buckets in microseconds (a sample equal to a bound falls in its
/// bucket, as Prometheus' `le` says). Fine below 2 ms, so that a p99 under 2 ms reads off
/// them; coarse above, up to a wake-up 80 ms late. Later samples fall in `+Inf`.
pub const BUCKETS_US: [u32; 18] = [
    100, 250, 500, 750, 1_000, 1_250, 1_500, 1_750, 2_000, 2_500, 3_000, 4_000, 5_000, 7_500,
    10_000, 20_000, 40_000, 80_000,
];

/// [`BUCKETS_US`] in seconds, for the exporter's bucket configuration.
pub fn bucket_bounds_seconds() -> [f64; BUCKETS_US.len()] {
    BUCKETS_US.map(us_to_seconds)
}

fn us_to_seconds(us: u32) -> f64 {
    f64::from(us) / 1e6
}

/// A histogram of send lateness with the buckets of [`BUCKETS_US`] and one for later samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendLateness {
    /// Per bucket (the last one past every bound): samples and their sum in microseconds.
    counts: [u64; BUCKETS_US.len() + 1],
    sums_us: [u64; BUCKETS_US.len() + 1],
}

impl SendLateness {
    /// Counts one packet sent `lateness` after its deadline (zero when it left early or on
    /// time).
    pub fn record(&mut self, lateness: Duration) {
        let us = u64::try_from(lateness.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US.partition_point(|&bound| u64::from(bound) < us);
        if let (Some(count), Some(sum)) =
            (self.counts.get_mut(bucket), self.sums_us.get_mut(bucket))
        {
            *count += 1;
            *sum = sum.saturating_add(us);
        }
    }

    /// Samples recorded since the last flush.
    pub fn len(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands every non-empty bucket to `sink` as (its samples' mean in seconds, their
    /// count), lowest bucket first, and empties the histogram.
    pub fn flush(&mut self, mut sink: impl FnMut(f64, u64)) {
        for (count, sum) in self.counts.iter_mut().zip(self.sums_us.iter_mut()) {
            // The mean of whole microseconds within (low, high] is within it.
            if let Some(mean_us) = sum.checked_div(*count) {
                sink(mean_us as f64 / 1e6, *count);
            }
            *count = 0;
            *sum = 0;
        }
    }

    /// [`SendLateness::flush`] into the `metrics` histogram [`SEND_LATENESS`].
    pub fn flush_to_metrics(&mut self) {
        if self.is_empty() {
            return;
        }
        let histogram = metrics::histogram!(SEND_LATENESS);
        self.flush(|value, count| {
            histogram.record_many(value, usize::try_from(count).unwrap_or(usize::MAX));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn flushed(h: &mut SendLateness) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        h.flush(|value, count| out.push((value, count)));
        out
    }

    #[test]
    fn a_sample_falls_in_the_first_bucket_whose_bound_is_not_below_it() {
        let mut h = SendLateness::default();
        // On a bound, just above it, sub-microsecond, and far past the last bound.
        for d in [
            us(100),
            us(101),
            Duration::from_nanos(400),
            us(2_000),
            us(2_001),
        ] {
            h.record(d);
        }
        h.record(Duration::from_secs(3));
        assert_eq!(h.len(), 6);
        assert_eq!(h.counts[0], 2, "0 and 100 us are in le=100us");
        assert_eq!(h.counts[1], 1, "101 us is in le=250us");
        assert_eq!(h.counts[8], 1, "2000 us is in le=2ms");
        assert_eq!(h.counts[9], 1, "2001 us is in le=2.5ms");
        assert_eq!(h.counts[BUCKETS_US.len()], 1, "3 s is past every bound");
    }

    #[test]
    fn a_flush_gives_each_bucket_as_its_mean_and_count_and_empties_it() {
        let mut h = SendLateness::default();
        for n in [1_100, 1_200, 1_249] {
            h.record(us(n));
        }
        h.record(us(30));
        h.record(us(90_000));
        let out = flushed(&mut h);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], (30e-6, 1));
        // (1100 + 1200 + 1249) / 3 = 1183 us, within (1 ms, 1.25 ms].
        assert_eq!(out[1], (1_183e-6, 3));
        assert_eq!(out[2], (90_000e-6, 1));
        assert!(h.is_empty());
        assert!(flushed(&mut h).is_empty());
    }

    #[test]
    fn every_flushed_mean_lies_within_its_exported_bucket() {
        let bounds = bucket_bounds_seconds();
        let mut h = SendLateness::default();
        // Both ends of every bucket: its lowest whole microsecond and its bound.
        let mut low = 0u64;
        for &bound in &BUCKETS_US {
            h.record(us(low));
            h.record(us(u64::from(bound)));
            low = u64::from(bound) + 1;
        }
        let out = flushed(&mut h);
        assert_eq!(out.len(), BUCKETS_US.len());
        for (i, (value, count)) in out.into_iter().enumerate() {
            assert_eq!(count, 2);
            let below = if i == 0 { -1.0 } else { bounds[i - 1] };
            assert!(below < value && value <= bounds[i], "bucket {i}: {value}");
        }
    }

    #[test]
    fn the_exported_bounds_are_the_microsecond_bounds_in_seconds_rising() {
        let bounds = bucket_bounds_seconds();
        assert_eq!(bounds[0], 0.0001);
        assert_eq!(bounds[8], 0.002);
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }
}
