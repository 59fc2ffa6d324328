//! The HTTP sidecar: Vipps webhooks, health, metrics. None of it is behind the API token: the
//! webhook is authenticated by its signature, and probes and scrapers need no secret.
//!
//! Because it is open, it is bounded: a client must send its request headers within
//! `PAYGATE_HTTP_HEADER_TIMEOUT_MS`, a webhook must be done within `PAYGATE_WEBHOOK_TIMEOUT_MS`,
//! and at most `PAYGATE_HTTP_MAX_CONNECTIONS` connections are open at once.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    config,
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

pub fn router(state: HttpState, limits: &config::Http) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/vipps", post(webhooks::receive))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            limits.webhook_timeout,
            webhook_deadline,
        ))
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

/// Bounds a webhook request, body and commit included: a client that trickles its body, or a
/// commit stuck behind a locked database, gets 503 and Vipps retries. Nothing is left half
/// recorded: the commit is a job of the group-commit writer, done whole or not at all; if it
/// lands after the 503, the retry is answered "duplicate".
async fn webhook_deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("paygate_webhooks_rejected_total", "reason" => "timeout")
                .increment(1);
            tracing::warn!("webhook not done within PAYGATE_WEBHOOK_TIMEOUT_MS; Vipps will retry");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored in time (PAYGATE_WEBHOOK_TIMEOUT_MS), retry later",
            )
                .into_response()
        }
    }
}

/// Serves the sidecar on `listener` until `shutdown` fires; then stops accepting and lets the
/// requests in flight finish (the caller bounds that by the shutdown grace).
///
/// HTTP/1 only: hyper's header read timeout exists only for HTTP/1, and detecting HTTP/2 reads
/// the first bytes without any timer, so a client that connects and sends nothing would never
/// be cut off. Vipps, Kubernetes probes and Prometheus all speak HTTP/1.1.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &config::Http,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let graceful = GracefulShutdown::new();
    while let Some(stream) = accept(&listener, &shutdown).await {
        // Over the cap a connection is closed at once: the client learns immediately and
        // retries (Vipps does), instead of waiting unseen in the kernel's accept queue.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!("paygate_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "sidecar connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The next connection, or None once `shutdown` fires. A failed accept that concerns one
/// connection is skipped; any other (out of file descriptors) is logged and retried after a
/// pause, rather than spinning.
async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<tokio::net::TcpStream> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok((stream, _)) => {
                // Nagle off: an answer is one small write, sent at once instead of after the
                // client's delayed ACK.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot turn Nagle off on a sidecar connection");
                }
                return Some(stream);
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP sidecar cannot accept connections");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = accept(&listener, &CancellationToken::new())
            .await
            .expect("a connection");
        assert!(accepted.nodelay().expect("TCP_NODELAY readable"));
    }
}
