//! A PostgreSQL write transaction that paygate opens and ends itself on a pooled sqlx
//! connection, so that the group commit can send several statements in ONE simple-query
//! message: `BEGIN`, the append lock and the reads in the first, the insert, `NOTIFY` and
//! `COMMIT` in the last (`pg_lists` writes them). sea-orm's transaction sends every statement on
//! its own and waits for its answer: seven round trips per batch of webhooks against two here.
//!
//! Everything else inside the transaction (journal entries and the rare effects) goes through
//! `ConnectionTrait`, as prepared statements with bound values, exactly as on sea-orm's own
//! transaction.
//!
//! A connection is only given back to the pool once its transaction has ended: a transaction
//! left open (an error the rollback could not clear, or a write cancelled mid-way) closes the
//! connection instead, as sea-orm's and sqlx's transactions would roll it back.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use sea_orm::{
    sea_query::Values, ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_binder::SqlxValues;
use sqlx::{pool::PoolConnection, postgres::PgRow, Either, PgPool, Postgres};
use tokio::sync::Mutex;

use super::StoreError;

pub(super) struct PgTxn {
    conn: Mutex<PoolConnection<Postgres>>,
    /// BEGIN was sent and neither COMMIT nor ROLLBACK has been answered.
    open: AtomicBool,
}

impl PgTxn {
    /// A connection from the pool; no transaction yet (`begin` starts one).
    pub async fn acquire(pool: &PgPool) -> Result<Self, StoreError> {
        Ok(Self {
            conn: Mutex::new(pool.acquire().await?),
            open: AtomicBool::new(false),
        })
    }

    /// Sends `BEGIN`, the append lock (as every write transaction takes it, see the store's
    /// module comment) and then `sql` (statements separated by `;`, may be empty) in one
    /// message; the rows of each statement of `sql`, in order.
    pub async fn begin_locked(&self, sql: &str) -> Result<Vec<Vec<PgRow>>, StoreError> {
        self.open.store(true, Ordering::Release);
        let mut message = format!("BEGIN; {}", super::append_lock());
        if !sql.is_empty() {
            message.push_str("; ");
            message.push_str(sql);
        }
        let rows = self.send(&message).await?;
        Ok(rows.into_iter().skip(2).collect())
    }

    /// Sends `sql` (statements separated by `;`) in one message; the rows of each statement.
    pub async fn send(&self, sql: &str) -> Result<Vec<Vec<PgRow>>, StoreError> {
        let mut conn = self.conn.lock().await;
        let mut statements = vec![Vec::new()];
        let mut answers = sqlx::raw_sql(sql).fetch_many(&mut **conn);
        while let Some(answer) = answers.try_next().await? {
            match answer {
                // A statement's CommandComplete: the next rows are the next statement's.
                Either::Left(_) => statements.push(Vec::new()),
                Either::Right(row) => {
                    if let Some(current) = statements.last_mut() {
                        current.push(row);
                    }
                }
            }
        }
        statements.pop();
        Ok(statements)
    }

    /// Sends `sql` and then `COMMIT` in one message; the rows of each statement of `sql`.
    pub async fn commit(&self, sql: &str) -> Result<Vec<Vec<PgRow>>, StoreError> {
        let message = if sql.is_empty() {
            "COMMIT".to_owned()
        } else {
            format!("{sql}; COMMIT")
        };
        let mut rows = self.send(&message).await?;
        self.open.store(false, Ordering::Release);
        rows.pop();
        Ok(rows)
    }

    /// Ends a transaction that failed. When even ROLLBACK fails the connection is closed on
    /// drop instead of going back to the pool.
    pub async fn rollback(&self) {
        if !self.open.load(Ordering::Acquire) {
            return;
        }
        match self.send("ROLLBACK").await {
            Ok(_) => self.open.store(false, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "rollback failed; closing the connection"),
        }
    }
}

impl Drop for PgTxn {
    fn drop(&mut self) {
        if *self.open.get_mut() {
            self.conn.get_mut().close_on_drop();
        }
    }
}

/// A sea-orm statement with its values bound, as sea-orm's own PostgreSQL driver binds them.
fn bound(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(Values(Vec::new()));
    sqlx::query_with(&stmt.sql, SqlxValues(values))
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e))
}

#[async_trait::async_trait]
impl ConnectionTrait for PgTxn {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let done = bound(&stmt).execute(&mut **conn).await.map_err(exec_err)?;
        Ok(done.into())
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let done = sqlx::Executor::execute(&mut **conn, sql)
            .await
            .map_err(exec_err)?;
        Ok(done.into())
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let row = bound(&stmt)
            .fetch_optional(&mut **conn)
            .await
            .map_err(query_err)?;
        Ok(row.map(QueryResult::from))
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let rows = bound(&stmt)
            .fetch_all(&mut **conn)
            .await
            .map_err(query_err)?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::{postgres::PgPoolOptions, PgPool, Row};

    use super::PgTxn;

    /// A pool of ONE connection on a fresh database, so every acquire gets the same connection
    /// unless it was closed; None without `TEST_DATABASE_URL`.
    async fn one_connection() -> Option<PgPool> {
        let dir = tempfile::tempdir().unwrap();
        let (_, url) = crate::test_support::fresh_store(&dir).await;
        if !url.starts_with("postgres") {
            return None;
        }
        Some(
            PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .unwrap(),
        )
    }

    /// A transaction-less `PgTxn` from the pool, and its connection's server process.
    async fn acquired(pool: &PgPool) -> (PgTxn, i32) {
        let txn = PgTxn::acquire(pool).await.unwrap();
        let rows = txn.send("SELECT pg_backend_pid()").await.unwrap();
        let pid = rows[0][0].get(0);
        (txn, pid)
    }

    #[tokio::test]
    async fn a_failed_transaction_is_rolled_back_before_its_connection_is_reused() {
        let Some(pool) = one_connection().await else {
            return;
        };
        let (txn, pid) = acquired(&pool).await;
        txn.begin_locked("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        assert!(txn.send("SELECT 1 / 0").await.is_err());
        txn.rollback().await;
        drop(txn);
        let (txn, again) = acquired(&pool).await;
        assert_eq!(again, pid, "the same connection, reused");
        // Outside a transaction block a savepoint is an error; the table was rolled back.
        assert!(txn.send("SAVEPOINT s").await.is_err());
        assert!(txn.send("SELECT count(*) FROM t").await.is_err());
    }

    #[tokio::test]
    async fn a_transaction_left_open_closes_its_connection() {
        let Some(pool) = one_connection().await else {
            return;
        };
        let (txn, pid) = acquired(&pool).await;
        txn.begin_locked("CREATE TABLE t (n int)").await.unwrap();
        drop(txn); // as when a write is cancelled mid-way
        let (txn, again) = acquired(&pool).await;
        assert_ne!(again, pid, "a new connection");
        assert!(txn.send("SELECT count(*) FROM t").await.is_err());
    }

    #[tokio::test]
    async fn a_committed_transaction_gives_its_connection_back() {
        let Some(pool) = one_connection().await else {
            return;
        };
        let (txn, pid) = acquired(&pool).await;
        txn.begin_locked("CREATE TABLE t (n int)").await.unwrap();
        let rows = txn
            .commit("INSERT INTO t VALUES (7) RETURNING n")
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "the rows of the statements before COMMIT");
        assert_eq!(rows[0][0].get::<i32, _>(0), 7);
        drop(txn);
        let (txn, again) = acquired(&pool).await;
        assert_eq!(again, pid);
        let rows = txn.send("SELECT n FROM t").await.unwrap();
        assert_eq!(rows[0].len(), 1, "committed");
    }
}
