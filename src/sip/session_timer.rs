//! Session timers for the UAS (RFC 4028): negotiating Session-Expires and Min-SE on an INVITE,
//! and a sans-IO timer that says when a call whose peer stopped refreshing must be ended.
//!
//! A carrier that loses a BYE would otherwise leave the call, its RTP ports and its task alive
//! forever; with a session timer the side that does not refresh ends the call with BYE once
//! the interval runs out without a refresh.
//!
//! ```text
//!   INVITE (Session-Expires, Min-SE, Supported) --negotiate()--> 422 + Min-SE
//!                                                            \--> 2xx: Session-Expires [+ Require]
//!   SessionTimer::new(now) --poll_timeout()--> caller sleeps --handle_timeout(now)--> Expired
//!   re-INVITE / UPDATE refresh ----------------handle_refresh(now)--> deadlines pushed back
//! ```
//!
//! Nothing here reads the clock: every input carries `now`.

use std::time::{Duration, Instant};

/// The smallest session interval RFC 4028 §4 allows anyone to use, in seconds.
pub const ABSOLUTE_MIN_SE: u32 = 90;

/// The interval we ask for when the UAC supports timers but proposed none, in seconds
/// (RFC 4028 §4 recommends 1800).
pub const DEFAULT_INTERVAL: u32 = 1800;

/// Why a request's session timer headers cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionTimerError {
    /// The Session-Expires or Min-SE value is not `delta-seconds *(;param)`: 400 Bad Request.
    #[error("malformed {header} header")]
    Malformed {
        /// The header name.
        header: &'static str,
    },
    /// The requested interval is below our minimum: 422 Session Interval Too Small, with a
    /// `Min-SE` header carrying `min_se` (RFC 4028 §6), so the UAC can retry with a longer
    /// interval.
    #[error("session interval {requested} s is below the minimum {min_se} s")]
    TooSmall {
        /// The interval the request asked for.
        requested: u32,
        /// Our minimum, for the Min-SE header of the 422.
        min_se: u32,
    },
}

impl SessionTimerError {
    /// The SIP status to answer the request with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed { .. } => 400,
            Self::TooSmall { .. } => 422,
        }
    }
}

/// Which side sends the refresh re-INVITE or UPDATE (RFC 4028 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller (the peer, since we are the UAS).
    Uac,
    /// Us.
    Uas,
}

impl Refresher {
    /// The `refresher` parameter value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Uac => "uac",
            Self::Uas => "uas",
        }
    }
}

/// A Session-Expires header value (RFC 4028 §4): `delta-seconds [;refresher=uac|uas]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval in seconds.
    pub interval: u32,
    /// Who refreshes, when the request says.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses a Session-Expires (or compact `x`) header value. Unknown parameters are ignored
    /// and an unknown refresher value is treated as absent, as RFC 4028 leaves room for both.
    pub fn parse(value: &str) -> Result<Self, SessionTimerError> {
        let malformed = SessionTimerError::Malformed {
            header: "Session-Expires",
        };
        let mut parts = value.split(';');
        let interval = parts
            .next()
            .and_then(|d| d.trim().parse::<u32>().ok())
            .ok_or(malformed)?;
        let refresher = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("refresher"))
            .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            });
        Ok(Self {
            interval,
            refresher,
        })
    }
}

/// Parses a Min-SE header value (RFC 4028 §5): `delta-seconds *(;param)`.
pub fn parse_min_se(value: &str) -> Result<u32, SessionTimerError> {
    value
        .split(';')
        .next()
        .and_then(|d| d.trim().parse::<u32>().ok())
        .ok_or(SessionTimerError::Malformed { header: "Min-SE" })
}

/// Our session timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerPolicy {
    min_se: u32,
    default_interval: u32,
}

impl SessionTimerPolicy {
    /// Settings with our minimum interval and the interval we propose when the UAC proposes
    /// none. `min_se` is raised to [`ABSOLUTE_MIN_SE`] and `default_interval` to `min_se`: a
    /// smaller minimum would let a peer make us process a refresh every few seconds.
    pub fn new(min_se: u32, default_interval: u32) -> Self {
        let min_se = min_se.max(ABSOLUTE_MIN_SE);
        Self {
            min_se,
            default_interval: default_interval.max(min_se),
        }
    }

    /// Our minimum interval, in seconds (the Min-SE of a 422).
    pub fn min_se(&self) -> u32 {
        self.min_se
    }

    /// The interval we propose when the UAC proposes none, in seconds.
    pub fn default_interval(&self) -> u32 {
        self.default_interval
    }

