//! The SQLite side of the call-record writer: a connection of its own, driven from a
//! blocking thread, that binds each batch straight from the records.
//!
//! Through the async pool every statement of a batch is a round trip between the runtime
//! and the database thread, and every text value is first copied into the statement's
//! arguments. Under load those round trips queue behind the SIP work on the runtime and
//! stretch each commit, and with it the wait of every answered call's 200 OK. Here a batch
//! is one hand-off: the thread binds, steps and commits it, and hands it back.
//!
//! The file is the one the pool opened (WAL mode is a property of the file); the
//! connection sets the per-connection settings of the pool's: `synchronous=FULL`, foreign
//! keys on, and the same busy timeout, so the API's writes and the writer's take turns.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{CachedStatement, Connection, OpenFlags, Transaction, TransactionBehavior};

use super::calls::{
    CallWrite, Merged, ROWS_PER_STATEMENT, SQLITE_STATEMENTS, Statements, fixed_chunks,
};
use super::model::{Call, CallEvent};
use super::{Result, StoreError};
use crate::ids::NodeId;

/// How long a write waits for another connection's transaction, as the pool's do.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's SQLite connection, opened on first use and again after it was lost.
pub(super) struct SqliteSink {
    path: Arc<Path>,
    /// The node whose calls the writer records: new rows name it.
    node: Arc<NodeId>,
    conn: Option<Connection>,
}

impl SqliteSink {
    pub(super) fn new(path: PathBuf, node: NodeId) -> SqliteSink {
        SqliteSink {
            path: path.into(),
            node: Arc::new(node),
            conn: None,
        }
    }

    /// Commits `writes` in one transaction on a blocking thread. `writes` is left as it
    /// was, whatever the outcome, so that the caller can keep what must be retried.
    pub(super) async fn write(&mut self, writes: &mut Vec<CallWrite>) -> Result<()> {
        let batch = Arc::new(std::mem::take(writes));
        let shared = Arc::clone(&batch);
        let path = Arc::clone(&self.path);
        let node = Arc::clone(&self.node);
        let conn = self.conn.take();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(conn) => conn,
                None => match open(&path) {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(err)),
                },
            };
            let result = write_batch(&mut conn, &node, &shared);
            (Some(conn), result)
        })
        .await;
        // The thread's reference is gone once it has finished, panicked or not.
        *writes = Arc::try_unwrap(batch).unwrap_or_else(|batch| batch.as_ref().clone());
        match joined {
            Ok((conn, result)) => {
                self.conn = conn;
                result.map_err(StoreError::Sqlite)
            }
            // A panic on the thread loses the connection, not the batch.
            Err(join) => Err(StoreError::WriterStopped(join.to_string())),
        }
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every statement of the writer stays prepared.
    conn.set_prepared_statement_cache_capacity(3 * ROWS_PER_STATEMENT.len());
    Ok(conn)
}

/// The same rows, in the same order and encodings, as the PostgreSQL writer's statements
/// and the pool's reads expect: ids as hyphenated lowercase text, times as RFC 3339 with
/// the fraction SQLite's driver writes, event details as JSON text.
fn write_batch(conn: &mut Connection, node: &NodeId, batch: &[CallWrite]) -> rusqlite::Result<()> {
    let Merged {
        calls,
        updates,
        events,
    } = Merged::new(batch);
    let statements: &Statements = &SQLITE_STATEMENTS;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    execute_chunks(&tx, &statements.calls, &calls, |b, c| bind_call(b, c, node))?;
    execute_chunks(&tx, &statements.updates, &updates, bind_update)?;
    execute_chunks(&tx, &statements.events, &events, bind_event)?;
    tx.commit()
}

