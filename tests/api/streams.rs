//! StreamPaymentEvents: replay, live, resume, restart, slow subscribers, heartbeats, replicas.

use std::collections::BTreeSet;

use paygate::grpc::proto::{self, stream_payment_events_response::Kind, PaymentEventName};

use crate::helpers::*;

async fn with_secret() -> TestApp {
    spawn_app_with(&[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await
}

async fn webhook(app: &TestApp, reference: &str, name: &str, psp: &str) {
    let body = webhook_body(reference, name, psp, 1000, Some(psp));
    assert_eq!(app.post_webhook(&body).await, reqwest::StatusCode::OK);
}

#[tokio::test]
async fn resume_with_after_sequence_gets_exactly_the_missed_events() {
    let mut app = with_secret().await;
    let mut stream = app.subscribe(Some(0), &[]).await;
    for i in 0..3 {
        webhook(
            &app,
            &format!("ride-resume-{i:04}"),
            "CREATED",
            &format!("{i}"),
        )
        .await;
    }
    let first: Vec<_> = [next_event(&mut stream).await, next_event(&mut stream).await].into();
    let cursor = first[1].sequence;
    drop(stream);
    for i in 3..6 {
        webhook(
            &app,
            &format!("ride-resume-{i:04}"),
            "CREATED",
            &format!("{i}"),
        )
        .await;
    }
    let mut resumed = app.subscribe(Some(cursor), &[]).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut resumed).await);
    }
    let refs: Vec<_> = got.iter().map(|e| e.reference.clone()).collect();
    assert_eq!(
        refs,
        [
            "ride-resume-0002",
            "ride-resume-0003",
            "ride-resume-0004",
            "ride-resume-0005"
        ]
    );
    assert!(got.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(got[0].sequence > cursor);
    app.stop().await;
}

