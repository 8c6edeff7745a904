//! Flood and scanner defence without IO: per-source request rates, bans, and the
//! signatures of known scanners.
//!
//! A source outside every trunk network that sends more than `max_requests` in `window`,
//! that announces itself as a scanner (`User-Agent: friendly-scanner`, `sipvicious`, ...),
//! or that tries `max_distinct_users` different numbers within `user_window`, is banned
//! for `ban`: nothing it sends is read further or answered. Allow-listed sources (trunk
//! networks, loopback as the development trunk) are never counted or banned: a carrier
//! legitimately sends thousands of requests a second.
//!
//! The table of sources is bounded. When it is full of live entries, a new unknown source
//! is refused (fail closed) rather than let an address-spraying flood grow it without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits of the flood guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodConfig {
    /// Requests one source may send within `window` (more bans it).
    pub max_requests: u32,
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
    /// Distinct dialed users one source may try within `user_window` (this many bans it).
    pub max_distinct_users: usize,
    pub user_window: Duration,
    /// Sources tracked at once.
    pub max_sources: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            max_requests: 16,
            window: Duration::from_secs(2),
            ban: Duration::from_secs(300),
            max_distinct_users: 50,
            user_window: Duration::from_secs(10),
            max_sources: 100_000,
        }
    }
}

/// Why a source was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    /// Too many requests in the window.
    Rate,
    /// A scanner's User-Agent.
    Signature,
    /// Too many distinct dialed users: number or extension scanning.
    Scanning,
}

impl BanReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BanReason::Rate => "rate",
            BanReason::Signature => "signature",
            BanReason::Scanning => "scanning",
        }
    }
}

/// What to do with one message from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Drop it; `Some` when this message started the ban (log and count it once).
    Drop(Option<BanReason>),
}

#[derive(Debug)]
struct Source {
    window_start: Instant,
    count: u32,
    banned_until: Option<Instant>,
    /// Authenticated recently: not rate limited until then.
    trusted_until: Option<Instant>,
    users_since: Instant,
    /// Hashes of the distinct users dialed since `users_since` (at most the limit).
    users: Vec<u64>,
    last_seen: Instant,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            window_start: now,
            count: 0,
            banned_until: None,
            trusted_until: None,
            users_since: now,
            users: Vec::new(),
            last_seen: now,
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| now < until)
    }
}

/// Per-source counters and bans.
#[derive(Debug)]
pub struct FloodGuard {
    config: FloodConfig,
    sources: HashMap<IpAddr, Source>,
}

/// User-Agent fragments of SIP scanners and crackers (case-insensitive): the default of
/// the `scanner_agents` setting.
pub const SCANNER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipsak",
    "sundayddr",
    "iwar",
    "vaxsipuseragent",
    "pplsip",
    "smap",
    "sipscan",
];

/// Whether `user_agent` holds one of `signatures` (lower case), ignoring case.
pub fn is_scanner(user_agent: &str, signatures: &[String]) -> bool {
    if signatures.is_empty() {
        return false;
    }
    let lower = user_agent.to_ascii_lowercase();
    signatures.iter().any(|s| lower.contains(s.as_str()))
}

impl FloodGuard {
    pub fn new(config: FloodConfig) -> FloodGuard {
        FloodGuard {
            config,
            sources: HashMap::new(),
        }
    }

