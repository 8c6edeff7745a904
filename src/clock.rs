//! The wall clock as a trait, so that what stamps records can run on a fake clock in tests.
//!
//! Monotonic time is never read here or anywhere below the drivers: machines take
//! `now: Instant` as an argument. Wall time (record timestamps) is read through
//! [`WallClock`], which the drivers hand down.

#![allow(clippy::disallowed_methods)] // the one place the wall clock is read

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// Where wall time comes from.
pub trait WallClock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn WallClock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    pub fn new(start: DateTime<Utc>) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new(start)))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += Duration::from_std(by).unwrap_or(Duration::zero());
    }
}

impl WallClock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
