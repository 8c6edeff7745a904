//! A media shard's precise wake-up: a `timerfd` in the shard's poller, armed at the earliest
//! deadline to the nanosecond.
//!
//! `epoll_wait` takes its timeout in whole milliseconds and mio rounds it up, so a loop that
//! sleeps on the poller's timeout alone wakes up to a millisecond after a 20 ms slot's
//! deadline: a stream's packets would leave about 1 ms late on average, spread over that
//! millisecond. The timer fires within the kernel's timer slack (50 us by default) instead;
//! the poller's own timeout stays as the backstop.
//!
//! ```text
//!   Core::timeout ── wait ──> WakeTimer::arm (timerfd_settime, only when it moves)
//!                 └─ wait ──> Poll::poll (rounded up: the timer fires first)
//! ```

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

/// How close a new deadline may be to the armed one and still leave the timer as it is.
const SAME_DEADLINE: Duration = Duration::from_micros(20);

/// The timer and the deadline it is armed for.
#[derive(Debug)]
pub(crate) struct WakeTimer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl WakeTimer {
    /// A disarmed timer, registered in `registry` under `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<WakeTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(WakeTimer { fd, armed: None })
    }

    /// Makes the poller wake `wait` after `now`; `None` or zero leaves it to the poller.
    /// A timer already armed within [`SAME_DEADLINE`] of that instant is left alone, so a
    /// loop that wakes for sockets makes no system call for the timer.
    pub(crate) fn arm(&mut self, now: Instant, wait: Option<Duration>) -> io::Result<()> {
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            return Ok(());
        };
        let at = now + wait;
        let moved = self.armed.is_none_or(|armed| {
            armed.max(at).saturating_duration_since(armed.min(at)) > SAME_DEADLINE
        });
        if !moved {
            return Ok(());
        }
        let value = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: timespec(wait),
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &value)?;
        self.armed = Some(at);
        Ok(())
    }

    /// Empties the timer's expiry count after it fired, so that its readiness is news.
    pub(crate) fn fired(&mut self) {
        let mut count = [0u8; 8];
        // A timer re-armed since it fired has nothing to read (`EAGAIN`): nothing to do.
        let _ = rustix::io::read(&self.fd, &mut count);
        self.armed = None;
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    const TIMER: Token = Token(7);

    #[test]
    #[allow(clippy::disallowed_methods)] // the timer is the kernel's: real time
    fn the_poller_wakes_for_the_timer_before_its_rounded_timeout() {
        let mut poll = Poll::new().unwrap();
        let mut timer = WakeTimer::new(poll.registry(), TIMER).unwrap();
        let mut events = Events::with_capacity(4);
        let start = Instant::now();
        let wait = Duration::from_micros(1_500);
        timer.arm(start, Some(wait)).unwrap();
        // The poller alone would wait 100 ms: the timer's readiness ends the wait.
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        let woke = start.elapsed();
        assert!(events.iter().any(|e| e.token() == TIMER), "the timer fired");
        assert!(woke >= wait, "not before its deadline: {woke:?}");
        assert!(
            woke < Duration::from_millis(100),
            "before the backstop: {woke:?}"
        );
        timer.fired();
        assert_eq!(timer.armed, None);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // an instant to start from
    fn a_deadline_within_the_tolerance_keeps_the_armed_timer() {
        let poll = Poll::new().unwrap();
        let mut timer = WakeTimer::new(poll.registry(), TIMER).unwrap();
        let now = Instant::now() + Duration::from_secs(1);
        timer.arm(now, Some(Duration::from_millis(20))).unwrap();
        let armed = timer.armed;
        timer
            .arm(
                now + Duration::from_micros(5),
                Some(Duration::from_millis(20)),
            )
            .unwrap();
        assert_eq!(timer.armed, armed, "moved by less than the tolerance");
        timer
            .arm(
                now + Duration::from_millis(1),
                Some(Duration::from_millis(20)),
            )
            .unwrap();
        assert_eq!(timer.armed, Some(now + Duration::from_millis(21)));
        // Zero and none leave it to the poller.
        timer.arm(now, Some(Duration::ZERO)).unwrap();
        timer.arm(now, None).unwrap();
        assert_eq!(timer.armed, Some(now + Duration::from_millis(21)));
    }
}
