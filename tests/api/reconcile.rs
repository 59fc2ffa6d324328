//! Webhooks are not relied on alone: the reconciler polls, and unfinished operations settle.

use paygate::grpc::proto::PaymentEventName;
use vipps_emulator::WebhookFaults;

use crate::helpers::*;

#[tokio::test]
async fn with_every_webhook_dropped_subscribers_still_get_every_event() {
    let mut app = spawn_app().await;
    app.emulator.set_webhook_faults(WebhookFaults {
        drop: 1_000_000,
        ..Default::default()
    });
    let mut stream = app.subscribe(Some(0), &[]).await;
    let reference = app.create_push(15000).await.reference;
    app.approve(&reference).await;
    let other = app.create_push(15000).await.reference;
    app.customer(&other, "expire").await;
    // Nobody calls GetPayment: only the reconciler can learn of these.
    let mut names = Vec::new();
    while names.len() < 4 {
        names.push(next_event(&mut stream).await.name());
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == PaymentEventName::Created)
            .count(),
        2
    );
    assert!(names.contains(&PaymentEventName::Authorized));
    assert!(names.contains(&PaymentEventName::Expired));
    assert!(
        app.emulator.stats()["webhooks"]["dropped"]
            .as_u64()
            .unwrap()
            > 0
    );
    app.stop().await;
}

#[tokio::test]
async fn an_abandoned_operation_settles_without_the_caller() {
    let mut app = spawn_app_with(&[
        ("PAYGATE_RESEND_AFTER_MS", "300"),
        ("PAYGATE_RECONCILE_TICK_MS", "100"),
    ])
    .await;
    let reference = app.authorized(20000).await;
    app.fault(serde_json::json!({"match": "capture", "count": 1000, "status": 503}));
    let err = app
        .capture(&reference, Some(5000), "abandoned")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    app.emulator.clear_faults();
    // The caller never retries; paygate re-sends the journalled capture itself.
    let emulator = app.emulator.clone();
    let r = reference.clone();
    eventually("the capture was applied", || {
        let n = emulator.payment_view(&r).unwrap()["effects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == "capture")
            .count();
        async move { n == 1 }
    })
    .await;
    let client = app.client.clone();
    let r = reference.clone();
    eventually("the capture is in paygate's log", || {
        let mut client = client.clone();
        let r = r.clone();
        async move {
            client
                .list_payment_events(paygate::grpc::proto::ListPaymentEventsRequest {
                    reference: r,
                })
                .await
                .unwrap()
                .into_inner()
                .events
                .iter()
                .any(|e| e.name() == PaymentEventName::Captured)
        }
    })
    .await;
    // The caller's late retry is a replay.
    let p = app
        .capture(&reference, Some(5000), "abandoned")
        .await
        .unwrap();
    assert_eq!(totals(&p).1, 5000);
    assert_eq!(app.effects(&reference, "capture").len(), 1);
    app.stop().await;
}
