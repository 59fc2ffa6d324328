//! Webhook registration against a Vipps (emulator) that outlives paygate: reuse what paygate
//! holds the secret for, register otherwise, remove stale registrations for the same URL.

use paygate::{
    config,
    emulator::{Emulator, EmulatorConfig},
    store::Store,
    vipps::{models, VippsClient},
    webhooks::{ensure_registered, EPAYMENT_EVENTS},
};

const URL: &str = "https://pay.example.com/webhooks/vipps";

#[tokio::test]
async fn registration_is_reused_and_stale_ones_are_removed() {
    let vipps_emulator = Emulator::new(EmulatorConfig::default())
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cfg = config::emulator_vipps_config(
        url::Url::parse(&vipps_emulator.base_url()).unwrap(),
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(3),
    );
    let vipps = VippsClient::new(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&crate::helpers::fresh_database(&dir).await)
        .await
        .unwrap();
    store.migrate().await.unwrap();

    // A registration for our URL made by someone else (its secret is lost to paygate).
    let stale = vipps
        .register_webhook(&models::RegisterWebhookRequest {
            url: URL.into(),
            events: vec![EPAYMENT_EVENTS[0].into()],
        })
        .await
        .unwrap();

    let first = ensure_registered(&vipps, &store, URL).await.unwrap();
    assert_eq!(first.len(), 1);
    let listed = vipps.list_webhooks().await.unwrap().webhooks;
    assert_eq!(listed.len(), 1, "the stale registration was removed");
    assert_ne!(listed[0].id, stale.id);
    assert_eq!(listed[0].events.len(), EPAYMENT_EVENTS.len());

    // A restart (or another replica) reuses it: same secret, no new registration.
    let again = ensure_registered(&vipps, &store, URL).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(vipps.list_webhooks().await.unwrap().webhooks.len(), 1);
    store.close().await;
    vipps_emulator.shutdown().await;
}

/// Replicas starting at the same moment register one webhook between them (PostgreSQL).
#[tokio::test]
async fn replicas_starting_together_register_once() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        return; // SQLite runs a single replica.
    }
    let vipps_emulator = Emulator::new(EmulatorConfig::default())
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cfg = config::emulator_vipps_config(
        url::Url::parse(&vipps_emulator.base_url()).unwrap(),
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(3),
    );
    let vipps = VippsClient::new(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database(&dir).await;
    let (a, b) = (
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
    );
    a.migrate().await.unwrap();
    let (ra, rb) = tokio::join!(
        ensure_registered(&vipps, &a, URL),
        ensure_registered(&vipps, &b, URL)
    );
    assert_eq!(ra.unwrap(), rb.unwrap(), "both verify with the same secret");
    assert_eq!(vipps.list_webhooks().await.unwrap().webhooks.len(), 1);
    a.close().await;
    b.close().await;
    vipps_emulator.shutdown().await;
}
