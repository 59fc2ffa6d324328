//! `POST /webhooks/vipps`: raw body → verify → parse → commit → 2xx.
//!
//! The answer is 2xx only after the event is durably committed: Vipps retries anything else for
//! up to 7 days, so a crash before the commit loses nothing.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{HeaderMap, StatusCode},
};
use chrono::Utc;
use tracing::Instrument;

use super::verifier::{SignedRequest, Verifier};
use crate::{
    domain::{EventSource, NewEvent},
    events::EventLog,
    vipps::{mapping, models},
};

fn reject(reason: &'static str) {
    metrics::counter!("paygate_webhooks_rejected_total", "reason" => reason).increment(1);
}

/// What the webhook endpoint needs.
#[derive(Clone)]
pub struct WebhookIngest {
    pub verifier: Verifier,
    pub log: EventLog,
}

type Answer = (StatusCode, &'static str);

pub async fn receive(
    State(ingest): State<WebhookIngest>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    metrics::counter!("paygate_webhooks_received_total").increment(1);
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            reject("too_large");
            return (rejection.status(), "body too large or unreadable");
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request = SignedRequest {
        date: header("x-ms-date"),
        content_sha256: header("x-ms-content-sha256"),
        // Some proxies strip Authorization; Vipps' own plugin accepts this copy too.
        authorization: header("authorization").or_else(|| header("x-vipps-authorization")),
    };
    if let Err(e) = ingest.verifier.verify(&request, &body, Utc::now()) {
        reject(e.reason());
        tracing::info!(reason = e.reason(), "webhook rejected");
        return match e {
            super::VerifyError::NoSecret => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
            _ => (StatusCode::UNAUTHORIZED, "signature or date invalid"),
        };
    }
    let event = match parse(&body) {
        Ok(event) => event,
        Err(why) => {
            reject("malformed");
            return (StatusCode::BAD_REQUEST, why);
        }
    };
    let span =
        tracing::info_span!("webhook", reference = %event.reference, name = event.name.as_str());
    async move {
        let change = crate::store::PaymentChange {
            reference: event.reference.clone(),
            events: vec![event],
            confirm: true,
            ..Default::default()
        };
        match ingest.log.commit(change).await {
            Ok(result) if result.appended.is_empty() => {
                metrics::counter!("paygate_webhooks_duplicate_total").increment(1);
                (StatusCode::OK, "duplicate")
            }
            Ok(result) => {
                metrics::counter!("paygate_webhooks_accepted_total").increment(1);
                if result.payment.is_none() {
                    tracing::info!("webhook for a payment paygate does not know; stored");
                }
                (StatusCode::OK, "accepted")
            }
            Err(e) => {
                reject("store_unavailable");
                tracing::error!(error = %e, "webhook not stored; Vipps will retry");
                (StatusCode::SERVICE_UNAVAILABLE, "not stored, retry later")
            }
        }
    }
    .instrument(span)
    .await
}

/// The ePayment webhook body as an event, with lengths bounded for storage.
fn parse(body: &[u8]) -> Result<NewEvent, &'static str> {
    let raw: models::PaymentEvent =
        serde_json::from_slice(body).map_err(|_| "body is not an ePayment webhook event")?;
    let in_bounds = |s: &str, max: usize| !s.is_empty() && s.len() <= max;
    if !in_bounds(&raw.reference, 64) || raw.psp_reference.len() > 64 {
        return Err("reference or pspReference missing or too long");
    }
    if raw.idempotency_key.as_deref().is_some_and(|k| k.len() > 50) {
        return Err("idempotencyKey too long");
    }
    // NUL cannot be stored by PostgreSQL; refusing it here keeps Vipps from retrying forever.
    let has_nul = |s: &str| s.contains('\0');
    if has_nul(&raw.reference)
        || has_nul(&raw.psp_reference)
        || raw.idempotency_key.as_deref().is_some_and(has_nul)
    {
        return Err("control characters in reference, pspReference or idempotencyKey");
    }
    if raw.amount.value < 0 {
        return Err("negative amount");
    }
    mapping::event(&raw, EventSource::Webhook)
        .map_err(|_| "unknown event name, currency or timestamp")
}
