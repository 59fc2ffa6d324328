//! Faults from outside paygate: Vipps behind a TCP fault proxy (resets, timeouts, slow and cut
//! answers, malformed JSON), webhook deliveries duplicated, reordered and delayed, and the
//! database gone (PostgreSQL behind the proxy) or locked (SQLite). Each test checks the caller's
//! status, that every money-moving effect happened once at the emulator and every event is
//! once in paygate's log, and that paygate recovers without a restart.

use std::time::Duration;

use paygate::grpc::proto::{self, PaymentEventName, PaymentState};
use reqwest::StatusCode;
use tonic::Code;
use vipps_emulator::{RunningEmulator, WebhookFaults};

use crate::{
    helpers::proxy::{Mode, Proxy},
    helpers::*,
};

/// paygate talking to the test's own emulator through a fault proxy.
struct Remote {
    app: TestApp,
    proxy: Proxy,
    _emulator: RunningEmulator,
}

async fn remote() -> Remote {
    let emulator = start_emulator().await;
    let proxy = Proxy::start(emulator.addr()).await;
    let app = spawn_remote(&emulator, &format!("http://{}", proxy.addr()), &[]).await;
    Remote {
        app,
        proxy,
        _emulator: emulator,
    }
}

fn with_reference(value: i64, reference: &str) -> proto::CreatePaymentRequestRequest {
    let mut req = push_request(value);
    req.reference = reference.into();
    req
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

#[tokio::test]
async fn connection_resets_are_unavailable_and_the_retry_moves_money_once() {
    let Remote {
        mut app,
        proxy,
        _emulator,
    } = remote().await;
    let reference = app.authorized(20000).await;
    let captures_before = app.requests("capture");

    // Every connection to Vipps is reset, open ones included.
    proxy.set(Mode::Refuse);
    let err = app
        .capture(&reference, Some(5000), "cap-reset")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let created = unique("reset-create");
    let err = app
        .create(with_reference(10000, &created))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        app.requests("capture"),
        captures_before,
        "nothing got through"
    );
    assert!(app.emulator.payment_view(&created).is_none());
    let refused = proxy.stats().refused;
    assert!(refused >= 2, "{:?}", proxy.stats());

    // Back: the same keys complete, once each.
    proxy.set(Mode::Pass);
    let p = app
        .capture(&reference, Some(5000), "cap-reset")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 5000);
    let p = app.create(with_reference(10000, &created)).await.unwrap();
    assert_eq!(p.reference, created);
    assert_eq!(app.effects(&reference, "capture").len(), 1);
    assert_eq!(app.effects(&created, "create").len(), 1);

    // The answer is lost after Vipps acted: the connection closes before a byte of it.
    proxy.set(Mode::Truncate(0));
    let err = app
        .capture(&reference, Some(3000), "cap-lost")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        app.effects(&reference, "capture").len(),
        2,
        "the capture happened upstream"
    );
    proxy.set(Mode::Pass);
    let p = app
        .capture(&reference, Some(3000), "cap-lost")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 8000);
    assert_eq!(app.effects(&reference, "capture").len(), 2, "replayed");
    app.assert_effects_once(&reference);
    app.assert_effects_once(&created);
    let events = app.assert_events_once(&reference).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name() == PaymentEventName::Captured)
            .count(),
        2
    );
    app.assert_events_once(&created).await;
    eprintln!("faults injected (resets): {:?}", proxy.stats());
    app.stop().await;
}

#[tokio::test]
async fn blackholed_vipps_times_out_to_unavailable_and_recovers() {
    let Remote {
        mut app,
        proxy,
        _emulator,
    } = remote().await;
    let reference = app.authorized(20000).await;
    let waiting = app.create_push(10000).await.reference;

    proxy.set(Mode::Blackhole);
    let err = app
        .capture(&reference, Some(2500), "cap-hole")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // GetPayment still answers, from the store, when the refresh times out.
    let p = app.try_get(&waiting).await.unwrap();
    assert_eq!(p.state(), PaymentState::Created);
    assert!(app.effects(&reference, "capture").is_empty());
    assert!(proxy.stats().blackholed_chunks > 0, "{:?}", proxy.stats());

    proxy.set(Mode::Pass);
    let p = app
        .capture(&reference, Some(2500), "cap-hole")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 2500);
    app.approve(&waiting).await;
    assert_eq!(
        app.try_get(&waiting).await.unwrap().state(),
        PaymentState::Authorized
    );
    assert_eq!(app.effects(&reference, "capture").len(), 1);
    app.assert_events_once(&reference).await;
    app.assert_events_once(&waiting).await;
    eprintln!("faults injected (blackhole): {:?}", proxy.stats());
    app.stop().await;
}

