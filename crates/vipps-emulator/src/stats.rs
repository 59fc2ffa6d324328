//! Request counters, so tests can see how often a client really called Vipps
//! (retries included, faulted calls included).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};

use super::Emulator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Token,
    Create,
    Get,
    Events,
    Capture,
    Refund,
    Cancel,
    Approve,
    Webhooks,
    Userinfo,
    Qr,
}

impl RequestKind {
    const ALL: [Self; 11] = [
        Self::Token,
        Self::Create,
        Self::Get,
        Self::Events,
        Self::Capture,
        Self::Refund,
        Self::Cancel,
        Self::Approve,
        Self::Webhooks,
        Self::Userinfo,
        Self::Qr,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Create => "create",
            Self::Get => "get",
            Self::Events => "events",
            Self::Capture => "capture",
            Self::Refund => "refund",
            Self::Cancel => "cancel",
            Self::Approve => "approve",
            Self::Webhooks => "webhooks",
            Self::Userinfo => "userinfo",
            Self::Qr => "qr",
        }
    }

    /// Which Vipps operation a request is, from its method and path; `None` for
    /// unknown paths and the emulator's own control API.
    pub fn classify(method: &Method, path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        let segments: Vec<&str> = lower.trim_end_matches('/').split('/').skip(1).collect();
        let post = method == Method::POST;
        let get = method == Method::GET;
        match segments.as_slice() {
            ["accesstoken", "get"] if post => Some(Self::Token),
            ["epayment", "v1", "payments"] if post => Some(Self::Create),
            ["epayment", "v1", "payments", _] if get => Some(Self::Get),
            ["epayment", "v1", "payments", _, "events"] if get => Some(Self::Events),
            ["epayment", "v1", "payments", _, "capture"] if post => Some(Self::Capture),
            ["epayment", "v1", "payments", _, "refund"] if post => Some(Self::Refund),
            ["epayment", "v1", "payments", _, "cancel"] if post => Some(Self::Cancel),
            ["epayment", "v1", "test", "payments", _, "approve"] if post => Some(Self::Approve),
            ["webhooks", "v1", "webhooks", ..] => Some(Self::Webhooks),
            ["vipps-userinfo-api", "userinfo", ..] => Some(Self::Userinfo),
            ["qr", "v1", ..] => Some(Self::Qr),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    requests: [AtomicU64; RequestKind::ALL.len()],
    tokens_issued: AtomicU64,
}

impl Stats {
    pub fn count(&self, kind: RequestKind) {
        if let Some(counter) = RequestKind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.requests.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// `{requests: {token: n, ...}, tokensIssued: n}`.
    pub fn to_json(&self) -> Value {
        let requests: serde_json::Map<String, Value> = RequestKind::ALL
            .iter()
            .zip(&self.requests)
            .map(|(kind, counter)| {
                (
                    kind.name().to_string(),
                    json!(counter.load(Ordering::Relaxed)),
                )
            })
            .collect();
        json!({ "requests": requests, "tokensIssued": self.tokens_issued.load(Ordering::Relaxed) })
    }
}

/// Outermost layer on the Vipps API routes: counts before faults are applied,
/// so a request answered by an injected fault is still counted.
pub async fn count_requests(
    State(emulator): State<Emulator>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(kind) = RequestKind::classify(request.method(), request.uri().path()) {
        emulator.stats_counters().count(kind);
    }
    next.run(request).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn classifies_vipps_paths() {
        let cases = [
            (Method::POST, "/accesstoken/get", Some(RequestKind::Token)),
            (Method::POST, "/accessToken/get", Some(RequestKind::Token)),
            (
                Method::POST,
                "/epayment/v1/payments",
                Some(RequestKind::Create),
            ),
            (
                Method::GET,
                "/epayment/v1/payments/order-1234",
                Some(RequestKind::Get),
            ),
            (
                Method::GET,
                "/epayment/v1/payments/order-1234/events",
                Some(RequestKind::Events),
            ),
            (
                Method::POST,
                "/epayment/v1/payments/order-1234/capture",
                Some(RequestKind::Capture),
            ),
            (
                Method::POST,
                "/epayment/v1/payments/order-1234/refund",
                Some(RequestKind::Refund),
            ),
            (
                Method::POST,
                "/epayment/v1/payments/order-1234/cancel",
                Some(RequestKind::Cancel),
            ),
            (
                Method::POST,
                "/epayment/v1/test/payments/order-1234/approve",
                Some(RequestKind::Approve),
            ),
            (
                Method::DELETE,
                "/webhooks/v1/webhooks/abc",
                Some(RequestKind::Webhooks),
            ),
            (
                Method::GET,
                "/vipps-userinfo-api/userinfo/c06c4afe-d9e1-4c5d-939a-177d752a0944",
                Some(RequestKind::Userinfo),
            ),
            (
                Method::PUT,
                "/qr/v1/merchant-redirect/stand-1",
                Some(RequestKind::Qr),
            ),
            (Method::GET, "/emulator/stats", None),
            (Method::GET, "/emulator/qr-images/abc.png", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                RequestKind::classify(&method, path),
                expected,
                "{method} {path}"
            );
        }
        let stats = Stats::default();
        stats.count(RequestKind::Capture);
        stats.count(RequestKind::Capture);
        assert_eq!(stats.to_json()["requests"]["capture"], 2);
    }
}
