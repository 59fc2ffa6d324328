//! Fault injection on the Vipps API routes: error statuses, rate limiting,
//! slow answers, lost responses (effect applied, answer replaced) and garbage bodies.

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::Emulator;

/// One fault rule; the JSON shape of `POST /emulator/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Fault {
    /// Substring of the request path (`"match"` in JSON); `None` matches every Vipps API path.
    #[serde(rename = "match")]
    pub path_contains: Option<String>,
    /// HTTP method to match (case-insensitive); `None` matches any.
    pub method: Option<String>,
    /// How many matching calls this rule affects; defaults to 1.
    pub count: u32,
    /// Status to answer with; `None` (and no `body`) means "only delay".
    pub status: Option<u16>,
    /// Sets `Retry-After` (useful with 429).
    pub retry_after_seconds: Option<u64>,
    /// Sleep this long before answering or processing.
    pub delay_ms: Option<u64>,
    /// Process the request (the effect happens) but answer the fault: a lost response.
    pub after_effect: bool,
    /// Raw body to send instead of a problem document, e.g. truncated JSON.
    pub body: Option<String>,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            path_contains: None,
            method: None,
            count: 1,
            status: None,
            retry_after_seconds: None,
            delay_ms: None,
            after_effect: false,
            body: None,
        }
    }
}

impl Fault {
    /// Checks what deserialisation cannot: a real status code and a positive count.
    pub fn validate(&self) -> Result<(), Problem> {
        if self.count == 0 {
            return Err(Problem::bad_request(
                "Invalid fault",
                "count must be at least 1",
            ));
        }
        if let Some(status) = self.status {
            if !(100..=599).contains(&status) {
                return Err(Problem::bad_request(
                    "Invalid fault",
                    "status must be an HTTP status code 100-599",
                ));
            }
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.path_contains
            .as_deref()
            .is_none_or(|needle| path.contains(needle))
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether this rule replaces the answer (otherwise it only delays).
    fn answers(&self) -> bool {
        self.status.is_some() || self.body.is_some()
    }

    fn response(&self) -> Response {
        // Only a body given: a 200 with that body (e.g. truncated JSON on success).
        let status = match self.status {
            Some(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            None => StatusCode::OK,
        };
        let mut response = match &self.body {
            Some(raw) => {
                let mut r = (status, raw.clone()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            None => Problem::new(status, "Injected fault", "Fault injected by the emulator")
                .into_response(),
        };
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Pending rules, consumed in order.
#[derive(Debug, Default)]
pub struct FaultQueue {
    rules: VecDeque<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, fault: Fault) {
        if fault.count > 0 {
            self.rules.push_back(fault);
        }
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn pending(&self) -> Vec<Fault> {
        self.rules.iter().cloned().collect()
    }

    /// The first rule matching this call, with its count decremented (and
    /// removed when used up).
    pub fn take(&mut self, method: &str, path: &str) -> Option<Fault> {
        let index = self
            .rules
            .iter()
            .position(|rule| rule.matches(method, path))?;
        let rule = self.rules.get_mut(index)?;
        rule.count = rule.count.saturating_sub(1);
        let taken = rule.clone();
        if rule.count == 0 {
            self.rules.remove(index);
        }
        Some(taken)
    }
}

/// Middleware on the Vipps API routes (never on `/emulator`).
pub async fn inject(State(emulator): State<Emulator>, request: Request, next: Next) -> Response {
    let Some(fault) = emulator.take_fault(request.method().as_str(), request.uri().path()) else {
        return next.run(request).await;
    };
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if !fault.answers() {
        return next.run(request).await;
    }
    if fault.after_effect {
        // The handler runs to completion, so the effect is applied; only its answer is lost.
        let lost = next.run(request).await;
        tracing::debug!(status = %lost.status(), "emulator fault: dropping the real response");
    }
    fault.response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn rule(path: Option<&str>, count: u32, status: u16) -> Fault {
        Fault {
            path_contains: path.map(str::to_string),
            count,
            status: Some(status),
            ..Fault::default()
        }
    }

    #[test]
    fn rules_are_consumed_in_order() {
        let mut queue = FaultQueue::default();
        queue.push(rule(Some("capture"), 2, 500));
        queue.push(rule(None, 1, 429));
        assert_eq!(
            queue
                .take("GET", "/epayment/v1/payments/x")
                .and_then(|f| f.status),
            Some(429)
        );
        assert_eq!(queue.take("GET", "/epayment/v1/payments/x"), None);
        assert_eq!(
            queue
                .take("POST", "/epayment/v1/payments/x/capture")
                .and_then(|f| f.status),
            Some(500)
        );
        assert_eq!(
            queue
                .take("POST", "/epayment/v1/payments/x/capture")
                .and_then(|f| f.status),
            Some(500)
        );
        assert_eq!(queue.take("POST", "/epayment/v1/payments/x/capture"), None);
    }

    #[test]
    fn method_filter_and_validation() {
        let mut queue = FaultQueue::default();
        queue.push(Fault {
            method: Some("post".into()),
            ..rule(None, 1, 503)
        });
        assert_eq!(queue.take("GET", "/x"), None);
        assert!(queue.take("POST", "/x").is_some());
        assert!(rule(None, 0, 500).validate().is_err());
        assert!(rule(None, 1, 600).validate().is_err());
        let json: Fault = serde_json::from_str(r#"{"match":"capture","status":500}"#).unwrap();
        assert_eq!(
            (json.count, json.path_contains.as_deref()),
            (1, Some("capture"))
        );
        assert!(serde_json::from_str::<Fault>(r#"{"stauts":500}"#).is_err());
    }
}
