//! Create → approve → capture → refund, cancel before and after authorization, and refusals.

use paygate::grpc::proto::{PaymentEventName, PaymentState};
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn full_lifecycle_with_partial_captures() {
    let mut app = spawn_app().await;
    // No reference: paygate generates one (the idempotency key lets a retry find it).
    let mut request = push_request(35000);
    request.reference.clear();
    request.idempotency_key = "lifecycle-create-1".into();
    let created = app
        .client
        .create_payment_request(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(created.state(), PaymentState::Created);
    assert!(created.reference.starts_with("pg-"));
    let reference = created.reference.clone();

    app.approve(&reference).await;
    let p = app.get(&reference).await;
    assert_eq!(
        p.state(),
        PaymentState::Authorized,
        "GetPayment refreshes from Vipps"
    );
    assert_eq!(totals(&p), (35000, 0, 0, 0));

    let p = app.capture(&reference, Some(10000), "cap-1").await.unwrap();
    assert_eq!(totals(&p), (35000, 10000, 0, 0));
    // No amount: capture all that remains.
    let p = app.capture(&reference, None, "cap-2").await.unwrap();
    assert_eq!(totals(&p), (35000, 35000, 0, 0));
    let p = app.refund(&reference, Some(5000), "ref-1").await.unwrap();
    assert_eq!(totals(&p), (35000, 35000, 5000, 0));

    let events = app.events(&reference).await;
    let names: Vec<_> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            PaymentEventName::Created,
            PaymentEventName::Authorized,
            PaymentEventName::Captured,
            PaymentEventName::Captured,
            PaymentEventName::Refunded
        ]
    );
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let captured: Vec<_> = events
        .iter()
        .filter(|e| e.name() == PaymentEventName::Captured)
        .map(|e| (e.amount.clone().unwrap().value, e.idempotency_key.clone()))
        .collect();
    assert_eq!(captured, [(10000, "cap-1".into()), (25000, "cap-2".into())]);
    let last = events.last().unwrap().payment.clone().unwrap();
    assert_eq!(
        totals(&last),
        (35000, 35000, 5000, 0),
        "snapshot after the event"
    );

    // The emulator agrees: two captures and one refund, each applied once.
    assert_eq!(app.effects(&reference, "capture").len(), 2);
    assert_eq!(app.effects(&reference, "refund").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn cancel_before_authorization_terminates() {
    let mut app = spawn_app().await;
    let reference = app.create_push(20000).await.reference;
    let p = app.cancel(&reference, "").await.unwrap();
    assert_eq!(p.state(), PaymentState::Terminated);
    assert_eq!(totals(&p), (0, 0, 0, 20000));
    let names: Vec<_> = app
        .events(&reference)
        .await
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(
        names,
        [PaymentEventName::Created, PaymentEventName::Terminated]
    );
    let err = app.capture(&reference, None, "k").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn cancel_after_partial_capture_releases_the_rest() {
    let mut app = spawn_app().await;
    let reference = app.authorized(30000).await;
    app.capture(&reference, Some(12000), "cap").await.unwrap();
    let p = app.cancel(&reference, "cancel-1").await.unwrap();
    assert_eq!(p.state(), PaymentState::Authorized);
    assert_eq!(totals(&p), (30000, 12000, 0, 18000));
    let events = app.events(&reference).await;
    let cancelled = events.last().unwrap();
    assert_eq!(cancelled.name(), PaymentEventName::Cancelled);
    assert_eq!(cancelled.amount.clone().unwrap().value, 18000);

    let err = app
        .capture(&reference, Some(100), "cap-after-cancel")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("cancelled"), "{}", err.message());
    app.stop().await;
}

#[tokio::test]
async fn refusals_the_state_forbids() {
    let mut app = spawn_app().await;
    let reference = app.create_push(10000).await.reference;
    let err = app.capture(&reference, None, "early").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("not authorized"),
        "{}",
        err.message()
    );

    app.approve(&reference).await;
    let err = app
        .capture(&reference, Some(10001), "too-much")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("exceeds"), "{}", err.message());

    let err = app
        .refund(&reference, Some(1), "nothing-captured")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    app.capture(&reference, Some(4000), "c1").await.unwrap();
    let err = app
        .refund(&reference, Some(4001), "r-too-much")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    app.capture(&reference, None, "c2").await.unwrap();
    let err = app.cancel(&reference, "cancel-captured").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = app.capture(&reference, None, "c3").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "nothing remains");

    // No refused call reached Vipps as a second effect.
    assert_eq!(app.effects(&reference, "capture").len(), 2);
    assert!(app.effects(&reference, "refund").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn customer_reject_and_expiry_are_final() {
    let mut app = spawn_app().await;
    let rejected = app.create_push(10000).await.reference;
    app.customer(&rejected, "reject").await;
    assert_eq!(app.get(&rejected).await.state(), PaymentState::Aborted);
    let expired = app.create_push(10000).await.reference;
    app.customer(&expired, "expire").await;
    assert_eq!(app.get(&expired).await.state(), PaymentState::Expired);
    let names: Vec<_> = app
        .events(&expired)
        .await
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(
        names,
        [PaymentEventName::Created, PaymentEventName::Expired]
    );
    let err = app.cancel(&expired, "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn unknown_reference_is_not_found() {
    let mut app = spawn_app().await;
    let missing = "no-such-payment-1";
    let err = app
        .client
        .get_payment(paygate::grpc::proto::GetPaymentRequest {
            reference: missing.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        app.capture(missing, None, "k").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        app.refund(missing, None, "k").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        app.cancel(missing, "").await.unwrap_err().code(),
        Code::NotFound
    );
    let err = app
        .client
        .list_payment_events(paygate::grpc::proto::ListPaymentEventsRequest {
            reference: missing.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn other_flows_return_a_redirect_url() {
    let mut app = spawn_app().await;
    let mut req = push_request(10000);
    req.user_flow = paygate::grpc::proto::UserFlow::WebRedirect.into();
    req.customer = None;
    req.return_url = "https://fare.example.com/done".into();
    req.reference = "ride-web-0001".into();
    req.metadata.insert("ride".into(), "34".into());
    let p = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(p.reference, "ride-web-0001");
    assert!(p.redirect_url.starts_with("https://"), "{}", p.redirect_url);
    assert_eq!(p.metadata.get("ride").map(String::as_str), Some("34"));
    let again = app.get("ride-web-0001").await;
    assert_eq!(again.redirect_url, p.redirect_url);
    app.stop().await;
}
