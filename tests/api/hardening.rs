//! Hostile clients and a stuck database: one bad change cannot fail its neighbours, a write held
//! up by a lock fails within bounds and readiness says so, metrics labels stay bounded, the HTTP
//! sidecar cuts off slow and surplus clients, and event streams are capped and freed when their
//! peer vanishes.

use std::{net::SocketAddr, time::Duration};

use paygate::grpc::proto::{self, payment_service_client::PaymentServiceClient};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{transport::Channel, Code};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::helpers::{
    proxy::{Mode, Proxy},
    *,
};

/// The advisory lock every PostgreSQL write transaction of paygate takes ("pg" "lg").
const EVENT_LOG_LOCK: i64 = 0x7067_6c67;

/// A bound against hanging, never a timing assertion.
const BOUND: Duration = Duration::from_secs(20);

/// Holds up every write paygate makes: each of its write transactions takes this lock first
/// (`store::begin_write`). SQLite: `BEGIN IMMEDIATE` on another connection; PostgreSQL: the
/// event-log advisory lock (0x7067_6c67, see `src/store/mod.rs`) in an open transaction.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn hold(database_url: &str) -> Self {
        use sqlx::Connection;
        if database_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            WriteLock::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
            let lock = format!("BEGIN; SELECT pg_advisory_xact_lock({EVENT_LOG_LOCK})");
            sqlx::raw_sql(&lock).execute(&mut conn).await.unwrap();
            WriteLock::Postgres(conn)
        }
    }

    async fn release(self) {
        use sqlx::Connection;
        match self {
            WriteLock::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            WriteLock::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

fn authorized(reference: &str, value: i64) -> String {
    webhook_body(
        reference,
        "AUTHORIZED",
        &format!("psp-{reference}"),
        value,
        None,
    )
}

async fn has_authorized(app: &mut TestApp, reference: &str) -> bool {
    app.assert_events_once(reference)
        .await
        .iter()
        .any(|e| e.name() == proto::PaymentEventName::Authorized)
}

#[tokio::test]
async fn a_write_held_up_by_a_lock_fails_within_the_statement_timeout() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_DB_STATEMENT_TIMEOUT_MS", "1000"),
    ])
    .await;
    let reference = app.create_push(10000).await.reference;
    let body = authorized(&reference, 10000);
    let lock = WriteLock::hold(&app.database_url).await;
    // Without a bound the write would wait for the lock (SQLite: a fixed 10 s; PostgreSQL:
    // for ever); this bound lies between the configured timeout and those.
    let status = tokio::time::timeout(Duration::from_secs(5), app.post_webhook(&body))
        .await
        .expect("answered while the lock is still held");
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    lock.release().await;
    assert_eq!(app.post_webhook(&body).await, reqwest::StatusCode::OK);
    assert!(has_authorized(&mut app, &reference).await);
    app.stop().await;
}

async fn grpc_serving(addr: SocketAddr) -> bool {
    let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
}

#[tokio::test]
async fn readiness_fails_while_the_writer_is_stuck_and_recovers() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_WRITER_STALL_MS", "200"),
        ("PAYGATE_DB_STATEMENT_TIMEOUT_MS", "30000"),
    ])
    .await;
    let reference = app.create_push(10000).await.reference;
    eventually("ready at first", || app.ready()).await;
    let body = authorized(&reference, 10000);
    let lock = WriteLock::hold(&app.database_url).await;
    let (status, ()) = tokio::join!(app.post_webhook(&body), async {
        eventually("/readyz fails while the writer is stuck", || async {
            !app.ready().await
        })
        .await;
        eventually("gRPC health is NOT_SERVING", || async {
            !grpc_serving(app.grpc_addr).await
        })
        .await;
        lock.release().await;
        eventually("/readyz recovers", || app.ready()).await;
        eventually("gRPC health recovers", || grpc_serving(app.grpc_addr)).await;
    });
    assert_eq!(status, reqwest::StatusCode::OK, "the webhook committed");
    assert!(has_authorized(&mut app, &reference).await);
    app.stop().await;
}

