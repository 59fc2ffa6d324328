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
