//! The servers the suite runs beside paygate, each in a process of its own (this binary,
//! `paygate-bench __serve <kind>`), started on the server CPU exactly like paygate, so their CPU
//! time and memory are read the same way and nothing of the load generator mixes in:
//!
//! - `emulator`: the Vipps emulator (`vipps_emulator`) paygate talks to (`VIPPS_BASE_URL`), and
//!   the create scenarios call directly as their baseline;
//! - `verify`: an axum endpoint that only verifies the webhook (date window + HMAC) and answers
//!   200: the ceiling of the HTTP + verify part, no storage;
//! - `sqlite-floor`: verify + a durable append to SQLite (WAL, `synchronous=FULL`) through one
//!   writer thread that commits whatever is queued (up to 512) as one transaction — the durable
//!   group-commit floor paygate's webhook path is compared with. rusqlite, one connection, one
//!   prepared INSERT per row inside the transaction;
//! - `postgres-floor`: verify + a group-committed append to PostgreSQL (one connection, one
//!   multi-row `INSERT … SELECT FROM UNNEST` per batch, autocommit, so one WAL flush per batch);
//! - `bare`: a plain tonic server of the same `PaymentService`: `StreamPaymentEvents` without a
//!   cursor holds the stream open and never yields (memory per idle stream of tonic/hyper/h2 alone);
//!   with `after_sequence` it streams `BENCH_BARE_EVENTS` pre-built events as fast as tonic
//!   can (the transport ceiling for catch-up).
//!
//! Protocol: the child binds 127.0.0.1:0, prints `ready <addr>` on stdout, and serves until its
//! stdin closes (so it never outlives the suite). Webhook servers answer `GET /metrics` with
//! `bench_webhooks_accepted_total <n>`.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::SocketAddr,
    path::Path,
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Router,
};
use futures::{Stream, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use crate::{
    grpc::proto::{self, payment_service_server::PaymentService},
    pin::Layout,
    webhook::PATH,
};

/// Environment of a `__serve` child.
pub const ENV_SECRET: &str = "BENCH_WEBHOOK_SECRET";
pub const ENV_DB: &str = "BENCH_SERVER_DB";
pub const ENV_BARE_EVENTS: &str = "BENCH_BARE_EVENTS";

/// The most rows in one transaction (as paygate's writer).
const MAX_BATCH: usize = 512;
/// Accepted skew of `x-ms-date` (paygate's default).
const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Emulator,
    Verify,
    SqliteFloor,
    PostgresFloor,
    Bare,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Emulator => "emulator",
            Self::Verify => "verify",
            Self::SqliteFloor => "sqlite-floor",
            Self::PostgresFloor => "postgres-floor",
            Self::Bare => "bare",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "emulator" => Self::Emulator,
            "verify" => Self::Verify,
            "sqlite-floor" => Self::SqliteFloor,
            "postgres-floor" => Self::PostgresFloor,
            "bare" => Self::Bare,
            other => anyhow::bail!("unknown server kind {other:?}"),
        })
    }
}

