//! Call records and their timelines, written through a group-commit writer.
//!
//! Every change to a call goes to one writer task as an upsert of the whole record (plus
//! its events). The writer commits whatever has queued up in one transaction, so N calls
//! cost one fsync, not N. A change that must be durable before the caller goes on (the
//! answered call, before its 200 OK leaves) waits for its batch to commit; the rest do
//! not wait. The queue is bounded: when it is full the caller learns at once (and a new
//! call gets 503) instead of stalling.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot};

use super::model::{Call, CallEvent, CallStatus, Direction};
use super::{Page, Result, Store, StoreError, on_pool};
use crate::ids::{CallId, TenantId};

macro_rules! call_columns {
    () => {
        "id, tenant_id, phone_number_id, ai_profile_id, trunk_id, direction, caller, called, \
         called_raw, sip_call_id, transport, remote_addr, codec, status, sip_status, \
         hangup_cause, started_at, answered_at, ended_at, duration_s"
    };
}

/// What an upsert of a call changes when the call is already recorded.
const UPSERT_TAIL: &str = " ON CONFLICT (id) DO UPDATE SET codec = excluded.codec, \
     status = excluded.status, sip_status = excluded.sip_status, \
     hangup_cause = excluded.hangup_cause, answered_at = excluded.answered_at, \
     ended_at = excluded.ended_at, duration_s = excluded.duration_s";

/// Filters of the call list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub status: Option<CallStatus>,
    pub direction: Option<Direction>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn call(&self, tenant: TenantId, id: CallId) -> Result<Call> {
        const SQL: &str = concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE tenant_id = $1 AND id = $2"
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NotFound)
    }

    pub async fn call_events(&self, tenant: TenantId, id: CallId) -> Result<Vec<CallEvent>> {
        const SQL: &str = "SELECT id, call_id, tenant_id, kind, at, detail FROM call_events \
                           WHERE tenant_id = $1 AND call_id = $2 ORDER BY id";
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .fetch_all(pool)
            .await)
        .map_err(StoreError::from)
    }

    /// A tenant's calls, newest first.
    pub async fn list_calls(
        &self,
        tenant: TenantId,
        filter: &CallFilter,
        cursor: Option<CallId>,
        limit: u32,
    ) -> Result<Page<Call, CallId>> {
        const SQL: &str = concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
             AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR direction = $4) \
             AND ($5 IS NULL OR started_at >= $5) AND ($6 IS NULL OR started_at < $6) \
             ORDER BY id DESC LIMIT $7"
        );
        let rows: Vec<Call> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(cursor)
            .bind(filter.status)
            .bind(filter.direction)
            .bind(filter.since)
            .bind(filter.until)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await)?;
        Ok(Page::from_rows(rows, limit, |c| c.id))
    }

    /// Writes a batch of call changes in one transaction, as a few multi-row statements
    /// (the latest state of each call, then the events). Rows go in chunks of the sizes in
    /// [`ROWS_PER_STATEMENT`], so that only a handful of distinct statements exist and each
    /// stays prepared in the connection's cache instead of being parsed again per batch.
    async fn write_batch(&self, batch: &[CallWrite]) -> Result<()> {
        // A call changed twice in one batch is written once, as it stands last (an upsert
        // cannot touch the same row twice in one statement).
        let mut latest: HashMap<CallId, &Call> = HashMap::with_capacity(batch.len());
        for write in batch {
            latest.insert(write.call.id, &write.call);
        }
        let calls: Vec<&Call> = latest.into_values().collect();
        let events: Vec<&CallEvent> = batch.iter().flat_map(|w| &w.events).collect();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await.map_err(StoreError::from)?;
            for chunk in fixed_chunks(&calls) {
                let mut query =
                    QueryBuilder::new(concat!("INSERT INTO calls (", call_columns!(), ") "));
                query.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id)
                        .push_bind(c.tenant_id)
                        .push_bind(c.phone_number_id)
                        .push_bind(c.ai_profile_id)
                        .push_bind(c.trunk_id)
                        .push_bind(c.direction)
                        .push_bind(c.caller.as_str())
                        .push_bind(c.called.as_str())
                        .push_bind(c.called_raw.as_str())
                        .push_bind(c.sip_call_id.as_str())
                        .push_bind(c.transport)
                        .push_bind(c.remote_addr.as_str())
                        .push_bind(c.codec.as_deref())
                        .push_bind(c.status)
                        .push_bind(c.sip_status)
                        .push_bind(c.hangup_cause)
                        .push_bind(c.started_at)
                        .push_bind(c.answered_at)
                        .push_bind(c.ended_at)
                        .push_bind(c.duration_s);
                });
                query.push(UPSERT_TAIL);
                query.build().execute(&mut *tx).await?;
            }
            for chunk in fixed_chunks(&events) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO call_events (id, call_id, tenant_id, kind, at, detail) ",
                );
                query.push_values(chunk, |mut row, e| {
                    row.push_bind(e.id)
                        .push_bind(e.call_id)
                        .push_bind(e.tenant_id)
                        .push_bind(e.kind.as_str())
                        .push_bind(e.at)
                        .push_bind(&e.detail);
                });
                query.build().execute(&mut *tx).await?;
            }
            tx.commit().await.map_err(StoreError::from)
        })
    }
}

/// Rows per multi-row statement, largest first: a call has 20 parameters, so the largest
/// statement binds 5,120, well under both backends' limits.
const ROWS_PER_STATEMENT: [usize; 4] = [256, 32, 4, 1];