#[tokio::test]
async fn slow_answers_below_the_timeout_succeed() {
    let Remote {
        mut app,
        proxy,
        _emulator,
    } = remote().await;
    // Each chunk of every answer is held 150 ms; one attempt may take 700 ms.
    proxy.set(Mode::Delay(Duration::from_millis(150)));
    let reference = app.authorized(20000).await;
    app.capture(&reference, Some(5000), "slow-cap")
        .await
        .unwrap();
    let p = app
        .refund(&reference, Some(1000), "slow-refund")
        .await
        .unwrap();
    assert_eq!(totals(&p), (20000, 5000, 1000, 0));
    assert!(proxy.stats().delayed_chunks >= 4, "{:?}", proxy.stats());
    app.assert_effects_once(&reference);
    assert_eq!(app.events(&reference).await.len(), 4);
    app.assert_events_once(&reference).await;
    eprintln!("faults injected (delay): {:?}", proxy.stats());
    app.stop().await;
}

#[tokio::test]
async fn truncated_capture_answer_is_unavailable_and_the_retry_captures_once() {
    let Remote {
        mut app,
        proxy,
        _emulator,
    } = remote().await;
    let reference = app.authorized(20000).await;
    // Status line and headers arrive whole; the JSON body is cut after 10 bytes.
    proxy.set(Mode::TruncateBody(10));
    let err = app
        .capture(&reference, Some(7000), "cap-cut")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        app.effects(&reference, "capture").len(),
        1,
        "the capture happened upstream"
    );
    assert!(proxy.stats().truncated >= 1, "{:?}", proxy.stats());
    proxy.set(Mode::Pass);
    let p = app
        .capture(&reference, Some(7000), "cap-cut")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 7000);
    assert_eq!(app.effects(&reference, "capture").len(), 1, "replayed");
    let events = app.assert_events_once(&reference).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name() == PaymentEventName::Captured)
            .count(),
        1
    );
    eprintln!("faults injected (truncate): {:?}", proxy.stats());
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_from_vipps() {
    let Remote {
        mut app,
        proxy: _proxy,
        _emulator,
    } = remote().await;
    let reference = app.authorized(40000).await;

    // A 200 whose body is not JSON, without (a) and with (b) the effect applied, and an empty
    // one (c): the outcome is unknown, so UNAVAILABLE; the retry completes exactly once.
    for (key, fault) in [
        (
            "json-a",
            serde_json::json!({"match": "capture", "body": "{\"amount\":{\"curr"}),
        ),
        (
            "json-b",
            serde_json::json!({"match": "capture", "body": "<html>oops</html>", "afterEffect": true}),
        ),
        (
            "json-c",
            serde_json::json!({"match": "capture", "body": "", "afterEffect": true}),
        ),
    ] {
        app.fault(fault);
        let err = app.capture(&reference, Some(1000), key).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{key}: {err:?}");
        let p = app.capture(&reference, Some(1000), key).await.unwrap();
        assert!(totals(&p).1 >= 1000);
    }
    assert_eq!(app.effects(&reference, "capture").len(), 3);

    // Well-formed JSON that is not a known answer (an unknown state), after the effect.
    let answer = serde_json::json!({
        "amount": {"currency": "NOK", "value": 40000},
        "state": "EXPLODED",
        "aggregate": {
            "authorizedAmount": {"currency": "NOK", "value": 40000},
            "cancelledAmount": {"currency": "NOK", "value": 0},
            "capturedAmount": {"currency": "NOK", "value": 4000},
            "refundedAmount": {"currency": "NOK", "value": 0}
        },
        "pspReference": "psp-weird",
        "reference": reference,
    });
    app.fault(serde_json::json!({
        "match": "capture", "body": answer.to_string(), "afterEffect": true
    }));
    let err = app
        .capture(&reference, Some(1000), "json-d")
        .await
        .unwrap_err();
    // An unexpected-but-parsable answer: the outcome is unknown, the operation stays pending,
    // and a retry with the same key completes it.
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let p = app.capture(&reference, Some(1000), "json-d").await.unwrap();
    assert_eq!(totals(&p).1, 4000);
    assert_eq!(app.effects(&reference, "capture").len(), 4);

    // A garbage answer to the refresh: GetPayment answers from the store.
    let waiting = app.create_push(10000).await.reference;
    app.fault(
        serde_json::json!({"match": waiting.clone(), "method": "GET", "count": 5, "body": "[1,2"}),
    );
    assert_eq!(
        app.try_get(&waiting).await.unwrap().state(),
        PaymentState::Created
    );
    app.emulator.clear_faults();

    app.assert_effects_once(&reference);
    let events = app.assert_events_once(&reference).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name() == PaymentEventName::Captured)
            .count(),
        4
    );
    app.stop().await;
}

