//! Durable state: payments, the operation journal and the event log, on SQLite or PostgreSQL.
//!
//! Every write goes through one transaction that (1) updates the payment, (2) appends the event
//! if it is new, and (3) settles the journalled operation, so a crash can never leave one without
//! the others.
//!
//! Ordering of the event log: a reader that has seen sequence N must never later find a new event
//! below N. An autoincrement alone does not give that on PostgreSQL, where two transactions can
//! take 7 and 8 and commit 8 first. So every transaction that appends events first takes one
//! transaction-scoped advisory lock (`pg_advisory_xact_lock`): appends are serialized, a sequence
//! is drawn only while holding the lock, and the lock is released only after the commit is
//! visible, so commit order equals sequence order. SQLite has a single writer by construction;
//! paygate additionally serializes its own writes with an in-process mutex so that concurrent
//! transactions never fail with SQLITE_BUSY: EVERY write in this module goes through
//! `begin_write` or, for the group commit on a SQLite file, takes the same mutex before handing
//! the batch to `sqlite_writer`'s thread (`write.rs`); the `.lock` file keeps other processes out.

mod batch;
mod batch_write;
mod change;
mod convert;
mod customers;
mod entities;
mod log;
mod migration;
mod operations;
mod payments;
mod pg_lists;
mod pg_literal;
mod pg_txn;
mod polling;
pub mod retention;
mod sqlite_reader;
mod sqlite_writer;
mod webhook_secrets;
mod write;

use std::{str::FromStr, sync::Arc, time::Duration};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use sqlx::{
    pool::PoolOptions,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};
use tokio::sync::{Mutex, MutexGuard};

use crate::config;

pub use change::{CommitResult, PaymentChange, Settlement};
pub use customers::{Erased, Erasure};
pub use operations::{JournalEntry, Journaled};
pub use polling::DuePoll;
pub use webhook_secrets::StoredWebhook;
pub use write::Written;

/// The PostgreSQL NOTIFY channel that tells replicas the event log grew. The payload is the
/// batch's latest sequence and the committing store's origin, `<sequence> <origin>`
/// (`pg_lists::last_message` writes it).
pub const NOTIFY_CHANNEL: &str = "paygate_events";

/// The sequence and origin of a commit notification's payload; the origin is empty, and the
/// sequence None when unreadable, for a payload of another version.
pub fn read_commit_notice(payload: &str) -> (Option<u64>, &str) {
    let (sequence, origin) = payload.split_once(' ').unwrap_or((payload, ""));
    (sequence.parse().ok(), origin)
}

/// A new store's origin in its commit notifications.
fn new_origin() -> Arc<str> {
    uuid::Uuid::new_v4().simple().to_string().into()
}

/// The advisory lock key that orders event-log appends on PostgreSQL ("pg" "lg" in ASCII).
const EVENT_LOG_LOCK: i64 = 0x7067_6c67;

/// The statement that takes the append lock for the rest of the transaction.
fn append_lock() -> String {
    format!("SELECT pg_advisory_xact_lock({EVENT_LOG_LOCK})")
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    SecondWriter(String),
    #[error("reference {0} is already used by another payment")]
    ReferenceTaken(String),
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// A batched commit failed; every change in the batch gets this.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the database refused this particular work (a constraint, a trigger, a value it
    /// cannot store) rather than failing whatever it is given (connection lost, a timeout, a lock
    /// held elsewhere). Only a refusal is worth retrying a batch's jobs one by one; anything else
    /// would make each of them wait for the same failure.
    pub fn is_refusal(&self) -> bool {
        use sea_orm::RuntimeErr;
        let database = match self {
            StoreError::Corrupt(_) => return true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                return sqlite_refused(&e.extended_code.to_string())
            }
            StoreError::Sqlx(sqlx::Error::Database(e))
            | StoreError::Db(
                DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(e)))
                | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(e))),
            ) => e,
            _ => return false,
        };
        let code = database.code().unwrap_or_default();
        if database
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
            .is_some()
        {
            sqlite_refused(&code)
        } else {
            postgres_refused(&code)
        }
    }
}

/// SQLite primary result codes (the low byte of the extended code) that refuse the data:
/// 18 TOOBIG, 19 CONSTRAINT (a trigger's RAISE too), 20 MISMATCH. BUSY, LOCKED, IOERR and FULL
/// are not refusals.
fn sqlite_refused(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|extended| matches!(extended & 0xff, 18..=20))
}