/// Makes the database refuse every event of `reference` (a trigger that raises).
async fn refuse_events_of(database_url: &str, reference: &str) {
    use sqlx::Connection;
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        let trigger = format!(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.reference = '{reference}' \
             BEGIN SELECT RAISE(ABORT, 'poison'); END"
        );
        sqlx::raw_sql(&trigger).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        let function = format!(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.reference = '{reference}' THEN RAISE EXCEPTION 'poison'; END IF; \
             RETURN NEW; END $$"
        );
        sqlx::raw_sql(&function).execute(&mut conn).await.unwrap();
        sqlx::raw_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW \
             EXECUTE FUNCTION refuse_poison()",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_poison_change_fails_alone_and_its_batch_neighbours_commit() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_WRITER_STALL_MS", "50"),
        ("PAYGATE_DB_STATEMENT_TIMEOUT_MS", "30000"),
    ])
    .await;
    let mut good = Vec::new();
    for _ in 0..4 {
        good.push(app.create_push(10000).await.reference);
    }
    let poison = format!("poison-{}", uuid::Uuid::new_v4().simple());
    refuse_events_of(&app.database_url, &poison).await;

    // The first webhook takes the writer, which waits for the lock (readiness says when); the
    // poison and the others queue behind it meanwhile and become the next batch, together.
    let lock = WriteLock::hold(&app.database_url).await;
    let first = authorized(&good[0], 10000);
    let mut rest: Vec<String> = good[1..].iter().map(|r| authorized(r, 10000)).collect();
    rest.insert(1, authorized(&poison, 10000));
    let (first_status, statuses) = tokio::join!(app.post_webhook(&first), async {
        eventually("the writer holds the first webhook", || async {
            !app.ready().await
        })
        .await;
        let posts = futures::future::join_all(rest.iter().map(|body| app.post_webhook(body)));
        let release = async {
            // Lets the concurrent posts reach the writer's queue; what is asserted does not
            // depend on it, only whether they share one batch.
            tokio::time::sleep(Duration::from_millis(500)).await;
            lock.release().await;
        };
        tokio::join!(posts, release).0
    });

    assert_eq!(first_status, reqwest::StatusCode::OK);
    assert_eq!(
        statuses[1],
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "the poison"
    );
    for (i, status) in statuses.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(*status, reqwest::StatusCode::OK, "good webhook {i}");
    }
    for reference in &good {
        assert!(has_authorized(&mut app, reference).await, "{reference}");
    }
    assert!(app.events(&poison).await.is_empty());
    let refs: Vec<&str> = good.iter().map(String::as_str).collect();
    let mut stream = app.subscribe(Some(0), &refs).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < good.len() {
        let event = next_event(&mut stream).await;
        if event.name() == proto::PaymentEventName::Authorized {
            seen.insert(event.reference);
        }
    }
    app.stop().await;
}