fn delivered(app: &TestApp) -> u64 {
    app.emulator.stats()["webhooks"]["delivered"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn duplicated_reordered_and_delayed_webhooks_are_each_recorded_once() {
    // Emulator mode: paygate registers its webhook, the emulator signs and delivers.
    let mut app = spawn_app().await;
    let probe = &app;
    eventually("the webhook is registered", || probe.ready()).await;
    let mut stream = app.subscribe(Some(0), &[]).await;

    // A: every delivery duplicated and delayed.
    app.emulator.set_webhook_faults(WebhookFaults {
        duplicate: 100,
        delay_ms: Some(200),
        count: Some(100),
        ..WebhookFaults::default()
    });
    let a = app.create_push(20000).await.reference;
    app.approve(&a).await;
    assert_eq!(
        app.try_get(&a).await.unwrap().state(),
        PaymentState::Authorized
    );
    app.capture(&a, Some(3000), "a-c1").await.unwrap();
    app.capture(&a, Some(2000), "a-c2").await.unwrap();
    app.refund(&a, Some(1000), "a-r1").await.unwrap();
    let probe = &app;
    eventually("A's five webhooks delivered twice", || async {
        let w = probe.emulator.stats()["webhooks"].clone();
        w["delivered"].as_u64().unwrap_or(0) >= 5 && w["duplicated"].as_u64().unwrap_or(0) >= 5
    })
    .await;
    app.emulator.clear_webhook_faults();
    let events = app.assert_events_once(&a).await;
    assert_eq!(events.len(), 5, "{events:#?}");
    assert_eq!(
        totals(&app.try_get(&a).await.unwrap()),
        (20000, 5000, 1000, 0)
    );

    // B: the AUTHORIZED delivery is held back until after the CAPTURED one.
    let before = delivered(&app);
    let b = app.create_push(15000).await.reference;
    let probe = &app;
    eventually("B's CREATED delivered", || async {
        delivered(probe) > before
    })
    .await;
    app.emulator.set_webhook_faults(WebhookFaults {
        reorder: 1,
        ..WebhookFaults::default()
    });
    app.approve(&b).await;
    app.capture(&b, None, "b-cap").await.unwrap();
    let probe = &app;
    eventually("B's three webhooks delivered", || async {
        delivered(probe) >= before + 3
    })
    .await;
    assert_eq!(app.emulator.stats()["webhooks"]["reordered"], 1);
    let p = app.try_get(&b).await.unwrap();
    assert_eq!(p.state(), PaymentState::Authorized, "never backwards");
    assert_eq!(totals(&p), (15000, 15000, 0, 0), "the capture is kept");
    let events = app.assert_events_once(&b).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    for reference in [&a, &b] {
        app.assert_effects_once(reference);
    }

    // The subscriber saw each of the 8 events once, in strictly increasing sequence order.
    let mut seen = Vec::new();
    for _ in 0..8 {
        seen.push(next_event(&mut stream).await);
    }
    assert!(
        seen.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "{seen:#?}"
    );
    assert_each_event_once(
        &seen
            .iter()
            .filter(|e| e.reference == a)
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_each_event_once(
        &seen
            .iter()
            .filter(|e| e.reference == b)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let stats = app.emulator.stats()["webhooks"].clone();
    eprintln!("faults injected (webhook delivery): {stats}");
    app.stop().await;
}

#[tokio::test]
async fn a_late_authorized_webhook_after_captured_keeps_the_capture() {
    let mut app = spawn_app_with(&[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await;
    let reference = app.create_push(20000).await.reference;
    // paygate has not heard of the authorization when the capture's webhook overtakes it.
    app.approve(&reference).await;
    let captured = webhook_body(&reference, "CAPTURED", "psp-1", 20000, Some("vipps-cap"));
    let authorized = webhook_body(&reference, "AUTHORIZED", "psp-1", 20000, None);
    let expired = webhook_body(&reference, "EXPIRED", "psp-1", 20000, None);
    for body in [&captured, &authorized, &captured, &expired, &authorized] {
        assert_eq!(app.post_webhook(body.as_bytes()).await, StatusCode::OK);
    }
    let p = app.try_get(&reference).await.unwrap();
    assert_eq!(p.state(), PaymentState::Authorized);
    assert_eq!(totals(&p), (20000, 20000, 0, 0));
    let events = app.assert_events_once(&reference).await;
    let names: Vec<_> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            PaymentEventName::Created,
            PaymentEventName::Captured,
            PaymentEventName::Authorized,
            PaymentEventName::Expired
        ]
    );
    // The snapshot stored with each event never moves backwards.
    let snapshots: Vec<_> = events.iter().filter_map(|e| e.payment.clone()).collect();
    assert!(snapshots
        .windows(2)
        .all(|w| totals(&w[0]).1 <= totals(&w[1]).1));
    app.stop().await;
}

/// The webhook paygate receives for a payment it does not know.
fn stray_webhook(reference: &str) -> Vec<u8> {
    webhook_body(reference, "CAPTURED", "psp-stray", 1000, Some("stray-key")).into_bytes()
}

#[tokio::test]
async fn postgres_outage_is_unavailable_then_recovers_without_restart() {
    let Some(admin) = postgres_admin() else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let database = fresh_postgres(&admin).await;
    let proxy = Proxy::start(socket_of(&database)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_on(
        dir,
        via(&database, proxy.addr()),
        &[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    )
    .await;
    let reference = app.authorized(30000).await;
    let created = unique("pg-outage");
    let stray = unique("pg-stray");

    // ~2 s without a database: every connection reset, new ones too.
    proxy.set(Mode::Refuse);
    let outage = tokio::time::Instant::now();
    let mut calls = 0;
    while outage.elapsed() < Duration::from_secs(2) || calls < 3 {
        calls += 1;
        let err = app
            .create(with_reference(10000, &created))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "create: {err:?}");
        let err = app
            .capture(&reference, Some(5000), "pg-cap")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "capture: {err:?}");
        let err = app.try_get(&reference).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "get: {err:?}");
        assert_eq!(
            app.post_webhook(&stray_webhook(&stray)).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "never 2xx for a webhook that was not stored"
        );
        assert!(!app.ready().await, "not ready without a database");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Journal first: nothing reached Vipps while the journal could not be written.
    assert!(app.emulator.payment_view(&created).is_none());
    assert!(app.effects(&reference, "capture").is_empty());
    let refused = proxy.stats();

    proxy.set(Mode::Pass);
    let probe = &app;
    eventually("ready again", || probe.ready()).await;
    app.create(with_reference(10000, &created)).await.unwrap();
    let p = app.capture(&reference, Some(5000), "pg-cap").await.unwrap();
    assert_eq!(totals(&p).1, 5000);
    assert_eq!(
        app.post_webhook(&stray_webhook(&stray)).await,
        StatusCode::OK
    );

    // The database goes away while Vipps is capturing: the answer cannot be committed.
    app.fault(serde_json::json!({"match": "capture", "delayMs": 1500}));
    let before = app.requests("capture");
    let mut client = app.client.clone();
    let (r, key) = (reference.clone(), "pg-cap-mid");
    let call = tokio::spawn(async move {
        client
            .capture_payment(proto::CapturePaymentRequest {
                reference: r,
                amount: Some(nok(4000)),
                idempotency_key: key.into(),
            })
            .await
    });
    let probe = &app;
    eventually("the capture reached Vipps", || async {
        probe.requests("capture") > before
    })
    .await;
    proxy.set(Mode::Refuse);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        app.effects(&reference, "capture").len(),
        2,
        "Vipps captured"
    );
    proxy.set(Mode::Pass);
    // The send's lease outlives the outage; the caller retries until it is given back or expires.
    let client = app.client.clone();
    let p = retried(|| {
        let (mut client, reference) = (client.clone(), reference.clone());
        async move {
            client
                .capture_payment(proto::CapturePaymentRequest {
                    reference,
                    amount: Some(nok(4000)),
                    idempotency_key: key.into(),
                })
                .await
        }
    })
    .await
    .unwrap()
    .into_inner()
    .payment
    .unwrap();
    assert_eq!(totals(&p).1, 9000);
    assert_eq!(app.effects(&reference, "capture").len(), 2, "replayed once");

    app.assert_effects_once(&reference);
    app.assert_effects_once(&created);
    assert_eq!(app.effects(&created, "create").len(), 1);
    let events = app.assert_events_once(&reference).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name() == PaymentEventName::Captured)
            .count(),
        2
    );
    assert_eq!(app.assert_events_once(&created).await.len(), 1);
    assert_eq!(app.assert_events_once(&stray).await.len(), 1);
    eprintln!(
        "faults injected (postgres): {calls} rounds of 4 calls during the outage; proxy {refused:?}, \
         then {:?}",
        proxy.stats()
    );
    app.stop().await;
}

/// A SQLite database for this test whatever TEST_DATABASE_URL says.
async fn sqlite_app() -> (TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("paygate.db").display()
    );
    let app = spawn_on(
        dir,
        url.clone(),
        &[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    )
    .await;
    (app, url)
}

/// Holds `BEGIN EXCLUSIVE` on the file from another connection until dropped (rolled back).
async fn lock_sqlite(url: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn unlock_sqlite(mut conn: sqlx::SqliteConnection) {
    use sqlx::Connection;
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_locked_by_another_process() {
    let (mut app, url) = sqlite_app().await;
    let reference = app.authorized(30000).await;

    // Held for 2 s, well within paygate's 10 s busy timeout: paygate's write transactions take
    // the write lock first (store::begin_write), so they wait for the lock and then succeed.
    let lock = lock_sqlite(&url).await;
    let mut client = app.client.clone();
    let r = reference.clone();
    let capture = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let answer = client
            .capture_payment(proto::CapturePaymentRequest {
                reference: r,
                amount: Some(nok(5000)),
                idempotency_key: "locked-cap".into(),
            })
            .await;
        (answer, started.elapsed())
    });
    let stray = unique("sqlite-stray");
    // Posted concurrently: it must wait for the lock too (awaiting it here would hold the
    // lock's release hostage until the busy timeout).
    let webhook = {
        let request = app.webhook_request(stray_webhook(&stray));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    };
    // Reads go on (WAL): readers do not wait for the writer.
    assert_eq!(
        app.try_get(&reference).await.unwrap().state(),
        PaymentState::Authorized
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    unlock_sqlite(lock).await;
    let (captured, took) = capture.await.unwrap();
    let webhook = webhook.await.unwrap();
    eprintln!("SQLite locked 2 s: capture -> {captured:?} after {took:?}; webhook -> {webhook}");
    let captured = captured.expect("the capture waited for the lock");
    assert_eq!(totals(captured.get_ref().payment.as_ref().unwrap()).1, 5000);
    assert_eq!(webhook, StatusCode::OK, "the webhook waited for the lock");
    // Afterwards (retrying what failed) everything is there once.
    let p = app
        .capture(&reference, Some(5000), "locked-cap")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 5000);
    assert_eq!(
        app.post_webhook(&stray_webhook(&stray)).await,
        StatusCode::OK
    );
    assert_eq!(app.effects(&reference, "capture").len(), 1);
    app.assert_events_once(&reference).await;
    assert_eq!(app.assert_events_once(&stray).await.len(), 1);
    app.stop().await;
}