/// PostgreSQL SQLSTATE classes that refuse the data: 22 data exception, 23 integrity constraint
/// violation, P0 raised by a PL/pgSQL function (a trigger). Timeouts (57014), lock waits,
/// serialization failures and lost connections are not refusals.
fn postgres_refused(sqlstate: &str) -> bool {
    ["22", "23", "P0"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// The settings of every SQLite connection, the pool's and the writer thread's: WAL; a commit
/// survives a power cut; foreign keys enforced; erased personal data does not stay readable in
/// the file's free pages.
const SQLITE_PRAGMAS: [(&str, &str); 4] = [
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    ("secure_delete", "ON"),
];

/// The database and how to write to it safely.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: DbBackend,
    /// SQLite only: one writer at a time inside this process.
    write_lock: Option<Arc<Mutex<()>>>,
    /// SQLite files only: the prepared-statement writer for batches of changes.
    sqlite_writer: Option<sqlite_writer::SqliteWriter>,
    /// SQLite files only: connections of its own for pages of the event log.
    sqlite_reader: Option<sqlite_reader::SqliteReader>,
    /// SQLite only: an exclusive lock on `<database>.lock`, held while the store lives, so a
    /// second paygate on the same file is refused instead of interleaving writers.
    writer_lock: Arc<std::sync::Mutex<Option<std::fs::File>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// This store's name in its commit notifications (PostgreSQL), so its own listener can
    /// tell them from other replicas' (its own events reach the feed from the writer).
    origin: Arc<str>,
}

impl Store {
    /// Connects to `database.url` (`sqlite://…` or `postgres://…`). SQLite runs in WAL mode with
    /// `synchronous=FULL`: a committed write survives a power cut.
    ///
    /// Every wait on the database is bounded by `database.statement_timeout`: taking a pooled
    /// connection, SQLite's wait for its write lock, and on PostgreSQL each statement and each
    /// transaction left idle. Without these a hung connection or a lock held elsewhere stops every
    /// write for good while the process looks healthy; with them the write fails, the caller gets
    /// UNAVAILABLE (a webhook 503, which Vipps retries) and the next write tries again.
    pub async fn connect(database: &config::Database) -> Result<Self, StoreError> {
        let url = database.url.as_str();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, database.statement_timeout).await
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Self::connect_postgres(url, database.statement_timeout).await
        } else {
            Err(StoreError::Corrupt(
                "DATABASE_URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    async fn connect_sqlite(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?;
        let file = options.get_filename().to_path_buf();
        let writer_lock = lock_single_writer(&file)?;
        let options = SQLITE_PRAGMAS.iter().fold(
            options.create_if_missing(true).busy_timeout(timeout),
            |options, &(name, value)| options.pragma(name, value),
        );
        let pool = ping_only_idle(SqlitePoolOptions::new())
            .max_connections(4)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await?;
        // An in-memory database is private to its connection: it keeps the sea-orm writer.
        let (sqlite_writer, sqlite_reader) = match writer_lock {
            Some(_) => (
                Some(sqlite_writer::SqliteWriter::open(&file, timeout)?),
                Some(sqlite_reader::SqliteReader::new(&file, timeout)),
            ),
            None => (None, None),
        };
        Ok(Self {
            db: SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
            backend: DbBackend::Sqlite,
            write_lock: Some(Arc::new(Mutex::new(()))),
            sqlite_writer,
            sqlite_reader,
            writer_lock: Arc::new(std::sync::Mutex::new(writer_lock)),
            closed: Arc::default(),
            origin: new_origin(),
        })
    }

    async fn connect_postgres(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let millis = timeout.as_millis().to_string();
        // Re-plan every statement with its actual parameters: a plan cached while the tables
        // were small (a fresh database) would keep scanning them sequentially as they grow.
        let options = PgConnectOptions::from_str(url)?.options([
            ("plan_cache_mode", "force_custom_plan"),
            ("statement_timeout", millis.as_str()),
            ("idle_in_transaction_session_timeout", millis.as_str()),
        ]);
        let pool = ping_only_idle(PgPoolOptions::new())
            .max_connections(16)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await?;
        Ok(Self {
            db: SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
            backend: DbBackend::Postgres,
            write_lock: None,
            sqlite_writer: None,
            sqlite_reader: None,
            writer_lock: Arc::default(),
            closed: Arc::default(),
            origin: new_origin(),
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Closes the connections and releases the single-writer lock (at shutdown), so another
    /// paygate can take over the SQLite file at once.
    pub async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(writer) = &self.sqlite_writer {
            writer.stop();
        }
        if let Err(e) = self.db.clone().close().await {
            tracing::warn!(error = %e, "closing the database");
        }
        if let Ok(mut lock) = self.writer_lock.lock() {
            lock.take();
        }
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers whether the database responds.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    /// This store's name in the commit notifications it sends (`commit_notice`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The PostgreSQL pool, for LISTEN (None on SQLite).
    pub fn postgres_pool(&self) -> Option<sqlx::PgPool> {
        match self.backend {
            DbBackend::Postgres => Some(self.db.get_postgres_connection_pool().clone()),
            _ => None,
        }
    }

    /// The in-process write lock (SQLite; none on PostgreSQL), held by every write.
    async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Starts a write transaction holding the write ordering lock (see the module comment).
    async fn begin_write(&self) -> Result<WriteTxn<'_>, StoreError> {
        let guard = self.write_guard().await;
        let txn = self.db.begin().await?;
        match self.backend {
            DbBackend::Postgres => {
                txn.execute_unprepared(&append_lock()).await?;
            }
            // Take SQLite's write lock first (a deferred transaction that reads and then writes
            // fails at once when another process holds the lock; a writer waits busy_timeout).
            _ => {
                txn.execute_unprepared("UPDATE write_lock SET n = n + 1 WHERE id = 1")
                    .await?;
            }
        }
        Ok(WriteTxn { txn, _guard: guard })
    }
}

/// A write transaction and the in-process lock it holds (SQLite).
struct WriteTxn<'a> {
    txn: DatabaseTransaction,
    _guard: Option<MutexGuard<'a, ()>>,
}

/// A pooled connection used within this window is handed out without a ping (HikariCP's
/// `aliveBypassWindowMs` does the same, at 500 ms). sqlx's default pings on every acquire: one
/// more round trip per transaction, paid by every group commit on PostgreSQL. A connection that
/// died within the window fails its statement, which fails that write (UNAVAILABLE, a webhook
/// 503 that Vipps retries) and drops the connection.
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

fn ping_only_idle<DB: sqlx::Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ALIVE_BYPASS {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Takes the single-writer lock next to a SQLite database file (none for in-memory databases).
fn lock_single_writer(db: &std::path::Path) -> Result<Option<std::fs::File>, StoreError> {
    let name = db.to_string_lossy();
    if name.is_empty() || name.contains(":memory:") {
        return Ok(None);
    }
    let path = format!("{name}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::SecondWriter(format!("cannot open {path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(_) => Err(StoreError::SecondWriter(format!(
            "another paygate already uses the SQLite database {name}: SQLite allows one paygate \
             replica; use PostgreSQL (DATABASE_URL=postgres://…) to run several"
        ))),
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl From<StoreError> for crate::domain::PaygateError {
    fn from(e: StoreError) -> Self {
        use crate::domain::PaygateError;
        match e {
            StoreError::ReferenceTaken(r) => PaygateError::AlreadyExists(format!(
                "reference {r} is already used by another payment request"
            )),
            StoreError::SecondWriter(why) => PaygateError::Unavailable(why),
            StoreError::Corrupt(why) => PaygateError::Internal(format!("stored data: {why}")),
            StoreError::Db(_)
            | StoreError::Sqlx(_)
            | StoreError::Sqlite(_)
            | StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "database failure");
                PaygateError::Unavailable("the database is unavailable; retry later".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{postgres_refused, sqlite_refused};
    use crate::test_support;

    /// SQLite (bundled) is compiled to sync its WAL with `fdatasync`, not `fsync`
    /// (`.cargo/config.toml`; README "Unusual choices"). The same variable reaches rustc, so a
    /// build without it fails here.
    #[test]
    fn sqlite_is_built_to_sync_with_fdatasync() {
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags.split_whitespace().any(|f| f == "-DHAVE_FDATASYNC=1"),
            "LIBSQLITE3_FLAGS={flags:?}"
        );
    }

    #[test]
    fn refusals_are_told_from_failures() {
        // SQLite extended codes: CONSTRAINT_TRIGGER, CONSTRAINT_UNIQUE, MISMATCH, TOOBIG.
        for code in ["1811", "2067", "20", "18"] {
            assert!(sqlite_refused(code), "{code}");
        }
        // BUSY, BUSY_SNAPSHOT, LOCKED, IOERR_WRITE, FULL, CANTOPEN.
        for code in ["5", "517", "6", "778", "13", "14", ""] {
            assert!(!sqlite_refused(code), "{code}");
        }
        // raise_exception, unique_violation, string_data_right_truncation.
        for code in ["P0001", "23505", "22001"] {
            assert!(postgres_refused(code), "{code}");
        }
        // query_canceled (statement_timeout), idle_in_transaction_session_timeout, lock wait,
        // serialization, deadlock, admin shutdown, connection failure.
        for code in [
            "57014", "25P03", "55P03", "40001", "40P01", "57P01", "08006", "",
        ] {
            assert!(!postgres_refused(code), "{code}");
        }
    }
    /// Connections are handed out without a ping within `ALIVE_BYPASS`, so one the server has
    /// killed meanwhile fails the statement it is given; sqlx's ping on release then drops it,
    /// and the pool recovers instead of handing it out again. PostgreSQL only.
    #[tokio::test]
    async fn connections_killed_by_the_server_are_dropped_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = test_support::fresh_store(&dir).await;
        let Some(pool) = store.postgres_pool() else {
            return;
        };
        for _ in 0..4 {
            store.get_payment("warm").await.unwrap();
        }
        let open = pool.size();
        assert!(open >= 1);
        let database = url.rsplit('/').next().unwrap().to_owned();
        let admin = std::env::var("TEST_DATABASE_URL").unwrap();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(&database)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(!killed.is_empty());
        let mut failures = 0;
        let mut recovered = false;
        for _ in 0..(open + 4) {
            match store.get_payment("after").await {
                Ok(_) => {
                    recovered = true;
                    break;
                }
                Err(_) => failures += 1,
            }
            tokio::task::yield_now().await;
        }
        assert!(recovered, "still failing after {failures} attempts");
        assert!(
            failures <= open as usize,
            "{failures} failures, {open} connections"
        );
        store.close().await;
    }
}