#[tokio::test]
async fn live_only_and_filters() {
    let mut app = with_secret().await;
    webhook(&app, "ride-before-0001", "CREATED", "1").await;
    // after_sequence absent: live only.
    let mut live = app.subscribe(None, &[]).await;
    let mut only_b = app
        .client
        .stream_payment_events(proto::StreamPaymentEventsRequest {
            references: vec!["ride-filter-b001".into()],
            names: vec![PaymentEventName::Authorized.into()],
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    webhook(&app, "ride-filter-a001", "AUTHORIZED", "2").await;
    webhook(&app, "ride-filter-b001", "CREATED", "3").await;
    webhook(&app, "ride-filter-b001", "AUTHORIZED", "4").await;
    assert_eq!(next_event(&mut live).await.reference, "ride-filter-a001");
    let b = next_event(&mut only_b).await;
    assert_eq!(
        (b.reference.as_str(), b.name()),
        ("ride-filter-b001", PaymentEventName::Authorized)
    );
    let err = app
        .client
        .stream_payment_events(proto::StreamPaymentEventsRequest {
            names: vec![0],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["names[0]"]);
    app.stop().await;
}

#[tokio::test]
async fn restart_on_the_same_database_loses_nothing() {
    let app = with_secret().await;
    for i in 0..5 {
        webhook(
            &app,
            &format!("ride-restart-{i:04}"),
            "AUTHORIZED",
            &format!("{i}"),
        )
        .await;
    }
    let url = app.database_url.clone();
    let dir = app.stop().await;
    let mut again = spawn_on(dir, url, &[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await;
    webhook(&again, "ride-restart-0005", "AUTHORIZED", "5").await;
    let mut stream = again.subscribe(Some(0), &[]).await;
    let mut refs = Vec::new();
    for _ in 0..6 {
        refs.push(next_event(&mut stream).await.reference);
    }
    let expected: Vec<_> = (0..6).map(|i| format!("ride-restart-{i:04}")).collect();
    assert_eq!(refs, expected);
    again.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_still_receives_everything_in_order() {
    let mut app = with_secret().await;
    let mut slow = app.subscribe(Some(0), &[]).await;
    // Far more than the subscriber's buffer, while it reads nothing.
    let total = 300;
    for i in 0..total {
        webhook(
            &app,
            &format!("ride-slow-{i:05}"),
            "CREATED",
            &format!("{i}"),
        )
        .await;
    }
    let mut last = 0;
    for i in 0..total {
        let e = next_event(&mut slow).await;
        assert_eq!(e.reference, format!("ride-slow-{i:05}"));
        assert!(e.sequence > last);
        last = e.sequence;
    }
    app.stop().await;
}

#[tokio::test]
async fn heartbeats_carry_the_latest_sequence() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_HEARTBEAT_MS", "100"),
    ])
    .await;
    webhook(&app, "ride-beat-0001", "CREATED", "1").await;
    let mut stream = app.subscribe(Some(0), &[]).await;
    let first = next_event(&mut stream).await;
    loop {
        let item = stream.message().await.unwrap().unwrap();
        if let Some(Kind::Heartbeat(h)) = item.kind {
            assert_eq!(h.sequence, first.sequence);
            assert!(h.time.is_some());
            break;
        }
    }
    app.stop().await;
}

/// A live stream (no cursor) that drops before any event or periodic heartbeat still has a
/// resume point: its opening heartbeat. Events written while it was away arrive on resume.
#[tokio::test]
async fn a_live_stream_opens_with_its_resume_point() {
    let mut app = with_secret().await; // heartbeats every 15 s: the opening one is not periodic
    webhook(&app, "ride-open-0001", "CREATED", "1").await;
    let mut replay = app.subscribe(Some(0), &[]).await;
    let logged = next_event(&mut replay).await;
    drop(replay);
    let mut stream = app.subscribe(None, &[]).await;
    // A bound against hanging, never a timing assertion.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("the live stream's first item")
        .unwrap()
        .unwrap();
    let Some(Kind::Heartbeat(opening)) = first.kind else {
        panic!("a live stream opens with a heartbeat, got {first:?}");
    };
    assert_eq!(opening.sequence, logged.sequence);
    drop(stream);
    webhook(&app, "ride-open-0002", "CREATED", "2").await;
    let mut resumed = app.subscribe(Some(opening.sequence), &[]).await;
    assert_eq!(next_event(&mut resumed).await.reference, "ride-open-0002");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable() {
    let mut app = with_secret().await;
    let mut stream = app.subscribe(None, &[]).await;
    app.stop().await;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn sqlite_refuses_a_second_writer() {
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        return; // PostgreSQL: several replicas are the point (see the replica tests).
    }
    let app = with_secret().await;
    let mut values = std::collections::HashMap::new();
    values.insert("DATABASE_URL".to_owned(), app.database_url.clone());
    values.insert("PAYGATE_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned());
    values.insert("PAYGATE_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned());
    values.insert("PAYGATE_EMULATOR_ADDR".to_owned(), "127.0.0.1:0".to_owned());
    let config = paygate::config::Config::from_values(&values).unwrap();
    let err = paygate::app::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("one paygate"), "{err:#}");
    app.stop().await;
}

/// Two replicas on one PostgreSQL database: writes on both, subscribers on both. Every
/// subscriber sees a strictly increasing sequence with no hole relative to the final log.
#[tokio::test]
async fn replicas_share_one_ordered_log() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    if admin.is_empty() {
        return;
    }
    let mut a = with_secret().await;
    let url = a.database_url.clone();
    let mut b = spawn_on(
        tempfile::tempdir().unwrap(),
        url,
        &[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    )
    .await;
    let mut on_a = a.subscribe(Some(0), &[]).await;
    let mut on_b = b.subscribe(Some(0), &[]).await;

    // A webhook into A reaches a subscriber on B.
    webhook(&a, "ride-replica-0000", "CREATED", "0").await;
    assert_eq!(next_event(&mut on_b).await.reference, "ride-replica-0000");
    assert_eq!(next_event(&mut on_a).await.reference, "ride-replica-0000");

    // Hammer both replicas concurrently.
    let per_replica = 150;
    async fn hammer(app: &TestApp, side: &str, n: usize) -> Vec<reqwest::StatusCode> {
        let bodies: Vec<String> = (0..n)
            .map(|i| {
                webhook_body(
                    &format!("ride-{side}-{i:05}"),
                    "CREATED",
                    &format!("{i}"),
                    1000,
                    None,
                )
            })
            .collect();
        futures::future::join_all(bodies.iter().map(|b| app.post_webhook(b))).await
    }
    let (ra, rb) = tokio::join!(hammer(&a, "a", per_replica), hammer(&b, "b", per_replica));
    assert!(ra.iter().chain(rb.iter()).all(|s| s.is_success()));

    let total = 1 + 2 * per_replica;
    let mut seen_a = vec![];
    let mut seen_b = vec![];
    for _ in 1..total {
        seen_a.push(next_event(&mut on_a).await.sequence);
        seen_b.push(next_event(&mut on_b).await.sequence);
    }
    let mut final_log = BTreeSet::new();
    let mut all = b.subscribe(Some(0), &[]).await;
    for _ in 0..total {
        final_log.insert(next_event(&mut all).await.sequence);
    }
    for seen in [&seen_a, &seen_b] {
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        let expected: Vec<u64> = final_log.iter().copied().skip(1).collect();
        assert_eq!(seen, &expected, "no holes relative to the final log");
    }
    b.stop().await;
    a.stop().await;
}
