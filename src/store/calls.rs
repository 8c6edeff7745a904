//! Call records and their timelines, written through a group-commit writer.
//!
//! Every change to a call goes to one writer task as an upsert of the whole record (plus
//! its events). The writer commits whatever has queued up in one transaction, so N calls
//! cost one fsync, not N. A change that must be durable before the caller goes on (the
//! answered call, before its 200 OK leaves) waits for its batch to commit; the rest do
//! not wait. The queue is bounded: when it is full the caller learns at once (and a new
//! call gets 503) instead of stalling.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::model::{Call, CallEvent, CallStatus, Direction, HangupCause};
use super::sqlite_writer::SqliteSink;
use super::{Page, Result, Store, StoreError, on_pool};
use crate::clock::Stopwatch;
use crate::ids::{CallEventId, CallId, NodeId, TenantId};

macro_rules! call_columns {
    () => {
        "id, tenant_id, phone_number_id, ai_profile_id, trunk_id, direction, caller, called, \
         called_raw, sip_call_id, transport, remote_addr, codec, status, sip_status, \
         q850_cause, hangup_cause, started_at, answered_at, ended_at, duration_s, \
         recording_status, recording_duration_ms, recording_bytes, recording_error"
    };
}

/// The parameters of a call's row as the writer inserts it: its columns, then the node
/// that handles it.
const INSERT_PARAMETERS: usize = 26;
/// The parameters of a call's row as the writer updates it: its id and the columns that
/// change.
const UPDATE_PARAMETERS: usize = 13;

/// The columns a recorded call changes, set the same way by an upsert and an update.
macro_rules! changed_columns {
    ($from:literal) => {
        concat!(
            "codec = ",
            $from,
            ".codec, status = ",
            $from,
            ".status, sip_status = ",
            $from,
            ".sip_status, q850_cause = ",
            $from,
            ".q850_cause, hangup_cause = ",
            $from,
            ".hangup_cause, answered_at = ",
            $from,
            ".answered_at, ended_at = ",
            $from,
            ".ended_at, duration_s = ",
            $from,
            ".duration_s, recording_status = ",
            $from,
            ".recording_status, recording_duration_ms = ",
            $from,
            ".recording_duration_ms, recording_bytes = ",
            $from,
            ".recording_bytes, recording_error = ",
            $from,
            ".recording_error"
        )
    };
}

/// What an upsert of a call changes when the call is already recorded.
const UPSERT_TAIL: &str = concat!(
    " ON CONFLICT (id) DO UPDATE SET ",
    changed_columns!("excluded")
);
/// The rows of an update of recorded calls: the id, then the columns it sets.
const UPDATE_HEAD: &str = "WITH changed (id, codec, status, sip_status, q850_cause, \
     hangup_cause, answered_at, ended_at, duration_s, recording_status, \
     recording_duration_ms, recording_bytes, recording_error) AS (";
const UPDATE_TAIL: &str = concat!(
    ") UPDATE calls SET ",
    changed_columns!("changed"),
    " FROM changed WHERE calls.id = changed.id"
);

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

    /// Marks a ready recording of the call deleted; false when it was not ready (never
    /// recorded, not finished, failed or deleted already).
    pub async fn delete_recording(&self, tenant: TenantId, id: CallId) -> Result<bool> {
        const SQL: &str = "UPDATE calls SET recording_status = 'deleted', recording_bytes = NULL \
                           WHERE tenant_id = $1 AND id = $2 AND recording_status = 'ready'";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done == 1)
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
}

/// A call that a node left live, as its restart reads it.
#[derive(Debug, sqlx::FromRow)]
struct LeftLive {
    id: CallId,
    tenant_id: TenantId,
    status: CallStatus,
    started_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    /// The time of its latest event.
    last_event: Option<DateTime<Utc>>,
}

impl LeftLive {
    /// Its end: the last thing recorded of it, since nothing after that is known.
    fn ended_at(&self) -> DateTime<Utc> {
        [Some(self.started_at), self.answered_at, self.last_event]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.started_at)
    }
}

