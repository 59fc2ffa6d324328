//! Makes sure Vipps posts every ePayment event to our public URL, and that paygate holds the
//! secret to verify it.

use crate::{
    store::{Store, StoredWebhook},
    vipps::{models, VippsClient},
};

/// All eight ePayment webhook event types.
pub const EPAYMENT_EVENTS: [&str; 8] = [
    "epayments.payment.created.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "epayments.payment.cancelled.v1",
    "epayments.payment.captured.v1",
    "epayments.payment.refunded.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.terminated.v1",
];

/// Lists Vipps' registrations, reuses one for `url` whose secret is stored, otherwise registers
/// a new one and stores its secret; removes registrations for `url` paygate has no secret for
/// (Vipps caps registrations per event type), and forgets stored ones Vipps no longer has.
/// Returns the secrets that verify webhooks for `url`, the one in use first.
pub async fn ensure_registered(
    vipps: &VippsClient,
    store: &Store,
    url: &str,
) -> anyhow::Result<Vec<String>> {
    // One replica at a time: the others then find its registration and reuse it.
    let _lock = store.registration_lock().await?;
    let stored = store.webhooks_for(url).await?;
    let remote: Vec<models::Webhook> = vipps
        .list_webhooks()
        .await?
        .webhooks
        .into_iter()
        .filter(|w| w.url == url)
        .collect();
    let covers_all = |w: &models::Webhook| {
        EPAYMENT_EVENTS
            .iter()
            .all(|e| w.events.iter().any(|x| x == e))
    };

    let mut secrets = Vec::new();
    let reusable = remote
        .iter()
        .find(|w| covers_all(w) && stored.iter().any(|s| s.id == w.id));
    if let Some(hook) = reusable {
        tracing::info!(id = %hook.id, "reusing the webhook registration");
    } else {
        let answer = vipps
            .register_webhook(&models::RegisterWebhookRequest {
                url: url.to_owned(),
                events: EPAYMENT_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            })
            .await?;
        store
            .save_webhook(&StoredWebhook {
                id: answer.id.clone(),
                url: url.to_owned(),
                secret: answer.secret.clone(),
            })
            .await?;
        tracing::info!(id = %answer.id, "registered the webhook");
        secrets.push(answer.secret);
    }
    for hook in &remote {
        match stored.iter().find(|s| s.id == hook.id) {
            Some(s) => secrets.push(s.secret.clone()),
            None => {
                tracing::info!(id = %hook.id, "removing a registration paygate has no secret for");
                if let Err(e) = vipps.delete_webhook(&hook.id).await {
                    tracing::warn!(id = %hook.id, error = %e, "could not remove a stale registration");
                }
            }
        }
    }
    for s in &stored {
        if !remote.iter().any(|w| w.id == s.id) && !secrets.contains(&s.secret) {
            store.delete_webhook(&s.id).await?;
        }
    }
    Ok(secrets)
}

/// Registers the webhook (retrying until it works), then re-checks it every 5 minutes so secrets
/// registered by another replica become known here too. Runs until `stop`.
pub async fn keep_registered(
    vipps: VippsClient,
    store: Store,
    url: String,
    verifier: super::Verifier,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match ensure_registered(&vipps, &store, &url).await {
            Ok(secrets) => {
                verifier.set_secrets(secrets);
                delay = std::time::Duration::from_secs(300);
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook registration failed; retrying");
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Registration against a Vipps (emulator) that outlives paygate: reuse what paygate holds
    //! the secret for, register otherwise, remove stale registrations for the same URL.
    use super::*;
    use crate::test_support;

    const URL: &str = "https://pay.example.com/webhooks/vipps";

    #[tokio::test]
    async fn registration_is_reused_and_stale_ones_are_removed() {
        let (vipps_emulator, vipps) = test_support::emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = test_support::fresh_store(&dir).await;

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
        let (vipps_emulator, vipps) = test_support::emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let (a, url) = test_support::fresh_store(&dir).await;
        let b = Store::connect(&test_support::database(&url)).await.unwrap();
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
}
