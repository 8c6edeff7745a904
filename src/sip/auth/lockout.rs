//! Lockout of repeated digest failures (RFC 3261 §26.3.2.2 guessing attacks): counts per
//! username and source, and per source.

use super::*;
use std::collections::HashMap;
use std::net::IpAddr;

/// Settings of a [`Lockout`].
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    /// Failures of one (username, source) pair within the window that lock the pair (10).
    pub pair_threshold: u32,
    /// Failures from one source, across usernames, within the window that lock the source
    /// (30): stops a cracker that rotates usernames.
    pub source_threshold: u32,
    /// Length of the counting window in seconds (60).
    pub window_secs: u64,
    /// How long a lock lasts in seconds (300).
    pub lock_secs: u64,
    /// Most entries in each table (65,536). Stops a flood of distinct usernames or sources
    /// from growing memory; when full and nothing has expired, new keys are not tracked
    /// (the source table still catches one source rotating usernames).
    pub max_entries: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            pair_threshold: 10,
            source_threshold: 30,
            window_secs: 60,
            lock_secs: 300,
            max_entries: 65_536,
        }
    }
}

/// What was locked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockScope {
    /// One username from one source.
    Pair {
        /// The username (truncated to 64 bytes).
        username: String,
        /// The source address.
        source: IpAddr,
    },
    /// Every username from one source.
    Source {
        /// The source address.
        source: IpAddr,
    },
}

/// A security event for the caller to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockoutEvent {
    /// A lock started.
    Locked {
        /// What is locked.
        scope: LockScope,
        /// Failures counted in the window.
        failures: u32,
        /// End of the lock, Unix seconds.
        until: u64,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Counter {
    pub(super) window_start: u64,
    pub(super) failures: u32,
    pub(super) locked_until: u64,
}

impl Counter {
    pub(super) fn locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    pub(super) fn expired(&self, now: u64, window: u64) -> bool {
        !self.locked(now) && now >= self.window_start.saturating_add(window)
    }

    /// Counts one failure; returns the failure count if this one starts a lock.
    pub(super) fn fail(&mut self, now: u64, cfg: &LockoutConfig, threshold: u32) -> Option<u32> {
        if self.locked(now) {
            return None;
        }
        if now >= self.window_start.saturating_add(cfg.window_secs) {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold {
            self.locked_until = now.saturating_add(cfg.lock_secs);
            Some(self.failures)
        } else {
            None
        }
    }
}

pub(super) type PairKey = (Box<[u8]>, IpAddr);

/// Counts digest failures per (username, source) and per source, and locks out those that
/// go over their threshold within the window. Bounded in memory; allow-listed sources are
/// never counted or locked.
#[derive(Debug)]
pub struct Lockout {
    pub(super) config: LockoutConfig,
    pub(super) pairs: HashMap<PairKey, Counter>,
    pub(super) sources: HashMap<IpAddr, Counter>,
    pub(super) last_sweep: Option<u64>,
}

impl Lockout {
    /// An empty tracker.
    pub fn new(config: LockoutConfig) -> Self {
        Lockout {
            config,
            pairs: HashMap::new(),
            sources: HashMap::new(),
            last_sweep: None,
        }
    }

    pub(super) fn pair_key(username: &str, source: IpAddr) -> PairKey {
        let bytes = username.as_bytes();
        let kept = bytes.get(..MAX_LOCKOUT_USERNAME).unwrap_or(bytes);
        (kept.into(), source)
    }

    /// Whether `username` from `source` is locked out at `now`.
    pub fn is_locked(&self, now: u64, username: &str, source: IpAddr, allow_listed: bool) -> bool {
        if allow_listed {
            return false;
        }
        if self.sources.get(&source).is_some_and(|c| c.locked(now)) {
            return true;
        }
        self.pairs
            .get(&Self::pair_key(username, source))
            .is_some_and(|c| c.locked(now))
    }

    /// Counts one failure of `username` from `source`; returns the locks it started.
    pub fn record_failure(
        &mut self,
        now: u64,
        username: &str,
        source: IpAddr,
        allow_listed: bool,
    ) -> Vec<LockoutEvent> {
        let mut events = Vec::new();
        if allow_listed {
            return events;
        }
        self.sweep_if_full(now);
        let cfg = &self.config;
        let fresh = Counter {
            window_start: now,
            failures: 0,
            locked_until: 0,
        };
        let key = Self::pair_key(username, source);
        let room = self.pairs.len() < cfg.max_entries;
        let pair = if room || self.pairs.contains_key(&key) {
            Some(self.pairs.entry(key).or_insert(fresh))
        } else {
            None
        };
        if let Some(failures) = pair.and_then(|c| c.fail(now, cfg, cfg.pair_threshold)) {
            events.push(LockoutEvent::Locked {
                scope: LockScope::Pair {
                    username: String::from_utf8_lossy(&Self::pair_key(username, source).0)
                        .into_owned(),
                    source,
                },
                failures,
                until: now.saturating_add(cfg.lock_secs),
            });
        }
        let room = self.sources.len() < cfg.max_entries;
        let src = if room || self.sources.contains_key(&source) {
            Some(self.sources.entry(source).or_insert(fresh))
        } else {
            None
        };
        if let Some(failures) = src.and_then(|c| c.fail(now, cfg, cfg.source_threshold)) {
            events.push(LockoutEvent::Locked {
                scope: LockScope::Source { source },
                failures,
                until: now.saturating_add(cfg.lock_secs),
            });
        }
        events
    }

    /// Clears the pair's failure count after a successful authentication (the source's
    /// count is kept, so one good account does not launder a source's guesses).
    pub fn record_success(&mut self, username: &str, source: IpAddr) {
        let key = Self::pair_key(username, source);
        if self.pairs.get(&key).is_some_and(|c| c.locked_until == 0) {
            self.pairs.remove(&key);
        }
    }

    /// Drops expired entries when a table is full, at most once per second so that a
    /// flood against a full table does not pay a full scan per request.
    pub(super) fn sweep_if_full(&mut self, now: u64) {
        let full = self.pairs.len() >= self.config.max_entries
            || self.sources.len() >= self.config.max_entries;
        if !full || self.last_sweep == Some(now) {
            return;
        }
        self.last_sweep = Some(now);
        let window = self.config.window_secs;
        self.pairs.retain(|_, c| !c.expired(now, window));
        self.sources.retain(|_, c| !c.expired(now, window));
    }

    /// Entries held: (pairs, sources). For metrics and tests.
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.sources.len())
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.sources.is_empty()
    }
}