/// One unary call to any path, with an empty body and no token.
async fn call_path(channel: Channel, path: String) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    match grpc
        .unary(tonic::Request::new(Vec::new()), path, RawCodec)
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn unknown_grpc_paths_do_not_become_metrics_labels() {
    let app = spawn_app_with(&[("PAYGATE_API_TOKENS", "fare:fare-system-token-0123456789")]).await;
    let channel = Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..40 {
        for path in [
            format!("/paygate.v1.Nope{i}/X"),
            format!("/grpc.nope{i}.Y/Z"),
            format!("/paygate.v1.PaymentService/Nope{i}"),
        ] {
            assert_ne!(call_path(channel.clone(), path).await, Code::Ok);
        }
    }
    let served = "/grpc.health.v1.Health/Check".to_owned();
    assert_eq!(call_path(channel, served).await, Code::Ok);
    let text = app.metrics().await;
    assert!(!text.contains("Nope"), "unknown paths became labels");
    assert!(!text.contains("grpc.nope"), "unknown paths became labels");
    assert!(text.contains(r#"method="other""#));
    assert!(text.contains(r#"method="/grpc.health.v1.Health/Check""#));
    app.stop().await;
}

/// Histogram samples queue inside the exporter until something folds them in: without a
/// scraper, the upkeep thread does (every 5 s). One per process, however many apps start.
#[tokio::test]
async fn histograms_are_drained_by_one_upkeep_thread_without_a_scraper() {
    let app = spawn_app().await;
    let _second = spawn_app().await;
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("this test reads Linux's /proc")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    let upkeep = threads.iter().filter(|n| *n == "metrics-upkeep").count();
    assert_eq!(upkeep, 1, "threads: {threads:?}");
    app.stop().await;
}

fn http_addr(app: &TestApp) -> SocketAddr {
    app.http_url.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the server closes the connection (EOF or reset); what it sent before.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("the server closes the connection within the bound")
        {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /healthz` on an open connection (keep-alive); true when answered 200.
async fn healthz_on(stream: &mut TcpStream) -> bool {
    let request = "GET /healthz HTTP/1.1\r\nHost: paygate\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        _ => false,
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_request_line_is_disconnected() {
    let app = spawn_app_with(&[("PAYGATE_HTTP_HEADER_TIMEOUT_MS", "300")]).await;
    let mut slow = TcpStream::connect(http_addr(&app)).await.unwrap();
    slow.write_all(b"POST /webhooks/vi").await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains(" 200 "), "{answer}");
    // A silent client too.
    let mut silent = TcpStream::connect(http_addr(&app)).await.unwrap();
    read_until_closed(&mut silent).await;
    app.stop().await;
}

#[tokio::test]
async fn over_the_connection_cap_a_connection_is_closed_until_one_closes() {
    let app = spawn_app_with(&[
        ("PAYGATE_HTTP_MAX_CONNECTIONS", "2"),
        ("PAYGATE_HTTP_HEADER_TIMEOUT_MS", "30000"),
    ])
    .await;
    let addr = http_addr(&app);
    // Accepted in the order they connect: these two take both slots.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: paygate\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third).await;
    assert!(answer.is_empty(), "over the cap, yet served: {answer}");
    assert!(healthz_on(&mut first).await, "the open ones are served");
    drop(second);
    eventually("a new connection is served once one closed", || async {
        match TcpStream::connect(addr).await {
            Ok(mut fresh) => healthz_on(&mut fresh).await,
            Err(_) => false,
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_past_its_timeout_is_503_and_its_retry_is_recorded_once() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_WEBHOOK_TIMEOUT_MS", "300"),
        ("PAYGATE_DB_STATEMENT_TIMEOUT_MS", "30000"),
    ])
    .await;
    let reference = app.create_push(10000).await.reference;
    let body = authorized(&reference, 10000);
    let lock = WriteLock::hold(&app.database_url).await;
    // The database would make it wait 30 s; this bound lies between that and the deadline.
    let status = tokio::time::timeout(Duration::from_secs(10), app.post_webhook(&body))
        .await
        .expect("answered while the lock is still held");
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    lock.release().await;
    // The first delivery's commit may land after its 503: the retry is then a duplicate.
    eventually("the retry is accepted", || async {
        app.post_webhook(&body).await == reqwest::StatusCode::OK
    })
    .await;
    assert!(has_authorized(&mut app, &reference).await);
    app.stop().await;
}

#[tokio::test]
async fn an_in_flight_webhook_finishes_at_shutdown() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_WRITER_STALL_MS", "50"),
        ("PAYGATE_DB_STATEMENT_TIMEOUT_MS", "30000"),
        ("PAYGATE_SHUTDOWN_GRACE_MS", "20000"),
    ])
    .await;
    let reference = app.create_push(10000).await.reference;
    let body = authorized(&reference, 10000);
    let lock = WriteLock::hold(&app.database_url).await;
    let webhook = {
        let request = app.webhook_request(&body);
        tokio::spawn(async move { request.send().await.map(|r| r.status()) })
    };
    eventually("the writer holds the webhook", || async {
        !app.ready().await
    })
    .await;
    app.signal_stop();
    lock.release().await;
    let status = webhook
        .await
        .unwrap()
        .expect("answered before the sidecar stops");
    assert_eq!(status, reqwest::StatusCode::OK);
    let url = app.database_url.clone();
    let dir = app.stop().await;
    let mut again = spawn_on(dir, url, &[]).await;
    assert!(has_authorized(&mut again, &reference).await);
    again.stop().await;
}

#[tokio::test]
async fn a_stream_over_the_cap_is_refused_and_a_vanished_peer_frees_its_slot() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_MAX_SUBSCRIBERS", "1"),
        ("PAYGATE_GRPC_KEEPALIVE_MS", "300"),
    ])
    .await;
    let proxy = Proxy::start(app.grpc_addr).await;
    let mut far = PaymentServiceClient::connect(format!("http://{}", proxy.addr()))
        .await
        .unwrap();
    let request = || proto::StreamPaymentEventsRequest {
        references: vec![],
        names: vec![],
        after_sequence: None,
    };
    let mut held = far
        .stream_payment_events(request())
        .await
        .unwrap()
        .into_inner();

    let refused = app
        .client
        .stream_payment_events(request())
        .await
        .expect_err("over the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("PAYGATE_MAX_SUBSCRIBERS"),
        "{refused:?}"
    );
    // The stream holding the slot is untouched.
    let reference = app.create_push(10000).await.reference;
    assert_eq!(
        app.post_webhook(authorized(&reference, 10000)).await,
        reqwest::StatusCode::OK
    );
    loop {
        let event = next_event(&mut held).await;
        if event.reference == reference && event.name() == proto::PaymentEventName::Authorized {
            break;
        }
    }

    // The peer vanishes: keepalive pings go unanswered and paygate closes its connection.
    proxy.set(Mode::Blackhole);
    let client = app.client.clone();
    eventually("a new subscriber gets the freed slot", || {
        let mut client = client.clone();
        async move { client.stream_payment_events(request()).await.is_ok() }
    })
    .await;
    drop(held);
    app.stop().await;
}
