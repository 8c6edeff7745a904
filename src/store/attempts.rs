//! Rejected attempts that resolved to no tenant (unknown DID, scanners): counted in memory
//! per (minute, source, reason) and written as one row per key every few seconds, so that
//! a flood of INVITEs is a handful of upserts, not a write per packet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::{Result, Store, StoreError, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    minute: DateTime<Utc>,
    source: IpAddr,
    reason: &'static str,
}

#[derive(Debug, Default)]
struct Tally {
    count: i64,
    last_called: String,
}

/// Bounds the memory a flood of distinct sources can take between two flushes.
const MAX_KEYS: usize = 100_000;

/// The tally of rejected attempts; cheap to clone.
#[derive(Clone, Default)]
pub struct AttemptLog {
    pending: Arc<Mutex<HashMap<Key, Tally>>>,
}

impl AttemptLog {
    /// Counts one attempt from `source` refused for `reason` (e.g. "unknown_did") at `at`,
    /// in the minute it falls in.
    pub fn record(&self, at: DateTime<Utc>, source: IpAddr, reason: &'static str, called: &str) {
        metrics::counter!("vca_rejected_attempts_total", "reason" => reason).increment(1);
        let minute = at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_KEYS
            && !pending.contains_key(&Key {
                minute,
                source,
                reason,
            })
        {
            metrics::counter!("vca_rejected_attempts_unlogged_total").increment(1);
            return;
        }
        let tally = pending
            .entry(Key {
                minute,
                source,
                reason,
            })
            .or_default();
        tally.count += 1;
        if tally.last_called.len() != called.len() || tally.last_called != called {
            tally.last_called.clear();
            tally.last_called.extend(called.chars().take(64));
        }
    }

    /// Writes what has been counted since the last flush.
    pub async fn flush(&self, store: &Store) -> Result<()> {
        let batch: Vec<(Key, Tally)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        const SQL: &str = "INSERT INTO rejected_attempts (minute, source, reason, count, last_called) \
                           VALUES ($1, $2, $3, $4, $5) \
                           ON CONFLICT (minute, source, reason) DO UPDATE SET \
                           count = rejected_attempts.count + excluded.count, \
                           last_called = excluded.last_called";
        on_pool!(store, |pool| {
            let mut tx = pool.begin().await?;
            for (key, tally) in &batch {
                sqlx::query(SQL)
                    .bind(key.minute)
                    .bind(key.source.to_string())
                    .bind(key.reason)
                    .bind(tally.count)
                    .bind(&tally.last_called)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await.map_err(StoreError::from)
        })
    }

    /// Flushes every `every` until the store closes.
    pub async fn run(self, store: Store, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = self.flush(&store).await {
                tracing::warn!(error = %e, "rejected attempts not written");
            }
        }
    }
}

impl Store {
    /// Rejected attempts counted for `reason` from `source` (all minutes).
    pub async fn rejected_attempts(&self, source: IpAddr, reason: &str) -> Result<i64> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM rejected_attempts \
                           WHERE source = $1 AND reason = $2";
        let (n,): (i64,) = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(source.to_string())
            .bind(reason)
            .fetch_one(pool)
            .await)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_tallied_in_the_minute_of_the_time_they_are_given() {
        let log = AttemptLog::default();
        let minute = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let at = |s| minute + TimeDelta::seconds(s);
        log.record(at(30), source, "unknown_did", "+914446001");
        log.record(at(59), source, "unknown_did", "+914446002");
        log.record(at(60), source, "unknown_did", "+914446003");
        let pending = log.pending.lock().unwrap();
        let tally = |minute| {
            let t = &pending[&Key {
                minute,
                source,
                reason: "unknown_did",
            }];
            (t.count, t.last_called.clone())
        };
        assert_eq!(pending.len(), 2);
        assert_eq!(tally(minute), (2, "+914446002".to_owned()));
        assert_eq!(
            tally(minute + TimeDelta::minutes(1)),
            (1, "+914446003".to_owned())
        );
    }
}
