//! The HTTP sidecar: Vipps webhooks, health, metrics. None of it is behind the API token: the
//! webhook is authenticated by its signature, and probes and scrapers need no secret.

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, StatusCode},
    response::IntoResponse,
    routing::{get, post},
    Router,
};

use crate::{
    health::Readiness,
    telemetry::prometheus,
    webhooks::{self, WebhookIngest},
};

/// Webhook bodies are small JSON documents; anything bigger is refused with 413.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// What the sidecar's handlers share.
#[derive(Clone)]
pub struct HttpState {
    readiness: Readiness,
    ingest: WebhookIngest,
}

impl HttpState {
    pub fn new(readiness: Readiness, ingest: WebhookIngest) -> Self {
        Self { readiness, ingest }
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
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(webhooks)
}

/// Ready when the database answers, a webhook secret is in place and paygate is not draining.
async fn ready(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus::render(),
    )
}