    /// Decides the session timer for an INVITE (RFC 4028 §9).
    ///
    /// - A Session-Expires below our minimum is refused with 422 and our Min-SE.
    /// - Otherwise the requested interval is kept. The refresher is the one the request
    ///   names, else the UAC when it supports timers (so that we need not send refreshes),
    ///   else us; a UAC without timer support can never be the refresher.
    /// - Without Session-Expires, a UAC that supports timers gets our default interval (no
    ///   less than its Min-SE) with itself as refresher: dead calls still end.
    /// - Without Session-Expires or timer support, there is no session timer (`None`).
    pub fn negotiate(
        &self,
        session_expires: Option<SessionExpires>,
        request_min_se: Option<u32>,
        uac_supports_timer: bool,
    ) -> Result<Option<SessionTimerParams>, SessionTimerError> {
        let (interval, refresher) = match session_expires {
            Some(se) if se.interval < self.min_se => {
                return Err(SessionTimerError::TooSmall {
                    requested: se.interval,
                    min_se: self.min_se,
                });
            }
            Some(se) => (se.interval, se.refresher),
            None if uac_supports_timer => {
                let floor = request_min_se.unwrap_or(0).max(self.min_se);
                (self.default_interval.max(floor), None)
            }
            None => return Ok(None),
        };
        let refresher = match (refresher, uac_supports_timer) {
            (Some(Refresher::Uac) | None, true) => Refresher::Uac,
            _ => Refresher::Uas,
        };
        Ok(Some(SessionTimerParams {
            interval,
            refresher,
            require_timer: uac_supports_timer,
        }))
    }
}

impl Default for SessionTimerPolicy {
    /// Min-SE 90 s, proposed interval 1800 s.
    fn default() -> Self {
        Self::new(ABSOLUTE_MIN_SE, DEFAULT_INTERVAL)
    }
}

/// The session timer agreed for a call, and the headers that tell the UAC so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerParams {
    /// The session interval in seconds.
    pub interval: u32,
    /// Who refreshes.
    pub refresher: Refresher,
    /// Whether the 2xx carries `Require: timer` (only when the UAC supports timers).
    pub require_timer: bool,
}

impl SessionTimerParams {
    /// The Session-Expires header value for the 2xx, e.g. `1800;refresher=uac`.
    pub fn session_expires_header(&self) -> String {
        format!("{};refresher={}", self.interval, self.refresher.as_str())
    }

    /// The Require header value for the 2xx, when one is needed.
    pub fn require_header(&self) -> Option<&'static str> {
        self.require_timer.then_some("timer")
    }

    /// How long after a refresh the non-refreshing side gives up: the interval minus
    /// min(32 s, interval / 3) (RFC 4028 §10), leaving room for a late refresh in flight.
    pub fn expiry_after_refresh(&self) -> Duration {
        let slack = (self.interval / 3).min(32);
        Duration::from_secs(u64::from(self.interval - slack))
    }

    /// When the refresher should refresh: half the interval (RFC 4028 §7.2).
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval)) / 2
    }
}

/// What a session timer that ran out asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The session expired without a refresh: send BYE, free the media, record the hangup.
    Session,
    /// We are the refresher and half the interval has passed: send a refresh (UPDATE).
    RefreshDue,
}

/// The timers of one session, indexing [`SessionTimer::deadlines`].
#[derive(Debug, Clone, Copy)]
enum Timer {
    Refresh = 0,
    Expiry = 1,
}

/// The running session timer of one call. Drive it with [`handle_refresh`] when a refresh
/// re-INVITE or UPDATE is accepted, sleep until [`poll_timeout`], then call
/// [`handle_timeout`]. A refresh that renegotiates the interval or refresher replaces the
/// timer with a new one.
///
/// [`handle_refresh`]: SessionTimer::handle_refresh
/// [`poll_timeout`]: SessionTimer::poll_timeout
/// [`handle_timeout`]: SessionTimer::handle_timeout
#[derive(Debug, Clone)]
pub struct SessionTimer {
    params: SessionTimerParams,
    deadlines: [Option<Instant>; 2],
}

impl SessionTimer {
    /// Starts the timer when the 2xx that agreed it is sent.
    pub fn new(now: Instant, params: SessionTimerParams) -> Self {
        let mut timer = Self {
            params,
            deadlines: [None; 2],
        };
        timer.arm(now);
        timer
    }

    /// The agreed parameters.
    pub fn params(&self) -> &SessionTimerParams {
        &self.params
    }

