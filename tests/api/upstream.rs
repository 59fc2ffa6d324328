//! What the real Vipps API does that a happy path never shows: transient refusals (423, "Order
//! processing", "Cannot cancel pending") that are not final, and slow answers while the
//! reconciler and callers retry. One sender per operation, and nothing decided too early.

use std::time::Duration;

use paygate::grpc::proto;
use tonic::Code;

use crate::helpers::*;

/// A problem document as Vipps sends it for a refusal with this title.
fn problem(status: u16, title: &str) -> String {
    serde_json::json!({
        "type": "https://developer.vippsmobilepay.com/docs/APIs/epayment-api/errors",
        "title": title,
        "status": status,
        "detail": title,
        "traceId": "trace-transient",
    })
    .to_string()
}

/// Reproduced: one 423 to a create answered FAILED_PRECONDITION, deleted the payment and
/// replayed the refusal to every retry. Vipps' advice is to retry with the same key.
#[tokio::test]
async fn a_423_to_a_create_is_retried_and_the_payment_kept() {
    let mut app = spawn_app().await;
    app.fault(serde_json::json!({
        "match": "/epayment/v1/payments", "method": "POST", "count": 1, "status": 423
    }));
    let created = app.create(push_request(15000)).await.unwrap();
    assert_eq!(created.state(), proto::PaymentState::Created);
    assert_eq!(
        app.get(&created.reference).await.reference,
        created.reference
    );
    assert_eq!(app.effects(&created.reference, "create").len(), 1);
    app.stop().await;
}

/// While Vipps keeps answering 423 the create is pending (UNAVAILABLE, outcome unknown), never
/// discarded; the retry with the same key completes it, once.
#[tokio::test]
async fn a_create_vipps_keeps_locking_stays_pending_and_completes_on_retry() {
    let mut app = spawn_app().await;
    app.fault(serde_json::json!({
        "match": "/epayment/v1/payments", "method": "POST", "count": 1000, "status": 423,
        "body": problem(423, "Locked")
    }));
    let request = push_request(15000);
    let err = app.create(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        app.try_get(&request.reference).await.unwrap().reference,
        request.reference,
        "the payment is kept while its outcome is unknown"
    );
    app.emulator.clear_faults();
    let created = app.create(request.clone()).await.unwrap();
    assert_eq!(created.reference, request.reference);
    assert_eq!(app.effects(&request.reference, "create").len(), 1);
    app.stop().await;
}

/// Reproduced: one 409 "Order processing" to a capture refused the capture forever under its
/// key. It is a transient refusal: retried within the call's budget with the same key.
#[tokio::test]
async fn order_processing_is_not_a_final_refusal() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    app.fault(serde_json::json!({
        "match": "capture", "count": 1, "status": 409, "body": problem(409, "Order processing")
    }));
    let p = app
        .capture(&reference, Some(5000), "cap-busy")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 5000);

    // Persistently busy: UNAVAILABLE, pending; then the same key captures, once.
    app.fault(serde_json::json!({
        "match": "capture", "count": 1000, "status": 409, "body": problem(409, "Order processing")
    }));
    let err = app
        .capture(&reference, Some(3000), "cap-busy-2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    app.emulator.clear_faults();
    let p = app
        .capture(&reference, Some(3000), "cap-busy-2")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 8000);
    assert_eq!(app.effects(&reference, "capture").len(), 2);
    app.assert_effects_once(&reference);
    app.stop().await;
}

/// "Cannot cancel pending" is transient too; a final refusal ("Capture amount too high") is
/// still stored and replayed without calling Vipps again.
#[tokio::test]
async fn cannot_cancel_pending_is_transient_and_final_refusals_stay_final() {
    let mut app = spawn_app().await;
    let reference = app.authorized(20000).await;
    app.fault(serde_json::json!({
        "match": "cancel", "count": 1, "status": 409, "body": problem(409, "Cannot cancel pending")
    }));
    let p = app.cancel(&reference, "cancel-1").await.unwrap();
    assert_eq!(totals(&p).3, 20000);

    let other = app.authorized(20000).await;
    app.fault(serde_json::json!({
        "match": "capture", "count": 1, "status": 400,
        "body": problem(400, "Capture amount too high")
    }));
    let first = app
        .capture(&other, Some(1000), "too-high")
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::FailedPrecondition, "{first:?}");
    let sent = app.requests("capture");
    let again = app
        .capture(&other, Some(1000), "too-high")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        app.requests("capture"),
        sent,
        "a final refusal is replayed, not re-sent"
    );
    app.stop().await;
}

/// Reproduced: with PAYGATE_RESEND_AFTER_MS=1000 a capture that Vipps answers after 6 s was
/// POSTed twice while the first attempt was still waiting. The send holds a lease: the
/// reconciler leaves it alone, and a caller's retry meanwhile is told it is in progress.
#[tokio::test]
async fn a_slow_capture_has_one_sender() {
    let mut app = spawn_app_with(&[
        ("PAYGATE_RESEND_AFTER_MS", "1000"),
        ("PAYGATE_RECONCILE_TICK_MS", "200"),
        ("VIPPS_TIMEOUT_MS", "15000"),
        ("VIPPS_RETRY_BUDGET_MS", "15000"),
    ])
    .await;
    let reference = app.authorized(20000).await;
    let before = app.requests("capture");
    app.fault(serde_json::json!({"match": "capture", "count": 1, "delayMs": 6000}));
    let mut first_client = app.client.clone();
    let first_reference = reference.clone();
    let first = tokio::spawn(async move {
        first_client
            .capture_payment(proto::CapturePaymentRequest {
                reference: first_reference,
                amount: Some(nok(5000)),
                idempotency_key: "slow-capture".into(),
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let meanwhile = app
        .capture(&reference, Some(5000), "slow-capture")
        .await
        .unwrap_err();
    assert_eq!(meanwhile.code(), Code::Unavailable, "{meanwhile:?}");
    assert!(
        meanwhile.message().contains("still being sent"),
        "{meanwhile:?}"
    );
    let p = first.await.unwrap().unwrap().into_inner().payment.unwrap();
    assert_eq!(totals(&p).1, 5000);
    assert_eq!(app.requests("capture") - before, 1, "one POST to Vipps");
    let settled = app
        .capture(&reference, Some(5000), "slow-capture")
        .await
        .unwrap();
    assert_eq!(totals(&settled).1, 5000);
    assert_eq!(
        app.requests("capture") - before,
        1,
        "the retry replays the outcome"
    );
    app.stop().await;
}