impl Store {
    /// Closes the calls that `node` left live (`queued`, `initiated`, `ringing` or
    /// `answered`) when it stopped without ending them: a crash. Called when the node
    /// starts, before it takes calls, so that every call of `node` still live then is one
    /// that no process carries any more; other nodes' calls are left alone, whatever
    /// their state. Each is closed with `hangup_cause` `node_restart`: `ended` (with its
    /// duration) when it was answered, `failed` otherwise, `ended_at` its last recorded
    /// activity (the latest of its events, answer and start), and an `ended` or `failed`
    /// event on its timeline as any other end has. `now` is when the closing happens, kept
    /// in the event. Returns how many calls were closed.
    pub async fn close_calls_left_by(&self, node: &NodeId, now: DateTime<Utc>) -> Result<u64> {
        const LIVE: &str = "SELECT id, tenant_id, status, started_at, answered_at, \
             (SELECT MAX(e.at) FROM call_events e \
              WHERE e.tenant_id = calls.tenant_id AND e.call_id = calls.id) AS last_event \
             FROM calls WHERE node_id = $1 \
             AND status IN ('queued', 'initiated', 'ringing', 'answered')";
        // The state it was read in is part of the condition: a change since then wins.
        const CLOSE: &str = "UPDATE calls SET status = $1, hangup_cause = $2, ended_at = $3, \
             duration_s = $4 WHERE tenant_id = $5 AND id = $6 AND status = $7";
        const EVENT: &str = "INSERT INTO call_events (id, call_id, tenant_id, kind, at, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let cause = HangupCause::NodeRestart;
        let why = "the node handling the call stopped without ending it";
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let left: Vec<LeftLive> = sqlx::query_as(LIVE)
                .bind(node.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let mut closed = 0;
            for call in &left {
                let ended_at = call.ended_at();
                let duration_s = call
                    .answered_at
                    .map(|answered| (ended_at - answered).num_seconds().max(0));
                let (status, kind, detail) = if call.status == CallStatus::Answered {
                    (
                        CallStatus::Ended,
                        "ended",
                        serde_json::json!({"hangup_cause": cause, "reason": why,
                            "duration_s": duration_s, "closed_at": now}),
                    )
                } else {
                    (
                        CallStatus::Failed,
                        "failed",
                        serde_json::json!({"hangup_cause": cause, "reason": why,
                            "closed_at": now}),
                    )
                };
                let changed = sqlx::query(CLOSE)
                    .bind(status)
                    .bind(cause)
                    .bind(ended_at)
                    .bind(duration_s)
                    .bind(call.tenant_id)
                    .bind(call.id)
                    .bind(call.status)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    continue;
                }
                sqlx::query(EVENT)
                    .bind(CallEventId::new())
                    .bind(call.id)
                    .bind(call.tenant_id)
                    .bind(kind)
                    .bind(ended_at)
                    .bind(sqlx::types::Json(detail))
                    .execute(&mut *tx)
                    .await?;
                closed += 1;
            }
            tx.commit().await?;
            Ok(closed)
        })
    }
}

/// A batch as it is written: the latest state of each call, split into calls to upsert
/// whole and calls whose record is committed already, and every event in order.
pub(super) struct Merged<'a> {
    pub(super) calls: Vec<&'a Call>,
    pub(super) updates: Vec<&'a Call>,
    pub(super) events: Vec<&'a CallEvent>,
}

