//! The HTTP sidecar: health now; webhooks and metrics join it.

use axum::{extract::State, http::StatusCode, routing::get, Router};

use crate::payments::Payments;

/// What the sidecar's handlers share.
#[derive(Clone)]
pub struct HttpState {
    payments: Payments,
}

impl HttpState {
    pub fn new(payments: Payments) -> Self {
        Self { payments }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// Ready when the database answers.
async fn ready(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    match state.payments.event_log().store().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
