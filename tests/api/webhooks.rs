//! The webhook sidecar: verification, durable recording, dedupe, and the emulator end to end.

use paygate::grpc::proto::{self, PaymentEventName};
use reqwest::StatusCode;

use crate::helpers::*;

async fn with_secret() -> TestApp {
    spawn_app_with(&[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await
}

async fn event_count(app: &mut TestApp, reference: &str) -> usize {
    match app
        .client
        .list_payment_events(proto::ListPaymentEventsRequest {
            reference: reference.into(),
        })
        .await
    {
        Ok(r) => r.into_inner().events.len(),
        Err(e) if e.code() == tonic::Code::NotFound => 0,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn forged_stale_and_malformed_webhooks_are_refused_and_nothing_is_stored() {
    let mut app = with_secret().await;
    let reference = "ride-forged-0001";
    let body = webhook_body(reference, "AUTHORIZED", "111", 1000, None);
    let now = http_date(chrono::Utc::now());
    let url = format!("{}/webhooks/vipps", app.http_url);

    // Wrong secret.
    assert_eq!(
        app.post_webhook_signed("other-secret", &body, &now).await,
        StatusCode::UNAUTHORIZED
    );
    // The base64-decoded secret is not the key (REFERENCE.md §3).
    // Stale and future dates.
    let stale = http_date(chrono::Utc::now() - chrono::Duration::minutes(6));
    assert_eq!(
        app.post_webhook_signed(WEBHOOK_SECRET, &body, &stale).await,
        StatusCode::UNAUTHORIZED
    );
    let future = http_date(chrono::Utc::now() + chrono::Duration::minutes(6));
    assert_eq!(
        app.post_webhook_signed(WEBHOOK_SECRET, &body, &future)
            .await,
        StatusCode::UNAUTHORIZED
    );

    // Tampered body with the original signature, and a tampered signature.
    let host = url::Url::parse(&url).unwrap();
    let host = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    let signed = vipps_signature::sign(
        WEBHOOK_SECRET,
        "/webhooks/vipps",
        &host,
        &now,
        body.as_bytes(),
    );
    let send = |body: String, auth: String, hash: String| {
        app.http()
            .post(url.clone())
            .header("x-ms-date", now.clone())
            .header("x-ms-content-sha256", hash)
            .header("Authorization", auth)
            .body(body)
            .send()
    };
    let tampered = body.replace("1000", "9000");
    let r = send(
        tampered,
        signed.authorization.clone(),
        signed.content_hash.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let bad_sig = signed.authorization.replace("Signature=", "Signature=A");
    let r = send(body.clone(), bad_sig, signed.content_hash.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Missing headers.
    let r = app
        .http()
        .post(url.clone())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!r.text().await.unwrap().is_empty(), "a short reason");

    // Signed but not an ePayment event.
    let garbage = r#"{"hello": "world"}"#;
    assert_eq!(app.post_webhook(garbage).await, StatusCode::BAD_REQUEST);
    let bad_name = webhook_body(reference, "EXPLODED", "1", 1000, None);
    assert_eq!(app.post_webhook(&bad_name).await, StatusCode::BAD_REQUEST);

    // Oversized.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(app.post_webhook(&huge).await, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(
        event_count(&mut app, reference).await,
        0,
        "nothing recorded"
    );
    app.stop().await;
}

#[tokio::test]
async fn x_vipps_authorization_is_accepted_when_authorization_is_stripped() {
    let mut app = with_secret().await;
    let body = webhook_body("ride-proxy-0001", "CREATED", "1", 1000, None);
    let now = http_date(chrono::Utc::now());
    let url = url::Url::parse(&format!("{}/webhooks/vipps", app.http_url)).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let signed = vipps_signature::sign(WEBHOOK_SECRET, url.path(), &host, &now, body.as_bytes());
    let r = app
        .http()
        .post(url)
        .header("x-ms-date", now)
        .header("x-ms-content-sha256", signed.content_hash)
        .header("X-Vipps-Authorization", signed.authorization)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(event_count(&mut app, "ride-proxy-0001").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_absorbed_and_unknown_payments_are_stored() {
    let mut app = with_secret().await;
    let body = webhook_body("made-elsewhere-01", "AUTHORIZED", "555", 4200, None);
    assert_eq!(app.post_webhook(&body).await, StatusCode::OK);
    assert_eq!(app.post_webhook(&body).await, StatusCode::OK);
    // The same event re-sent later by Vipps has a new timestamp: still a duplicate.
    let again = webhook_body("made-elsewhere-01", "AUTHORIZED", "555", 4200, None);
    assert_eq!(app.post_webhook(&again).await, StatusCode::OK);
    let events = app
        .client
        .list_payment_events(proto::ListPaymentEventsRequest {
            reference: "made-elsewhere-01".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert!(
        events[0].payment.is_none(),
        "no payment snapshot for an unknown payment"
    );
    app.stop().await;
}

#[tokio::test]
async fn webhook_moves_the_payment_forward_and_a_late_one_cannot_move_it_back() {
    let mut app = with_secret().await;
    let reference = app.create_push(25000).await.reference;
    let authorized = webhook_body(&reference, "AUTHORIZED", "900", 25000, None);
    assert_eq!(app.post_webhook(&authorized).await, StatusCode::OK);
    // Without asking Vipps: the stored payment is already AUTHORIZED (GetPayment does not refresh final states).
    let p = app.get(&reference).await;
    assert_eq!(p.state(), proto::PaymentState::Authorized);
    assert_eq!(totals(&p).0, 25000);
    let late = webhook_body(&reference, "EXPIRED", "901", 25000, None);
    assert_eq!(app.post_webhook(&late).await, StatusCode::OK);
    assert_eq!(
        app.get(&reference).await.state(),
        proto::PaymentState::Authorized
    );
    app.stop().await;
}

#[tokio::test]
async fn emulator_webhooks_end_to_end_each_event_once_in_order() {
    let mut app = spawn_app().await;
    // Ready means the webhook is registered and its secret in place (as a load balancer waits).
    let (http, ready) = (app.http().clone(), format!("{}/readyz", app.http_url));
    eventually("paygate is ready", || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            http.get(ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let mut stream = app.subscribe(Some(0), &[]).await;
    let reference = app.create_push(30000).await.reference;
    // The emulator registered by paygate at start-up signs and delivers every event.
    app.approve(&reference).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_event(&mut stream).await);
    }
    assert_eq!(
        seen[1].name(),
        PaymentEventName::Authorized,
        "the webhook told us"
    );
    app.capture(&reference, None, "cap-all").await.unwrap();
    seen.push(next_event(&mut stream).await);
    let names: Vec<_> = seen.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            PaymentEventName::Created,
            PaymentEventName::Authorized,
            PaymentEventName::Captured
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].sequence < w[1].sequence));
    // Wait until the emulator delivered every webhook (the CREATED and CAPTURED ones duplicate
    // paygate's own records), then the log still has each event once.
    let emulator = app.emulator.clone();
    eventually("all webhooks delivered", || {
        let stats = emulator.stats();
        async move {
            let w = &stats["webhooks"];
            w["delivered"].as_u64().unwrap_or(0) >= 3
        }
    })
    .await;
    assert_eq!(event_count(&mut app, &reference).await, 3);
    app.stop().await;
}