impl<'a> Merged<'a> {
    pub(super) fn new(batch: &'a [CallWrite]) -> Merged<'a> {
        // A call changed twice in one batch is written once, as it stands last (a statement
        // cannot touch the same row twice). It is upserted whole unless every change of it
        // here follows a committed write: then only the columns a call changes are set.
        let mut latest: HashMap<CallId, (&Call, bool)> = HashMap::with_capacity(batch.len());
        for write in batch {
            latest
                .entry(write.call.id)
                .and_modify(|(call, stored)| {
                    *call = &write.call;
                    *stored &= write.stored;
                })
                .or_insert((&write.call, write.stored));
        }
        let mut calls: Vec<&Call> = Vec::with_capacity(latest.len());
        let mut updates: Vec<&Call> = Vec::with_capacity(latest.len());
        for (call, stored) in latest.into_values() {
            if stored {
                updates.push(call);
            } else {
                calls.push(call);
            }
        }
        let events = batch.iter().flat_map(|w| &w.events).collect();
        Merged {
            calls,
            updates,
            events,
        }
    }
}

/// Writes a batch of call changes to PostgreSQL in one transaction, as a few multi-row
/// statements (the latest state of each call, then the events). Rows go in chunks of the
/// sizes in [`ROWS_PER_STATEMENT`], whose statement texts are built once: each stays
/// prepared in the connection's cache, and a batch only binds values.
async fn write_batch_postgres(pool: &PgPool, node: &NodeId, batch: &[CallWrite]) -> Result<()> {
    let Merged {
        calls,
        updates,
        events,
    } = Merged::new(batch);
    let statements = &*POSTGRES_STATEMENTS;
    let mut tx = pool.begin().await?;
    for (size, chunk) in fixed_chunks(&calls) {
        let mut query = sqlx::query(statements.calls[size].as_str());
        for c in chunk {
            query = query
                .bind(c.id)
                .bind(c.tenant_id)
                .bind(c.phone_number_id)
                .bind(c.ai_profile_id)
                .bind(c.trunk_id)
                .bind(c.direction)
                .bind(c.caller.as_str())
                .bind(c.called.as_str())
                .bind(c.called_raw.as_str())
                .bind(c.sip_call_id.as_str())
                .bind(c.transport)
                .bind(c.remote_addr.as_str())
                .bind(c.codec.as_deref())
                .bind(c.status)
                .bind(c.sip_status)
                .bind(c.q850_cause)
                .bind(c.hangup_cause)
                .bind(c.started_at)
                .bind(c.answered_at)
                .bind(c.ended_at)
                .bind(c.duration_s)
                .bind(c.recording_status)
                .bind(c.recording_duration_ms)
                .bind(c.recording_bytes)
                .bind(c.recording_error.as_deref())
                .bind(node.as_str());
        }
        query.execute(&mut *tx).await?;
    }
    for (size, chunk) in fixed_chunks(&updates) {
        let mut query = sqlx::query(statements.updates[size].as_str());
        for c in chunk {
            query = query
                .bind(c.id)
                .bind(c.codec.as_deref())
                .bind(c.status)
                .bind(c.sip_status)
                .bind(c.q850_cause)
                .bind(c.hangup_cause)
                .bind(c.answered_at)
                .bind(c.ended_at)
                .bind(c.duration_s)
                .bind(c.recording_status)
                .bind(c.recording_duration_ms)
                .bind(c.recording_bytes)
                .bind(c.recording_error.as_deref());
        }
        query.execute(&mut *tx).await?;
    }
    for (size, chunk) in fixed_chunks(&events) {
        let mut query = sqlx::query(statements.events[size].as_str());
        for e in chunk {
            query = query
                .bind(e.id)
                .bind(e.call_id)
                .bind(e.tenant_id)
                .bind(e.kind.as_str())
                .bind(e.at)
                .bind(&e.detail);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(tx.commit().await?)
}

/// Where the writer commits its batches.
enum Sink {
    /// PostgreSQL, through the store's pool; new rows name this node.
    Postgres(PgPool, NodeId),
    /// SQLite, through a connection of the writer's own on a blocking thread.
    Sqlite(SqliteSink),
}

impl Sink {
    fn new(store: Store, node: NodeId) -> Sink {
        match store {
            Store::Sqlite(pool) => Sink::Sqlite(SqliteSink::new(
                pool.connect_options().get_filename().to_owned(),
                node,
            )),
            Store::Postgres(pool) => Sink::Postgres(pool, node),
        }
    }

    /// Commits `writes` in one transaction; they are still there afterwards, whatever
    /// the outcome.
    async fn write(&mut self, writes: &mut Vec<CallWrite>) -> Result<()> {
        match self {
            Sink::Postgres(pool, node) => write_batch_postgres(pool, node, writes).await,
            Sink::Sqlite(sink) => sink.write(writes).await,
        }
    }
}

/// Rows per multi-row statement, largest first: an inserted call has 22 parameters, so
/// the largest statement binds 5,632, well under both backends' limits.
pub(super) const ROWS_PER_STATEMENT: [usize; 4] = [256, 32, 4, 1];

/// The multi-row statements of one backend, one per entry of [`ROWS_PER_STATEMENT`].
pub(super) struct Statements {
    pub(super) calls: [String; ROWS_PER_STATEMENT.len()],
    pub(super) updates: [String; ROWS_PER_STATEMENT.len()],
    pub(super) events: [String; ROWS_PER_STATEMENT.len()],
}

impl Statements {
    fn new(placeholders: Placeholders) -> Statements {
        Statements {
            calls: ROWS_PER_STATEMENT.map(|rows| {
                values_statement(
                    concat!("INSERT INTO calls (", call_columns!(), ", node_id)"),
                    INSERT_PARAMETERS,
                    rows,
                    UPSERT_TAIL,
                    placeholders,
                )
            }),
            updates: ROWS_PER_STATEMENT.map(|rows| {
                values_statement(
                    UPDATE_HEAD,
                    UPDATE_PARAMETERS,
                    rows,
                    UPDATE_TAIL,
                    placeholders,
                )
            }),
            events: ROWS_PER_STATEMENT.map(|rows| {
                values_statement(
                    "INSERT INTO call_events (id, call_id, tenant_id, kind, at, detail)",
                    6,
                    rows,
                    "",
                    placeholders,
                )
            }),
        }
    }
}

pub(super) static SQLITE_STATEMENTS: LazyLock<Statements> =
    LazyLock::new(|| Statements::new(Placeholders::Anonymous));
static POSTGRES_STATEMENTS: LazyLock<Statements> =
    LazyLock::new(|| Statements::new(Placeholders::Numbered));

/// How a statement marks its parameters.
#[derive(Debug, Clone, Copy)]
enum Placeholders {
    /// `?`: SQLite finds a named parameter (`$N`) by a walk over every name, which makes
    /// binding 5,120 of them quadratic.
    Anonymous,
    /// `$1`, `$2`, ..: the only form PostgreSQL takes.
    Numbered,
}

/// `head VALUES (p, .., p), .. tail`: `rows` rows of `columns` parameters.
fn values_statement(
    head: &str,
    columns: usize,
    rows: usize,
    tail: &str,
    placeholders: Placeholders,
) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 7);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match placeholders {
                Placeholders::Anonymous => sql.push('?'),
                Placeholders::Numbered => {
                    let _ = write!(sql, "${}", row * columns + column + 1);
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Splits `rows` into chunks whose lengths all come from [`ROWS_PER_STATEMENT`], largest
/// first; each comes with the index of its size there.
pub(super) fn fixed_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = (usize, &[T])> {
    std::iter::from_fn(move || {
        let size = ROWS_PER_STATEMENT
            .into_iter()
            .position(|size| size <= rows.len())?;
        let (chunk, rest) = rows.split_at(ROWS_PER_STATEMENT[size]);
        rows = rest;
        Some((size, chunk))
    })
}

/// One change to a call: its whole record as it now stands, and the events that led there.
#[derive(Debug, Clone)]
pub struct CallWrite {
    pub call: Call,
    pub events: Vec<CallEvent>,
    /// The call's record is known to be committed (an earlier durable write succeeded), so
    /// this change updates it instead of upserting it whole.
    pub stored: bool,
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
    /// Starts the writer task over `store`, with room for `capacity` queued changes. The
    /// calls it records are `node`'s: a call's row names the node whose writer inserted it.
    pub fn start(
        store: Store,
        capacity: usize,
        node: NodeId,
    ) -> (CallWriter, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(run_writer(store, node, rx));
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

async fn run_writer(store: Store, node: NodeId, mut rx: mpsc::Receiver<Queued>) {
    let mut sink = Sink::new(store, node);
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
            if !pending.is_empty() && sink.write(&mut pending).await.is_err() {
                metrics::counter!("vca_call_records_lost_total").increment(pending.len() as u64);
            }
            return;
        }
        let mut writes = std::mem::take(&mut pending);
        let retried = writes.len();
        writes.reserve_exact(batch.len());
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
            let started = Stopwatch::start();
            let outcome = sink.write(&mut writes).await;
            metrics::histogram!("vca_call_record_commit_seconds").record(started.seconds());
            outcome
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
            let chunks: Vec<(usize, &[usize])> = fixed_chunks(&rows).collect();
            assert!(
                chunks
                    .iter()
                    .all(|(i, c)| ROWS_PER_STATEMENT[*i] == c.len())
            );
            let joined: Vec<usize> = chunks.into_iter().flat_map(|(_, c)| c).copied().collect();
            assert_eq!(joined, rows, "{n} rows");
        }
        let sizes: Vec<usize> = fixed_chunks(&[0u8; 297]).map(|(_, c)| c.len()).collect();
        assert_eq!(sizes, [256, 32, 4, 4, 1]);
    }

    #[test]
    fn values_statement_marks_every_parameter_in_order() {
        let tail = " ON CONFLICT DO NOTHING";
        assert_eq!(
            values_statement("INSERT INTO t (a, b)", 2, 3, tail, Placeholders::Numbered),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            values_statement("INSERT INTO t (a, b)", 2, 2, "", Placeholders::Anonymous),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
