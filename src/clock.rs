//! The clocks as traits, so that what stamps records or shared tables can run on a fake
//! clock in tests.
//!
//! Monotonic time is read only by the drivers (the tasks and loops that own sockets and
//! channels) and here: machines take `now: Instant` as an argument. Wall time (record
//! timestamps) is read through [`WallClock`], which the drivers hand down. A shared table
//! that stamps an `Instant` where no driver can hand one in (a port pair given back when its
//! owner is dropped) is given a [`MonotonicClock`] when it is built. `clippy.toml` turns
//! every other read of the clock into a warning.

#![allow(clippy::disallowed_methods)] // the clocks' own module: the one place below the drivers that reads them

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

/// Where wall time comes from.
pub trait WallClock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// Where monotonic time comes from, for what stamps an `Instant` outside a driver's call.
pub trait MonotonicClock: Send + Sync + std::fmt::Debug {
    fn instant(&self) -> Instant;
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl MonotonicClock for SystemClock {
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The system's wall clock, shared.
pub fn system() -> Arc<dyn WallClock> {
    Arc::new(SystemClock)
}

/// The system's monotonic clock, shared.
pub fn monotonic() -> Arc<dyn MonotonicClock> {
    Arc::new(SystemClock)
}

/// The fixed origin of virtual time: one `Instant`, the same for the whole process, from
/// which tests, benches and fuzz targets count `now` by plain arithmetic
/// (`origin() + Duration::from_millis(500)`). The monotonic clock is read once, on the first
/// call; what is driven from it sees only the time its driver hands it, never the clock.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Measures how long something took, for metrics only: what it reads decides nothing, so a
/// store or a leg may time its work without a driver handing it the time.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    /// Seconds since [`Stopwatch::start`].
    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// Clocks that move only when told to: wall time from the given start, monotonic time from
/// [`origin`], both by the same steps.
#[derive(Debug)]
pub struct FakeClock(Mutex<(DateTime<Utc>, Instant)>);

impl FakeClock {
    pub fn new(start: DateTime<Utc>) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new((start, origin()))))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        now.0 += Duration::from_std(by).unwrap_or(Duration::zero());
        now.1 += by;
    }
}

impl WallClock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl MonotonicClock for FakeClock {
    fn instant(&self) -> Instant {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_clock_moves_both_clocks_by_the_same_step_and_only_when_told() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let fake = FakeClock::new(start);
        assert_eq!((fake.now(), fake.instant()), (start, origin()));
        fake.advance(std::time::Duration::from_millis(1500));
        assert_eq!(fake.now(), start + Duration::milliseconds(1500));
        assert_eq!(
            fake.instant(),
            origin() + std::time::Duration::from_millis(1500)
        );
        assert_eq!(origin(), origin());
    }
}