/// Splits `rows` into chunks whose lengths all come from [`ROWS_PER_STATEMENT`], largest
/// first.
fn fixed_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = ROWS_PER_STATEMENT
            .into_iter()
            .find(|&size| size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// One change to a call: its whole record as it now stands, and the events that led there.
#[derive(Debug, Clone)]
pub struct CallWrite {
    pub call: Call,
    pub events: Vec<CallEvent>,
}

struct Queued {
    /// None: a barrier that completes when everything queued before it is committed.
    write: Option<CallWrite>,
    done: Option<oneshot::Sender<Result<(), WriteError>>>,
}

/// Why a call change was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The writer's queue is full: the node is overloaded (a new call gets 503).
    #[error("the call-record queue is full")]
    Overloaded,
    /// The batch could not be committed (a new call gets 503).
    #[error("the call record could not be committed")]
    Failed,
    /// The writer has shut down.
    #[error("the call-record writer has stopped")]
    Stopped,
}

/// The handle to the group-commit writer; cheap to clone.
#[derive(Clone)]
pub struct CallWriter {
    queue: mpsc::Sender<Queued>,
}

/// How many changes one transaction takes at most.
const MAX_BATCH: usize = 1024;
/// How long a small batch waits for more changes before it is committed.
const LINGER: Duration = Duration::from_millis(2);

impl CallWriter {
    /// Starts the writer task over `store`, with room for `capacity` queued changes.
    pub fn start(store: Store, capacity: usize) -> (CallWriter, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(run_writer(store, rx));
        (CallWriter { queue }, task)
    }

    /// Queues a change without waiting for it to be committed.
    pub fn record(&self, write: CallWrite) -> Result<(), WriteError> {
        self.queue
            .try_send(Queued {
                write: Some(write),
                done: None,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
            })
    }

    /// Queues a change and waits until its batch is committed.
    pub async fn record_durably(&self, write: CallWrite) -> Result<(), WriteError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .try_send(Queued {
                write: Some(write),
                done: Some(done),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
            })?;
        committed.await.unwrap_or(Err(WriteError::Stopped))
    }
}

impl CallWriter {
    /// Waits until every change queued so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Queued {
                write: None,
                done: Some(done),
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        committed.await.unwrap_or(Err(WriteError::Stopped))
    }
}

/// How many changes nobody waits for are kept for a retry while the database is down.
const MAX_PENDING: usize = 200_000;
/// How often changes kept for a retry are tried again when nothing new arrives.
const RETRY_EVERY: Duration = Duration::from_secs(1);

async fn run_writer(store: Store, mut rx: mpsc::Receiver<Queued>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    // Changes nobody waits for that could not be written yet: they go first next time.
    let mut pending: Vec<CallWrite> = Vec::new();
    loop {
        let closed = tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => n == 0,
            () = tokio::time::sleep(RETRY_EVERY), if !pending.is_empty() => false,
        };
        if !closed && batch.len() < MAX_BATCH / 4 {
            // A moment for more changes to join: every commit rewrites the same few hot
            // pages, so larger batches cost less per call, and the answered call's 200 OK
            // waits this long at most.
            tokio::time::sleep(LINGER).await;
            while batch.len() < MAX_BATCH
                && let Ok(queued) = rx.try_recv()
            {
                batch.push(queued);
            }
        }
        if closed {
            // Every handle is gone: one last try for what is still pending.
            if !pending.is_empty() && store.write_batch(&pending).await.is_err() {
                metrics::counter!("vca_call_records_lost_total").increment(pending.len() as u64);
            }
            return;
        }
        let mut writes = std::mem::take(&mut pending);
        let retried = writes.len();
        let mut durable = Vec::with_capacity(batch.len());
        for queued in &mut batch {
            if let Some(write) = queued.write.take() {
                durable.push(queued.done.is_some());
                writes.push(write);
            }
        }
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            store.write_batch(&writes).await
        };
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(err) => {
                // Waiters learn at once (a new call gets 503 in time); changes nobody waits
                // for are kept and tried again, so a database outage loses no record that
                // was not already refused.
                tracing::error!(error = %err, calls = writes.len(), "call records not written yet");
                let kept = writes
                    .drain(..)
                    .enumerate()
                    .filter(|(i, _)| *i < retried || !durable[*i - retried])
                    .map(|(_, w)| w);
                pending.extend(kept);
                if pending.len() > MAX_PENDING {
                    let lost = pending.len() - MAX_PENDING;
                    pending.drain(..lost);
                    metrics::counter!("vca_call_records_lost_total").increment(lost as u64);
                }
                Err(WriteError::Failed)
            }
        };
        metrics::counter!("vca_call_record_batches_total").increment(1);
        metrics::histogram!("vca_call_record_batch_size").record(writes.len() as f64);
        metrics::gauge!("vca_call_records_pending").set(pending.len() as f64);
        for queued in batch.drain(..) {
            if let Some(done) = queued.done {
                let _ = done.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_chunks_cover_every_row_in_order_with_known_sizes() {
        for n in [0usize, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257, 1000, 1024] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&rows).collect();
            assert!(chunks.iter().all(|c| ROWS_PER_STATEMENT.contains(&c.len())));
            let joined: Vec<usize> = chunks.concat();
            assert_eq!(joined, rows, "{n} rows");
        }
        let sizes: Vec<usize> = fixed_chunks(&[0u8; 297]).map(<[u8]>::len).collect();
        assert_eq!(sizes, [256, 32, 4, 4, 1]);
    }
}
