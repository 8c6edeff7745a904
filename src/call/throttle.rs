//! A warning that can repeat once per call, let through at most once per period.
//!
//! An overloaded node refuses thousands of calls a second for the same reason; logging each
//! refusal would add a formatted write per call at the moment CPU is shortest. The first
//! occurrence is logged at once, the rest are counted and reported with the next one that
//! is let through. Counters in the metrics still see every refusal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Throttle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last occurrence was let through.
    last: Option<Instant>,
    /// Occurrences held back since then.
    suppressed: u64,
}

impl Throttle {
    pub(crate) fn new(period: Duration) -> Self {
        Throttle {
            period,
            state: Mutex::new(State::default()),
        }
    }

    /// Records one occurrence at `now`: `Some(n)` when it is to be logged, `n` being how many
    /// were held back since the last one logged; `None` when it is held back.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = s
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.period);
        if due {
            s.last = Some(now);
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;

    #[test]
    fn the_first_is_logged_then_one_per_period_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(1));
        let start = origin();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(t.admit(at(0)), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(t.admit(at(ms)), None);
        }
        assert_eq!(t.admit(at(1000)), Some(4));
        assert_eq!(t.admit(at(1500)), None);
        // A quiet spell: the next one is logged at once.
        assert_eq!(t.admit(at(60_000)), Some(1));
        assert_eq!(t.admit(at(60_001)), None);
    }

    #[test]
    fn an_earlier_instant_than_the_last_is_held_back_not_a_panic() {
        let t = Throttle::new(Duration::from_secs(1));
        let start = origin() + Duration::from_secs(5);
        assert_eq!(t.admit(start), Some(0));
        assert_eq!(t.admit(start - Duration::from_secs(3)), None);
    }
}