/// Writes `rows` through the multi-row statements `texts`, one per chunk size.
fn execute_chunks<T>(
    tx: &Transaction<'_>,
    texts: &[String; ROWS_PER_STATEMENT.len()],
    rows: &[&T],
    bind_row: impl Fn(&mut Binder<'_, '_>, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    for (size, chunk) in fixed_chunks(rows) {
        let mut stmt = tx.prepare_cached(&texts[size])?;
        let mut binder = Binder::new(&mut stmt);
        for row in chunk {
            bind_row(&mut binder, row)?;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// Binds values to a statement's parameters in order.
struct Binder<'s, 'c> {
    stmt: &'s mut CachedStatement<'c>,
    next: usize,
}

impl<'s, 'c> Binder<'s, 'c> {
    fn new(stmt: &'s mut CachedStatement<'c>) -> Self {
        Binder { stmt, next: 1 }
    }

    fn bind<T: rusqlite::ToSql>(&mut self, value: T) -> rusqlite::Result<&mut Self> {
        self.stmt.raw_bind_parameter(self.next, value)?;
        self.next += 1;
        Ok(self)
    }

    fn id(&mut self, id: uuid::Uuid) -> rusqlite::Result<&mut Self> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text: &str = id.hyphenated().encode_lower(&mut text);
        self.bind(text)
    }

    fn opt_id(&mut self, id: Option<uuid::Uuid>) -> rusqlite::Result<&mut Self> {
        match id {
            Some(id) => self.id(id),
            None => self.bind(rusqlite::types::Null),
        }
    }

    fn time(&mut self, at: Option<DateTime<Utc>>) -> rusqlite::Result<&mut Self> {
        self.bind(at.map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, false)))
    }
}

fn bind_call(b: &mut Binder<'_, '_>, c: &Call, node: &NodeId) -> rusqlite::Result<()> {
    b.id(c.id.0)?
        .id(c.tenant_id.0)?
        .opt_id(c.phone_number_id.map(|id| id.0))?
        .opt_id(c.ai_profile_id.map(|id| id.0))?
        .opt_id(c.trunk_id.map(|id| id.0))?
        .bind(c.direction.as_str())?
        .bind(c.caller.as_str())?
        .bind(c.called.as_str())?
        .bind(c.called_raw.as_str())?
        .bind(c.sip_call_id.as_str())?
        .bind(c.transport.as_str())?
        .bind(c.remote_addr.as_str())?
        .bind(c.codec.as_deref())?
        .bind(c.status.as_str())?
        .bind(c.sip_status)?
        .bind(c.q850_cause)?
        .bind(c.hangup_cause.map(|h| h.as_str()))?
        .time(Some(c.started_at))?
        .time(c.answered_at)?
        .time(c.ended_at)?
        .bind(c.duration_s)?
        .bind(c.recording_status.map(|r| r.as_str()))?
        .bind(c.recording_duration_ms)?
        .bind(c.recording_bytes)?
        .bind(c.recording_error.as_deref())?
        .bind(node.as_str())?;
    Ok(())
}

/// An update leaves the row's node as it was inserted.
fn bind_update(b: &mut Binder<'_, '_>, c: &Call) -> rusqlite::Result<()> {
    b.id(c.id.0)?
        .bind(c.codec.as_deref())?
        .bind(c.status.as_str())?
        .bind(c.sip_status)?
        .bind(c.q850_cause)?
        .bind(c.hangup_cause.map(|h| h.as_str()))?
        .time(c.answered_at)?
        .time(c.ended_at)?
        .bind(c.duration_s)?
        .bind(c.recording_status.map(|r| r.as_str()))?
        .bind(c.recording_duration_ms)?
        .bind(c.recording_bytes)?
        .bind(c.recording_error.as_deref())?;
    Ok(())
}

fn bind_event(b: &mut Binder<'_, '_>, e: &CallEvent) -> rusqlite::Result<()> {
    b.id(e.id.0)?
        .id(e.call_id.0)?
        .id(e.tenant_id.0)?
        .bind(e.kind.as_str())?
        .time(Some(e.at))?
        .bind(
            serde_json::to_string(&e.detail.0)
                .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?,
        )?;
    Ok(())
}
