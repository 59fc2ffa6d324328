//! The HTTP sidecar: Vipps webhooks, health.

use axum::{
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    routing::{get, post},
    Router,
};

use crate::{
    payments::Payments,
    webhooks::{self, WebhookIngest},
};

/// Webhook bodies are small JSON documents; anything bigger is refused with 413.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// What the sidecar's handlers share.
#[derive(Clone)]
pub struct HttpState {
    payments: Payments,
    ingest: WebhookIngest,
}

impl HttpState {
    pub fn new(payments: Payments, ingest: WebhookIngest) -> Self {
        Self { payments, ingest }
    }
}

pub fn router(state: HttpState) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/vipps", post(webhooks::receive))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .with_state(state.ingest.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
        .merge(webhooks)
}

/// Ready when the database answers and a webhook secret is in place.
async fn ready(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if !state.ingest.verifier.has_secret() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no webhook secret yet");
    }
    match state.payments.event_log().store().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
