//! Error responses in the two shapes Vipps uses.
//!
//! Merchant APIs answer RFC 7807 `application/problem+json`; authentication
//! failures come from Azure API Management in its own non-problem JSON. Clients
//! must cope with both, so the emulator reproduces both.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// Where problem `type` URIs point; clients should match on `type`, not `title`.
const PROBLEM_TYPE_BASE: &str =
    "https://developer.vippsmobilepay.com/docs/APIs/epayment-api/errors#";

/// An RFC 7807 problem with a Vipps-style title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    /// Stable `type` slug for titles that embed variable text; derived from the title otherwise.
    pub kind: Option<&'static str>,
    /// Per-field reasons (`extraDetails`, newer ePayment versions); omitted when empty.
    pub extra_details: Vec<ExtraDetail>,
}

/// One `extraDetails` entry: which field, and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraDetail {
    pub name: String,
    pub reason: String,
}

impl Problem {
    pub fn new(status: StatusCode, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: detail.into(),
            kind: None,
            extra_details: Vec::new(),
        }
    }

    pub fn with_extra_details(mut self, details: Vec<ExtraDetail>) -> Self {
        self.extra_details = details;
        self
    }

    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn bad_request(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, title, detail)
    }

    pub fn conflict(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, title, detail)
    }

    pub fn missing(what: &str) -> Self {
        Self::bad_request("Missing required parameter", format!("{what} is required"))
    }

    pub fn reference_not_found(reference: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Reference not found",
            format!("No payment with reference '{reference}'"),
        )
    }

    /// The problem JSON body (also used for injected faults).
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "type": format!("{PROBLEM_TYPE_BASE}{}", self.kind.map_or_else(|| slug(&self.title), str::to_string)),
            "title": self.title,
            "detail": self.detail,
            "status": self.status.as_u16(),
            "traceId": uuid::Uuid::new_v4().to_string(),
        });
        if !self.extra_details.is_empty() {
            body["extraDetails"] = json!(self.extra_details);
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body().to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// Anything an API handler can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Problem(Problem),
    /// 401 in the API Management gateway's format (not a problem document).
    Unauthorized(&'static str),
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "statusCode": 401, "message": message })),
            )
                .into_response(),
        }
    }
}

/// "Capture amount too high" -> "capture-amount-too-high".
fn slug(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn slug_is_uri_safe() {
        assert_eq!(slug("Capture amount too high"), "capture-amount-too-high");
        assert_eq!(
            slug("Idempotency error: Reference x already exists"),
            "idempotency-error-reference-x-already-exists"
        );
    }

    #[test]
    fn body_has_required_fields() {
        let body = Problem::bad_request("Amount too small", "min 100").body();
        for field in ["type", "title", "detail", "status", "traceId"] {
            assert!(body.get(field).is_some(), "{field}");
        }
        assert_eq!(body["status"], 400);
        assert!(body.get("extraDetails").is_none());
        let detailed = Problem::bad_request("Invalid receipt", "x")
            .with_extra_details(vec![ExtraDetail {
                name: "receipt.orderLines".into(),
                reason: "at least one".into(),
            }])
            .body();
        assert_eq!(detailed["extraDetails"][0]["name"], "receipt.orderLines");
    }
}
