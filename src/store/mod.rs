//! Storage: one `Store` over SQLite (the embedded default) or PostgreSQL (several nodes).
//!
//! Every query is written once and runs on both backends: [`on_pool!`] expands a query
//! expression for each pool type, and the row and id types encode themselves for both.
//! Every query on tenant-owned data takes a [`TenantId`](crate::ids::TenantId) and filters
//! by it, so a caller cannot read another tenant's rows by passing the wrong id.

mod agents;
mod attempts;
mod calls;
mod keys;
pub mod model;
mod numbers;
mod profiles;
mod routes;
mod secrets;
mod sqlite_writer;
mod tenants;
mod trunks;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use agents::{AGENT_DIGEST_ALGORITHMS, AgentCredentials, AgentPatch, NewAgent};
pub use attempts::AttemptLog;
pub use calls::{CallFilter, CallWrite, CallWriter, WriteError};
pub use keys::hash_api_key;
pub use numbers::{NewPhoneNumber, PhoneNumberPatch};
pub use profiles::{AiProfilePatch, NewAiProfile, ProfileStream, StreamToken};
pub use routes::{CallMedia, ResolvedRoute, Route, StreamTarget};
pub use tenants::{NewTenant, TenantPatch, default_sip_domain};
pub use trunks::{Ha1Set, TrunkCredentials, TrunkOwner, TrunkSettings};

/// A storage failure, mapped to an HTTP or SIP status at the edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No row with that id (or not one the caller's tenant owns).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule of the data model was broken; names the field.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A reference or check constraint rejected the value; names the field.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The database cannot be reached in time: retry later (503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else (500, with a safe message at the edge).
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    /// The call-record writer's own SQLite connection failed.
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// The call-record writer's database thread stopped in the middle of a batch.
    #[error("the call-record writer stopped: {0}")]
    WriterStopped(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Classifies a driver error; `field` names what a constraint violation is about.
    fn from_sqlx(err: sqlx::Error, field: &'static str) -> Self {
        use sqlx::error::ErrorKind;
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(field),
                ErrorKind::ForeignKeyViolation
                | ErrorKind::CheckViolation
                | ErrorKind::NotNullViolation => StoreError::Invalid(field),
                _ => StoreError::Other(err),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(err),
            _ => StoreError::Other(err),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from_sqlx(err, "value")
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database behind vca-sip.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The body is
/// type-checked once per backend, so a query written once serves both.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file, created on first start.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(String),
}

impl DatabaseUrl {
    /// Reads `sqlite://file`, `sqlite:file`, a bare file path, or `postgres://...`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let path = match url.strip_prefix("sqlite:") {
            Some(rest) => rest.strip_prefix("//").unwrap_or(rest),
            None if url.contains("://") => {
                return Err("expected sqlite://FILE or postgres://...".to_owned());
            }
            None => url,
        };
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err("an SQLite database needs a file path".to_owned());
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }

    /// The folder beside the database, where the admin-token file lives.
    pub fn data_dir(&self) -> PathBuf {
        match self {
            DatabaseUrl::Sqlite(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            },
            DatabaseUrl::Postgres(_) => PathBuf::from("."),
        }
    }
}

/// How long a caller waits for a database connection before the store reports
/// `Unavailable` (and a SIP caller gets 503 instead of a stalled call).
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

impl Store {
    /// Opens the database. SQLite runs in WAL mode with `synchronous=FULL` and foreign keys
    /// on; PostgreSQL keeps its default `synchronous_commit=on`.
    pub async fn connect(url: &DatabaseUrl) -> Result<Store> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Unavailable)?;
                Ok(Store::Sqlite(pool))
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgConnectOptions::from_str(url).map_err(StoreError::Unavailable)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Unavailable)?;
                Ok(Store::Postgres(pool))
            }
        }
    }

    /// Applies pending migrations; re-applying is a no-op.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// A round trip to the database, bounded by the acquire timeout.
    pub async fn ping(&self) -> Result<()> {
        let ping = async {
            on_pool!(self, |pool| sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ()))
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, ping).await {
            Ok(result) => result.map_err(StoreError::Unavailable),
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    /// The durability settings in force, as the database reports them: SQLite's
    /// `(journal_mode, synchronous)` or PostgreSQL's `synchronous_commit`.
    pub async fn durability(&self) -> Result<String> {
        match self {
            Store::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                    .fetch_one(&mut *conn)
                    .await?;
                let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(format!("journal_mode={mode} synchronous={sync}"))
            }
            Store::Postgres(pool) => {
                let (sync,): (String,) = sqlx::query_as("SHOW synchronous_commit")
                    .fetch_one(pool)
                    .await?;
                Ok(format!("synchronous_commit={sync}"))
            }
        }
    }

    /// Which backend this is, for logs and health.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// `at` at the precision both backends keep (microseconds), so that what is written reads
/// back equal. What the store stamps it takes from its caller, as it read its clock.
pub fn stamp(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// A page of rows in id order, and the cursor for the next page.
#[derive(Debug)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next_cursor: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says more exist.
    fn from_rows(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> C) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}
