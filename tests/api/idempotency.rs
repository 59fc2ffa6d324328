//! Retries with the same key have one upstream effect; the same key with other parameters is refused.

use paygate::grpc::proto::PaymentState;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn retried_capture_has_one_effect() {
    let mut app = spawn_app().await;
    let reference = app.authorized(30000).await;
    let first = app.capture(&reference, Some(10000), "cap-1").await.unwrap();
    let calls = app.requests("capture");
    let second = app.capture(&reference, Some(10000), "cap-1").await.unwrap();
    assert_eq!(totals(&first), totals(&second));
    assert_eq!(totals(&second), (30000, 10000, 0, 0));
    assert_eq!(
        app.requests("capture"),
        calls,
        "a replay does not call Vipps"
    );
    assert_eq!(app.effects(&reference, "capture").len(), 1);
    // The replay answers as the first call did even after the payment moved on.
    app.capture(&reference, None, "cap-2").await.unwrap();
    let replay = app.capture(&reference, Some(10000), "cap-1").await.unwrap();
    assert_eq!(totals(&replay), (30000, 10000, 0, 0));
    assert_eq!(app.effects(&reference, "capture").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn retried_create_has_one_effect() {
    let mut app = spawn_app().await;
    let mut req = push_request(15000);
    req.idempotency_key = "order-77-attempt".into();
    let first = app
        .client
        .create_payment_request(req.clone())
        .await
        .unwrap()
        .into_inner();
    let second = app
        .client
        .create_payment_request(req.clone())
        .await
        .unwrap()
        .into_inner();
    let (a, b) = (first.payment.unwrap(), second.payment.unwrap());
    assert_eq!(
        a.reference, b.reference,
        "the generated reference is reused"
    );
    assert_eq!(app.effects(&a.reference, "create").len(), 1);
    assert_eq!(app.requests("create"), 1);
    app.stop().await;
}

#[tokio::test]
async fn same_key_other_parameters_is_refused() {
    let mut app = spawn_app().await;
    let reference = app.authorized(30000).await;
    app.capture(&reference, Some(1000), "k1").await.unwrap();
    let err = app.capture(&reference, Some(2000), "k1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("idempotency key"),
        "{}",
        err.message()
    );
    assert_eq!(app.effects(&reference, "capture").len(), 1);

    // Create: the key defaults to the reference, so the same reference with another amount.
    let mut req = push_request(10000);
    req.reference = "ride-same-key-1".into();
    app.client
        .create_payment_request(req.clone())
        .await
        .unwrap();
    req.amount = Some(nok(20000));
    let err = app
        .client
        .create_payment_request(req.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // The same reference under another key is another payment request: refused.
    req.amount = Some(nok(10000));
    req.idempotency_key = "other-key".into();
    let err = app.client.create_payment_request(req).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(
        app.get("ride-same-key-1").await.amount.unwrap().value,
        10000
    );
    app.stop().await;
}

#[tokio::test]
async fn cancel_key_defaults_to_the_reference() {
    let mut app = spawn_app().await;
    let reference = app.create_push(10000).await.reference;
    let first = app.cancel(&reference, "").await.unwrap();
    let again = app.cancel(&reference, "").await.unwrap();
    assert_eq!(first.state(), PaymentState::Terminated);
    assert_eq!(again.state(), PaymentState::Terminated);
    assert_eq!(app.effects(&reference, "cancel").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_is_replayed_without_calling_vipps_again() {
    let mut app = spawn_app().await;
    let reference = app.authorized(10000).await;
    app.fault(serde_json::json!({"match": "capture", "count": 1, "status": 400}));
    let err = app
        .capture(&reference, Some(500), "refused")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let calls = app.requests("capture");
    let again = app
        .capture(&reference, Some(500), "refused")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(again.message(), err.message());
    assert_eq!(app.requests("capture"), calls);
    assert!(app.effects(&reference, "capture").is_empty());
    app.stop().await;
}