/// A running `__serve` child.
pub struct ServerProc {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl ServerProc {
    /// Starts `kind` on the server CPU; returns once it listens. Its stderr goes to `log`.
    pub async fn start(
        layout: &Layout,
        kind: Kind,
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating paygate-bench itself")?;
        let mut command = Command::new(exe);
        command
            .args(["__serve", kind.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = layout
            .spawn_server(&mut command)
            .with_context(|| format!("starting the {} server", kind.name()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("child stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await;
        let addr = match line {
            Ok(Ok(Ok(line))) => line
                .trim()
                .strip_prefix("ready ")
                .and_then(|a| a.parse::<SocketAddr>().ok()),
            _ => None,
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "the {} server did not start: {}",
                kind.name(),
                crate::tail(log, 5)
            );
        };
        Ok(Self { child, addr, pid })
    }

    /// Closes its stdin (it then exits) and waits, killing it after 10 s.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let mut child = self.child;
        let _ = tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
    }
}

/// The child: `paygate-bench __serve <kind>`.
pub fn serve_main(kind: &str) -> anyhow::Result<()> {
    let kind = Kind::parse(kind)?;
    // As many workers as CPUs this process may use (one when pinned), as paygate's own runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = tokio_util::sync::CancellationToken::new();
        let server = match kind {
            Kind::Emulator => {
                drop(listener);
                let running =
                    vipps_emulator::Emulator::new(vipps_emulator::EmulatorConfig::default())
                        .start(addr)
                        .await?;
                tokio::spawn(async move {
                    std::future::pending::<()>().await;
                    drop(running);
                })
            }
            Kind::Verify | Kind::SqliteFloor | Kind::PostgresFloor => {
                let secret = std::env::var(ENV_SECRET).context("BENCH_WEBHOOK_SECRET")?;
                let store = match kind {
                    Kind::SqliteFloor => Some(sqlite_writer(&std::env::var(ENV_DB)?)?),
                    Kind::PostgresFloor => Some(postgres_writer(&std::env::var(ENV_DB)?).await?),
                    _ => None,
                };
                let state = Webhooks {
                    secret: secret.into(),
                    host: format!("127.0.0.1:{}", addr.port()).into(),
                    store,
                    accepted: Arc::new(AtomicU64::new(0)),
                };
                let router = Router::new()
                    .route(PATH, post(receive))
                    .route("/metrics", get(metrics))
                    .with_state(state);
                let signal = stop.clone();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(signal.cancelled_owned())
                        .await;
                })
            }
            Kind::Bare => {
                let events: u64 = std::env::var(ENV_BARE_EVENTS)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let bare = Bare {
                    events: Arc::new(bare_events(events)),
                };
                let signal = stop.clone();
                tokio::spawn(async move {
                    let _ = tonic::transport::Server::builder()
                        .add_service(proto::payment_service_server::PaymentServiceServer::new(
                            bare,
                        ))
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            signal.cancelled_owned(),
                        )
                        .await;
                })
            }
        };
        println!("ready {addr}");
        // Serve until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
        })
        .await;
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        anyhow::Ok(())
    })
}

type Job = (String, oneshot::Sender<bool>);

#[derive(Clone)]
struct Webhooks {
    secret: Arc<str>,
    host: Arc<str>,
    store: Option<mpsc::Sender<Job>>,
    accepted: Arc<AtomicU64>,
}

async fn metrics(State(state): State<Webhooks>) -> String {
    format!(
        "# TYPE bench_webhooks_accepted_total counter\nbench_webhooks_accepted_total {}\n",
        state.accepted.load(Ordering::Relaxed)
    )
}

async fn receive(State(state): State<Webhooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(date), Some(hash), Some(authorization)) = (
        header("x-ms-date"),
        header("x-ms-content-sha256"),
        header("authorization"),
    ) else {
        return StatusCode::UNAUTHORIZED;
    };
    let fresh = chrono::DateTime::parse_from_rfc2822(date).is_ok_and(|d| {
        (chrono::Utc::now() - d.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            <= MAX_SKEW_SECS
    });
    if !fresh
        || vipps_signature::verify(
            &state.secret,
            PATH,
            &state.host,
            date,
            hash,
            authorization,
            &body,
        )
        .is_err()
    {
        return StatusCode::UNAUTHORIZED;
    }
    if let Some(store) = &state.store {
        let Ok(text) = String::from_utf8(body.to_vec()) else {
            return StatusCode::BAD_REQUEST;
        };
        let (reply, answer) = oneshot::channel();
        if store.send((text, reply)).await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if !matches!(answer.await, Ok(true)) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    state.accepted.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// Takes the first job and whatever else is queued (up to MAX_BATCH).
fn drain(first: Job, queue: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// The SQLite floor's writer: one OS thread, one rusqlite connection, one transaction per batch.
fn sqlite_writer(path: &str) -> anyhow::Result<mpsc::Sender<Job>> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    anyhow::ensure!(
        synchronous == 2,
        "PRAGMA synchronous is {synchronous}, not FULL"
    );
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS raw_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            body TEXT NOT NULL,
            received_ms INTEGER NOT NULL)",
    )?;
    let (jobs, mut queue) = mpsc::channel::<Job>(8192);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            let mut conn = conn;
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = queue.blocking_recv() {
                drain(first, &mut queue, &mut batch);
                let ok = commit_sqlite(&mut conn, &batch).is_ok();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(ok);
                }
            }
        })?;
    Ok(jobs)
}

