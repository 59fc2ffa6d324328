//! Upstream faults: retries reuse the Idempotency-Key, unknown outcomes are re-sent, and the
//! caller gets the documented status.

use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn server_errors_then_success() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    let before = app.requests("capture");
    app.fault(serde_json::json!({"match": "capture", "count": 2, "status": 500}));
    let p = app.capture(&reference, Some(5000), "cap").await.unwrap();
    assert_eq!(totals(&p).1, 5000);
    assert_eq!(
        app.requests("capture") - before,
        3,
        "two 500s, then success"
    );
    let effects = app.effects(&reference, "capture");
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0]["idempotencyKey"], "cap");
    app.stop().await;
}

#[tokio::test]
async fn persistent_server_errors_are_unavailable_and_a_retry_completes_once() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    app.fault(serde_json::json!({"match": "capture", "count": 1000, "status": 503}));
    let err = app
        .capture(&reference, Some(5000), "cap")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    app.emulator.clear_faults();
    let p = app.capture(&reference, Some(5000), "cap").await.unwrap();
    assert_eq!(totals(&p).1, 5000);
    assert_eq!(app.effects(&reference, "capture").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn lost_response_is_resent_with_the_same_key() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    // Vipps applies the capture but every answer is lost until the budget runs out.
    app.fault(
        serde_json::json!({"match": "capture", "count": 1, "status": 500, "afterEffect": true}),
    );
    app.fault(serde_json::json!({"match": "capture", "count": 1000, "status": 502}));
    let err = app
        .capture(&reference, Some(7000), "lost")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        app.effects(&reference, "capture").len(),
        1,
        "it did happen upstream"
    );
    app.emulator.clear_faults();
    let p = app.capture(&reference, Some(7000), "lost").await.unwrap();
    assert_eq!(totals(&p).1, 7000);
    assert_eq!(
        app.effects(&reference, "capture").len(),
        1,
        "the re-send was a replay"
    );
    let captured = app
        .events(&reference)
        .await
        .into_iter()
        .filter(|e| e.name() == paygate::grpc::proto::PaymentEventName::Captured)
        .count();
    assert_eq!(captured, 1);
    app.stop().await;
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_honoured() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    let before = app.requests("capture");
    app.fault(
        serde_json::json!({"match": "capture", "count": 1, "status": 429, "retryAfterSeconds": 1}),
    );
    app.capture(&reference, Some(1000), "c").await.unwrap();
    assert_eq!(app.requests("capture") - before, 2);
    app.stop().await;
}

#[tokio::test]
async fn persistent_rate_limit_is_resource_exhausted() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    app.fault(serde_json::json!({"match": "capture", "count": 1000, "status": 429}));
    let err = app.capture(&reference, Some(1000), "c").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(app.effects(&reference, "capture").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn create_with_unknown_outcome_is_completed_by_the_retry() {
    let mut app = spawn_app().await;
    let mut req = push_request(10000);
    req.reference = "ride-unknown-1".into();
    app.fault(serde_json::json!({"match": "/epayment/v1/payments", "method": "POST", "count": 1000, "status": 500}));
    let err = app
        .client
        .create_payment_request(req.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    app.emulator.clear_faults();
    let p = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(p.reference, "ride-unknown-1");
    assert_eq!(app.effects("ride-unknown-1", "create").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn expired_token_is_refreshed_once() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    let issued = app.emulator.stats()["tokensIssued"].as_u64().unwrap();
    app.emulator.revoke_tokens();
    app.capture(&reference, Some(1000), "after-revoke")
        .await
        .unwrap();
    assert_eq!(
        app.emulator.stats()["tokensIssued"].as_u64().unwrap(),
        issued + 1
    );
    app.stop().await;
}

#[tokio::test]
async fn vipps_unreachable_is_unavailable_and_get_answers_from_the_store() {
    let mut app = spawn_app().await;
    let reference = app.create_push(10000).await.reference;
    app.fault(serde_json::json!({"count": 1000, "status": 500}));
    // GetPayment still answers (from the store) when the refresh fails.
    assert_eq!(app.get(&reference).await.reference, reference);
    let err = app.cancel(&reference, "").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    app.stop().await;
}