    /// A refresh (re-INVITE or UPDATE, answered 2xx) happened at `now`: the session lives on
    /// for another interval. No effect once the session has expired.
    pub fn handle_refresh(&mut self, now: Instant) {
        if self.deadlines[Timer::Expiry as usize].is_some() {
            self.arm(now);
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called;
    /// `None` once the session has expired. Call it after every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Fires the timers due at `now`. An early or repeated call returns `None` and changes
    /// nothing. Once the session has expired, every timer is disarmed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Expired> {
        if self.deadlines[Timer::Expiry as usize].is_some_and(|at| at <= now) {
            self.deadlines = [None; 2];
            return Some(Expired::Session);
        }
        let refresh = &mut self.deadlines[Timer::Refresh as usize];
        if refresh.is_some_and(|at| at <= now) {
            *refresh = None;
            return Some(Expired::RefreshDue);
        }
        None
    }

    fn arm(&mut self, now: Instant) {
        let p = &self.params;
        self.deadlines = match p.refresher {
            // The peer refreshes: give up slightly before the interval ends (RFC 4028 §10).
            Refresher::Uac => [None, Some(now + p.expiry_after_refresh())],
            // We refresh at half time; if no refresh completes, the session ends with the
            // interval.
            Refresher::Uas => [
                Some(now + p.refresh_after()),
                Some(now + Duration::from_secs(u64::from(p.interval))),
            ],
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;

    fn se(interval: u32, refresher: Option<Refresher>) -> Option<SessionExpires> {
        Some(SessionExpires {
            interval,
            refresher,
        })
    }

    #[test]
    fn parses_header_values() {
        assert_eq!(
            SessionExpires::parse("1800"),
            Ok(SessionExpires {
                interval: 1800,
                refresher: None
            })
        );
        assert_eq!(
            SessionExpires::parse(" 4000 ; refresher = UAS;x=y"),
            Ok(SessionExpires {
                interval: 4000,
                refresher: Some(Refresher::Uas)
            })
        );
        assert_eq!(
            SessionExpires::parse("90;refresher=uac").map(|s| s.refresher),
            Ok(Some(Refresher::Uac))
        );
        assert_eq!(
            SessionExpires::parse("90;refresher=proxy").map(|s| s.refresher),
            Ok(None)
        );
        assert_eq!(
            SessionExpires::parse("soon"),
            Err(SessionTimerError::Malformed {
                header: "Session-Expires"
            })
        );
        assert_eq!(SessionExpires::parse("").map_err(|e| e.status()), Err(400));
        assert_eq!(parse_min_se("120"), Ok(120));
        assert_eq!(parse_min_se("120;ext=1"), Ok(120));
        assert_eq!(
            parse_min_se("-1"),
            Err(SessionTimerError::Malformed { header: "Min-SE" })
        );
    }

    #[test]
    fn interval_below_minimum_is_422_with_min_se() {
        let policy = SessionTimerPolicy::default();
        let err = policy.negotiate(se(60, Some(Refresher::Uac)), None, true);
        assert_eq!(
            err,
            Err(SessionTimerError::TooSmall {
                requested: 60,
                min_se: 90
            })
        );
        assert_eq!(err.map_err(|e| e.status()), Err(422));
        let strict = SessionTimerPolicy::new(600, 1800);
        assert_eq!(
            strict.negotiate(se(300, None), None, false),
            Err(SessionTimerError::TooSmall {
                requested: 300,
                min_se: 600
            })
        );
        // Exactly the minimum is fine.
        assert!(matches!(
            policy.negotiate(se(90, None), None, true),
            Ok(Some(_))
        ));
    }

    #[test]
    fn policy_never_goes_below_rfc_minimum() {
        let p = SessionTimerPolicy::new(30, 60);
        assert_eq!((p.min_se(), p.default_interval()), (90, 90));
    }

    #[test]
    fn negotiation_table() {
        let policy = SessionTimerPolicy::default();
        let uac = Some(Refresher::Uac);
        let uas = Some(Refresher::Uas);
        // (session-expires, request Min-SE, UAC supports timer) -> (interval, refresher, Require)
        let cases = [
            (
                se(1800, uac),
                None,
                true,
                Some((1800, Refresher::Uac, true)),
            ),
            (
                se(1800, uas),
                None,
                true,
                Some((1800, Refresher::Uas, true)),
            ),
            (
                se(1800, None),
                None,
                true,
                Some((1800, Refresher::Uac, true)),
            ),
            (
                se(1800, None),
                None,
                false,
                Some((1800, Refresher::Uas, false)),
            ),
            (
                se(1800, uac),
                None,
                false,
                Some((1800, Refresher::Uas, false)),
            ),
            (None, None, true, Some((1800, Refresher::Uac, true))),
            (None, Some(3600), true, Some((3600, Refresher::Uac, true))),
            (None, None, false, None),
        ];
        for (session_expires, min_se, supported, expected) in cases {
            let got = policy
                .negotiate(session_expires, min_se, supported)
                .map(|p| p.map(|p| (p.interval, p.refresher, p.require_timer)));
            assert_eq!(
                got,
                Ok(expected),
                "{session_expires:?} {min_se:?} {supported}"
            );
        }
    }

    #[test]
    fn response_headers() {
        let p = SessionTimerParams {
            interval: 1800,
            refresher: Refresher::Uac,
            require_timer: true,
        };
        assert_eq!(p.session_expires_header(), "1800;refresher=uac");
        assert_eq!(p.require_header(), Some("timer"));
        let q = SessionTimerParams {
            interval: 600,
            refresher: Refresher::Uas,
            require_timer: false,
        };
        assert_eq!(q.session_expires_header(), "600;refresher=uas");
        assert_eq!(q.require_header(), None);
    }

    fn params(interval: u32, refresher: Refresher) -> SessionTimerParams {
        SessionTimerParams {
            interval,
            refresher,
            require_timer: true,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn peer_refresher_expires_before_interval_end() {
        let t0 = origin();
        let mut timer = SessionTimer::new(t0, params(1800, Refresher::Uac));
        // 1800 - min(32, 600) = 1768 s.
        assert_eq!(timer.poll_timeout(), Some(t0 + secs(1768)));
        assert_eq!(timer.handle_timeout(t0 + secs(1767)), None);
        assert_eq!(
            timer.handle_timeout(t0 + secs(1768)),
            Some(Expired::Session)
        );
        assert_eq!(timer.poll_timeout(), None);
        assert_eq!(timer.handle_timeout(t0 + secs(5000)), None);
        // A late refresh does not revive an expired session.
        timer.handle_refresh(t0 + secs(1769));
        assert_eq!(timer.poll_timeout(), None);
    }

    #[test]
    fn short_interval_uses_a_third_as_slack() {
        let t0 = origin();
        let timer = SessionTimer::new(t0, params(90, Refresher::Uac));
        // 90 - min(32, 30) = 60 s.
        assert_eq!(timer.poll_timeout(), Some(t0 + secs(60)));
    }

    #[test]
    fn refresh_pushes_expiry_back() {
        let t0 = origin();
        let mut timer = SessionTimer::new(t0, params(120, Refresher::Uac));
        assert_eq!(timer.poll_timeout(), Some(t0 + secs(88)));
        timer.handle_refresh(t0 + secs(60));
        assert_eq!(timer.poll_timeout(), Some(t0 + secs(148)));
        assert_eq!(timer.handle_timeout(t0 + secs(88)), None);
        assert_eq!(timer.handle_timeout(t0 + secs(148)), Some(Expired::Session));
    }

    #[test]
    fn our_refresh_is_due_at_half_interval() {
        let t0 = origin();
        let mut timer = SessionTimer::new(t0, params(1801, Refresher::Uas));
        assert_eq!(
            timer.poll_timeout(),
            Some(t0 + Duration::from_millis(900_500))
        );
        assert_eq!(timer.handle_timeout(t0 + secs(900)), None);
        assert_eq!(
            timer.handle_timeout(t0 + Duration::from_millis(900_500)),
            Some(Expired::RefreshDue)
        );
        // Refresh not sent or not answered: the session ends with the interval.
        assert_eq!(timer.poll_timeout(), Some(t0 + secs(1801)));
        assert_eq!(
            timer.handle_timeout(t0 + secs(1801)),
            Some(Expired::Session)
        );
        assert_eq!(timer.poll_timeout(), None);
    }

    #[test]
    fn our_refresh_rearms_both_timers() {
        let t0 = origin();
        let mut timer = SessionTimer::new(t0, params(600, Refresher::Uas));
        assert_eq!(
            timer.handle_timeout(t0 + secs(300)),
            Some(Expired::RefreshDue)
        );
        timer.handle_refresh(t0 + secs(301));
        assert_eq!(timer.poll_timeout(), Some(t0 + secs(601)));
        assert_eq!(timer.params().interval, 600);
        // Both due at once (the caller slept long): the expiry wins.
        assert_eq!(
            timer.handle_timeout(t0 + secs(5000)),
            Some(Expired::Session)
        );
    }
}
