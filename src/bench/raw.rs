//! The raw ingest baseline: an axum endpoint that only verifies the webhook's HMAC and appends
//! the body as a row to its own SQLite file (WAL, synchronous=FULL) through one writer task that
//! commits whatever is pending as one transaction. No parsing, no business logic: the floor
//! paygate's webhook path is compared with.

use std::{net::SocketAddr, path::Path, str::FromStr as _, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::webhook::PATH;
use crate::webhooks::signature;

/// The most rows in one transaction (as paygate's writer).
const MAX_BATCH: usize = 512;

type Job = (String, oneshot::Sender<bool>);

#[derive(Clone)]
struct Raw {
    secret: String,
    host: String,
    jobs: mpsc::Sender<Job>,
}

pub struct RawServer {
    pub addr: SocketAddr,
    pool: sqlx::SqlitePool,
    stop: CancellationToken,
    pub synchronous: i64,
}

impl RawServer {
    /// Starts the endpoint and its writer on the server runtime.
    pub async fn start(
        server: &tokio::runtime::Handle,
        path: &Path,
        secret: &str,
    ) -> anyhow::Result<Self> {
        let url = format!("sqlite://{}", path.display());
        let secret = secret.to_owned();
        server
            .spawn(async move {
                let options = SqliteConnectOptions::from_str(&url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await?;
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS raw_events (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        body TEXT NOT NULL,
                        received_ms INTEGER NOT NULL)",
                )
                .execute(&pool)
                .await?;
                let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                    .fetch_one(&pool)
                    .await?;
                let (jobs, queue) = mpsc::channel(8192);
                tokio::spawn(writer(pool.clone(), queue));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let state = Raw {
                    secret,
                    host: format!("127.0.0.1:{}", addr.port()),
                    jobs,
                };
                let router = Router::new().route(PATH, post(receive)).with_state(state);
                let stop = CancellationToken::new();
                let signal = stop.clone();
                tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(signal.cancelled_owned())
                        .await
                });
                anyhow::Ok(Self {
                    addr,
                    pool,
                    stop,
                    synchronous,
                })
            })
            .await?
    }

    /// Rows committed so far.
    pub async fn rows(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM raw_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.pool.close().await;
    }
}

async fn receive(State(raw): State<Raw>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(date), Some(hash), Some(authorization)) = (
        header("x-ms-date"),
        header("x-ms-content-sha256"),
        header("authorization"),
    ) else {
        return StatusCode::UNAUTHORIZED;
    };
    if signature::verify(
        &raw.secret,
        PATH,
        &raw.host,
        date,
        hash,
        authorization,
        &body,
    )
    .is_err()
    {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return StatusCode::BAD_REQUEST;
    };
    let (reply, answer) = oneshot::channel();
    if raw.jobs.send((text, reply)).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match answer.await {
        Ok(true) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Group commit: takes what is queued (up to MAX_BATCH), one transaction, one fsync.
async fn writer(pool: sqlx::SqlitePool, mut queue: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let ok = commit(&pool, &batch).await.is_ok();
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(ok);
        }
    }
}

async fn commit(pool: &sqlx::SqlitePool, batch: &[Job]) -> Result<(), sqlx::Error> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = pool.begin().await?;
    for (body, _) in batch {
        sqlx::query("INSERT INTO raw_events (body, received_ms) VALUES (?, ?)")
            .bind(body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