fn commit_sqlite(conn: &mut rusqlite::Connection, batch: &[Job]) -> rusqlite::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO raw_events (body, received_ms) VALUES (?1, ?2)")?;
        for (body, _) in batch {
            insert.execute(rusqlite::params![body, now])?;
        }
    }
    tx.commit()
}

/// The PostgreSQL floor's writer: one connection, one multi-row INSERT per batch.
async fn postgres_writer(url: &str) -> anyhow::Result<mpsc::Sender<Job>> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS raw_events (
            seq BIGSERIAL PRIMARY KEY,
            body TEXT NOT NULL,
            received_ms BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let (jobs, mut queue) = mpsc::channel::<Job>(8192);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.recv().await {
            drain(first, &mut queue, &mut batch);
            let bodies: Vec<&str> = batch.iter().map(|(b, _)| b.as_str()).collect();
            let ok = sqlx::query(
                "INSERT INTO raw_events (body, received_ms) \
                 SELECT b, $2 FROM UNNEST($1::text[]) AS b",
            )
            .bind(&bodies)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut conn)
            .await
            .is_ok();
            drop(bodies);
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(ok);
            }
        }
    });
    Ok(jobs)
}

/// The bare stream server.
#[derive(Clone)]
struct Bare {
    events: Arc<Vec<proto::StreamPaymentEventsResponse>>,
}

/// What paygate streams for a CREATED webhook of a payment it does not know (no snapshot).
fn bare_events(n: u64) -> Vec<proto::StreamPaymentEventsResponse> {
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| proto::StreamPaymentEventsResponse {
            kind: Some(proto::stream_payment_events_response::Kind::Event(
                proto::PaymentEvent {
                    sequence: i + 1,
                    reference: format!("cu-00000000-{i}"),
                    psp_reference: format!("psp-{i}"),
                    name: proto::PaymentEventName::Created.into(),
                    amount: Some(proto::Money {
                        currency: "NOK".into(),
                        value: 1000,
                    }),
                    timestamp: Some(prost_types::Timestamp {
                        seconds: now.timestamp(),
                        nanos: 0,
                    }),
                    idempotency_key: String::new(),
                    success: true,
                    payment: None,
                    source: proto::EventSource::Webhook.into(),
                },
            )),
        })
        .collect()
}

type Events =
    Pin<Box<dyn Stream<Item = Result<proto::StreamPaymentEventsResponse, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the bare baseline serves only StreamPaymentEvents",
    ))
}

#[tonic::async_trait]
impl PaymentService for Bare {
    async fn create_payment_request(
        &self,
        _: Request<proto::CreatePaymentRequestRequest>,
    ) -> Result<Response<proto::CreatePaymentRequestResponse>, Status> {
        unimplemented()
    }

    async fn get_payment(
        &self,
        _: Request<proto::GetPaymentRequest>,
    ) -> Result<Response<proto::GetPaymentResponse>, Status> {
        unimplemented()
    }

    async fn capture_payment(
        &self,
        _: Request<proto::CapturePaymentRequest>,
    ) -> Result<Response<proto::CapturePaymentResponse>, Status> {
        unimplemented()
    }

    async fn cancel_payment(
        &self,
        _: Request<proto::CancelPaymentRequest>,
    ) -> Result<Response<proto::CancelPaymentResponse>, Status> {
        unimplemented()
    }

    async fn refund_payment(
        &self,
        _: Request<proto::RefundPaymentRequest>,
    ) -> Result<Response<proto::RefundPaymentResponse>, Status> {
        unimplemented()
    }

    async fn list_payment_events(
        &self,
        _: Request<proto::ListPaymentEventsRequest>,
    ) -> Result<Response<proto::ListPaymentEventsResponse>, Status> {
        unimplemented()
    }

    type StreamPaymentEventsStream = Events;

    async fn stream_payment_events(
        &self,
        request: Request<proto::StreamPaymentEventsRequest>,
    ) -> Result<Response<Events>, Status> {
        if request.get_ref().after_sequence.is_none() {
            return Ok(Response::new(Box::pin(futures::stream::pending())));
        }
        let events = self.events.clone();
        let replay = futures::stream::iter(0..events.len()).map(move |i| Ok(events[i].clone()));
        Ok(Response::new(Box::pin(futures::StreamExt::chain(
            replay,
            futures::stream::pending(),
        ))))
    }
}
