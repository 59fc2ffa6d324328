//! Pages of the event log on a SQLite file, read through `rusqlite` connections of their own.
//!
//! A catch-up reads the log a page at a time. Through sqlx every row (or, as before this reader,
//! one JSON page built by SQLite and parsed again here) crossed from sqlx's SQLite thread to
//! ours; here a page is read on a blocking thread that steps a prepared statement and parses
//! each payment snapshot straight from SQLite's buffer: one hand-off per page, no JSON page
//! built and parsed, no copy of the text.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{params, Connection, OpenFlags};

use super::{convert, StoreError};
use crate::domain::PaymentEvent;

/// More readers than this at once (many subscribers catching up) wait for one; each is a
/// connection with its own page cache.
const MAX_CONNECTIONS: usize = 4;

#[derive(Clone)]
pub(super) struct SqliteReader {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    busy_timeout: Duration,
    connections: Mutex<Connections>,
    returned: std::sync::Condvar,
}

#[derive(Default)]
struct Connections {
    idle: Vec<Connection>,
    opened: usize,
}

impl SqliteReader {
    /// Connections are opened at their first use (after the pool has run the migrations).
    pub fn new(path: &Path, busy_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                busy_timeout,
                connections: Mutex::default(),
                returned: std::sync::Condvar::new(),
            }),
        }
    }

    /// Up to `limit` events after `after`, in log order.
    pub async fn page_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner.take()?;
            let page = read_page(&conn, after, limit);
            inner.give_back(conn);
            page
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("reading the event log: {e}")))?
    }
}

impl Inner {
    fn take(&self) -> Result<Connection, StoreError> {
        let mut pool = self.connections.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.opened < MAX_CONNECTIONS {
                pool.opened += 1;
                drop(pool);
                return self.open().inspect_err(|_| {
                    if let Ok(mut pool) = self.connections.lock() {
                        pool.opened -= 1;
                    }
                });
            }
            pool = self.returned.wait(pool).map_err(|_| poisoned())?;
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.connections.lock() {
            pool.idle.push(conn);
            self.returned.notify_one();
        }
    }

    /// `query_only`: this connection never writes, whatever runs on it. (Opened read-write, as
    /// the pool's are: a read-only connection to a WAL file depends on how its `-shm` can be
    /// opened.)
    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.set_prepared_statement_cache_capacity(4);
        Ok(conn)
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("the event log reader's lock was poisoned".into())
}

fn read_page(conn: &Connection, after: i64, limit: i64) -> Result<Vec<PaymentEvent>, StoreError> {
    let mut select = conn.prepare_cached(
        "SELECT sequence, reference, psp_reference, name, currency, amount, timestamp_ms, \
         idempotency_key, success, source, payment FROM events \
         WHERE sequence > ?1 ORDER BY sequence LIMIT ?2",
    )?;
    let mut rows = select.query(params![after, limit])?;
    let mut page = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(1024));
    while let Some(row) = rows.next()? {
        let snapshot = row.get_ref(10)?.as_str_or_null();
        let snapshot = snapshot.map_err(|e| StoreError::Corrupt(format!("event snapshot: {e}")))?;
        let payment = match snapshot {
            Some(snapshot) => Some(
                serde_json::from_str(snapshot)
                    .map_err(|e| StoreError::Corrupt(format!("event snapshot: {e}")))?,
            ),
            None => None,
        };
        page.push(convert::logged(convert::LoggedRow {
            sequence: row.get(0)?,
            reference: row.get(1)?,
            psp_reference: row.get(2)?,
            name: row.get(3)?,
            currency: row.get(4)?,
            amount: row.get(5)?,
            timestamp_ms: row.get(6)?,
            idempotency_key: row.get(7)?,
            success: row.get(8)?,
            source: row.get(9)?,
            payment,
        })?);
    }
    Ok(page)
}