    pub fn config(&self) -> &FloodConfig {
        &self.config
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Counts one message from `source` (not allow-listed) at `now`.
    pub fn check(&mut self, now: Instant, source: IpAddr) -> Verdict {
        let config = self.config;
        let Some(entry) = self.entry(now, source) else {
            return Verdict::Drop(None);
        };
        entry.last_seen = now;
        if entry.banned(now) {
            return Verdict::Drop(None);
        }
        if entry.trusted_until.is_some_and(|until| now < until) {
            return Verdict::Pass;
        }
        if now.duration_since(entry.window_start) >= config.window {
            entry.window_start = now;
            entry.count = 0;
        }
        entry.count += 1;
        if entry.count > config.max_requests {
            entry.banned_until = Some(now + config.ban);
            return Verdict::Drop(Some(BanReason::Rate));
        }
        Verdict::Pass
    }

    /// Whether `source` is banned now (without counting a message).
    pub fn is_banned(&self, now: Instant, source: IpAddr) -> bool {
        self.sources.get(&source).is_some_and(|s| s.banned(now))
    }

    /// Bans `source` for `reason`. Returns whether it was not banned before.
    pub fn ban(&mut self, now: Instant, source: IpAddr) -> bool {
        let ban = self.config.ban;
        let Some(entry) = self.entry(now, source) else {
            return false;
        };
        let fresh = !entry.banned(now);
        entry.banned_until = Some(now + ban);
        fresh
    }

    /// Exempts `source` from the rate limit for a ban's length: it has just proved its
    /// credentials (a carrier on a digest-only trunk sends many requests a second).
    pub fn trust(&mut self, now: Instant, source: IpAddr) {
        let ban = self.config.ban;
        if let Some(entry) = self.entry(now, source) {
            entry.trusted_until = Some(now + ban);
        }
    }

    /// Notes that `source` dialed `user`; bans it (returning true) when it has now tried
    /// too many distinct users within the window.
    pub fn observe_user(&mut self, now: Instant, source: IpAddr, user: &str) -> bool {
        let (limit, window, ban) = (
            self.config.max_distinct_users,
            self.config.user_window,
            self.config.ban,
        );
        let Some(entry) = self.entry(now, source) else {
            return false;
        };
        if entry.banned(now) || entry.trusted_until.is_some_and(|until| now < until) {
            // A source that proved its credentials dials whatever numbers its calls need.
            return false;
        }
        if now.duration_since(entry.users_since) >= window {
            entry.users_since = now;
            entry.users.clear();
        }
        let hash = fnv1a(user.as_bytes());
        if !entry.users.contains(&hash) {
            entry.users.push(hash);
        }
        if entry.users.len() >= limit {
            entry.banned_until = Some(now + ban);
            entry.users.clear();
            return true;
        }
        false
    }

    /// The entry of `source`, made room for when the table is full; `None` when it is full
    /// of live entries.
    fn entry(&mut self, now: Instant, source: IpAddr) -> Option<&mut Source> {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.config.max_sources {
            self.evict(now);
            if self.sources.len() >= self.config.max_sources {
                return None;
            }
        }
        Some(
            self.sources
                .entry(source)
                .or_insert_with(|| Source::new(now)),
        )
    }

    /// Forgets sources that are neither banned nor seen within the longer window.
    pub fn evict(&mut self, now: Instant) {
        let idle = self.config.window.max(self.config.user_window);
        self.sources.retain(|_, s| {
            s.banned(now)
                || s.trusted_until.is_some_and(|until| now < until)
                || now.duration_since(s.last_seen) < idle
        });
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn seventeenth_request_in_two_seconds_bans_for_five_minutes() {
        let mut g = FloodGuard::new(FloodConfig::default());
        let t0 = origin();
        let src = ip("192.0.2.1");
        for i in 0..16 {
            assert_eq!(
                g.check(t0 + Duration::from_millis(i * 100), src),
                Verdict::Pass
            );
        }
        let t = t0 + Duration::from_millis(1_700);
        assert_eq!(g.check(t, src), Verdict::Drop(Some(BanReason::Rate)));
        // Logged once: later drops carry no reason.
        assert_eq!(g.check(t, src), Verdict::Drop(None));
        assert_eq!(
            g.check(t + Duration::from_secs(299), src),
            Verdict::Drop(None)
        );
        assert_eq!(g.check(t + Duration::from_secs(300), src), Verdict::Pass);
        // Another source was never affected.
        assert_eq!(g.check(t, ip("192.0.2.2")), Verdict::Pass);
    }

    #[test]
    fn a_steady_rate_under_the_limit_passes() {
        let mut g = FloodGuard::new(FloodConfig::default());
        let t0 = origin();
        let src = ip("192.0.2.1");
        // 8 per second for a minute: 16 per 2 s window, never more.
        for i in 0..480u64 {
            assert_eq!(
                g.check(t0 + Duration::from_millis(i * 125), src),
                Verdict::Pass,
                "request {i}"
            );
        }
    }

    #[test]
    fn fifty_distinct_users_in_ten_seconds_ban() {
        let mut g = FloodGuard::new(FloodConfig::default());
        let t0 = origin();
        let src = ip("192.0.2.9");
        for i in 0..49 {
            assert!(!g.observe_user(t0, src, &format!("{i}")));
            // Repeating a user adds nothing.
            assert!(!g.observe_user(t0, src, "0"));
        }
        assert!(g.observe_user(t0 + Duration::from_secs(9), src, "49"));
        assert!(g.is_banned(t0 + Duration::from_secs(9), src));
        // Slower scanning starts a new window each 10 s.
        let slow = ip("192.0.2.10");
        for i in 0..200u64 {
            let t = t0 + Duration::from_millis(i * 250);
            assert!(!g.observe_user(t, slow, &format!("{i}")), "user {i}");
        }
    }

    #[test]
    fn an_authenticated_source_is_not_rate_limited() {
        let mut g = FloodGuard::new(FloodConfig::default());
        let t0 = origin();
        let src = ip("192.0.2.1");
        g.trust(t0, src);
        for i in 0..1_000u64 {
            assert_eq!(g.check(t0 + Duration::from_millis(i), src), Verdict::Pass);
        }
        // Nor is it taken for a scanner, however many numbers it dials.
        for i in 0..200 {
            assert!(!g.observe_user(t0, src, &format!("{i}")));
        }
        // Trust ends with the ban length; the limit applies again.
        let later = t0 + Duration::from_secs(301);
        for _ in 0..16 {
            assert_eq!(g.check(later, src), Verdict::Pass);
        }
        assert_eq!(g.check(later, src), Verdict::Drop(Some(BanReason::Rate)));
    }

    #[test]
    fn scanner_agents_are_recognised() {
        let list: Vec<String> = SCANNER_AGENTS.iter().map(|s| (*s).to_owned()).collect();
        for ua in [
            "friendly-scanner",
            "SIPVicious 0.3.4",
            "sipcli/v1.8",
            "VaxSIPUserAgent/3.1",
        ] {
            assert!(is_scanner(ua, &list), "{ua}");
            assert!(!is_scanner(ua, &[]), "an empty list matches nothing");
        }
        for ua in [
            "baresip v3.0.0 (x86_64/linux)",
            "sipp",
            "Tata IMS",
            "Asterisk PBX 20",
        ] {
            assert!(!is_scanner(ua, &list), "{ua}");
        }
        let mut g = FloodGuard::new(FloodConfig::default());
        let now = origin();
        assert!(g.ban(now, ip("192.0.2.3")));
        assert!(!g.ban(now, ip("192.0.2.3")));
        assert_eq!(g.check(now, ip("192.0.2.3")), Verdict::Drop(None));
    }

    #[test]
    fn the_table_is_bounded_and_fails_closed_when_full_of_live_entries() {
        let config = FloodConfig {
            max_sources: 4,
            ..FloodConfig::default()
        };
        let mut g = FloodGuard::new(config);
        let t0 = origin();
        for i in 1..=4 {
            assert_eq!(g.check(t0, ip(&format!("192.0.2.{i}"))), Verdict::Pass);
        }
        assert_eq!(g.check(t0, ip("192.0.2.5")), Verdict::Drop(None));
        assert_eq!(g.len(), 4);
        // Once the others go idle past the windows, they are evicted to make room.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(g.check(later, ip("192.0.2.5")), Verdict::Pass);
        assert_eq!(g.len(), 1);
    }
}
