//! What can go wrong when calling Vipps, shaped by what the caller must do next.
//!
//! The split that matters for money: `Rejected`, `RateLimited`, `Auth` and `Config` mean the
//! request did not take effect; `Unavailable` and `Decode` mean it may have
//! ([`VippsError::outcome_unknown`]), so the caller must look the payment up before acting again.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// An error body from Vipps. The APIs disagree on its shape (ePayment RFC 7807 with `traceId`,
/// Webhooks with `extraDetails`, QR with `instance` and `invalidParams`, Userinfo with `status`
/// as a string, Azure API Management with `{statusCode, message}`); all of them parse into this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawProblem")]
pub struct Problem {
    /// `type`: the stable identifier of the error (titles may change wording).
    pub type_: Option<String>,
    pub title: String,
    pub detail: Option<String>,
    pub status: Option<u16>,
    /// `traceId`, or `instance` where the API uses that instead: quote it to Vipps support.
    pub trace_id: Option<String>,
    /// `(name, reason)` pairs from `extraDetails`, `invalidParams` or `extraInfo`.
    pub extra_details: Vec<(String, String)>,
}

impl Problem {
    /// Reads any error body. A body that is not a JSON object is kept (shortened) as `detail`,
    /// so a proxy's HTML page still says something useful.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Self {
        let reason = canonical_reason(status);
        match serde_json::from_slice::<Problem>(body) {
            Ok(mut p) => {
                if p.title.is_empty() {
                    p.title = reason;
                }
                p
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                Problem {
                    title: reason,
                    detail: (!text.is_empty()).then(|| shorten(text, 500)),
                    status: Some(status),
                    ..Problem::default()
                }
            }
        }
    }
}

impl fmt::Display for Problem {
    /// Upstream texts can quote what we sent (e.g. "Invalid phone number 4791234567"), and
    /// errors end up in logs, so long digit runs are masked here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_digits(&self.title))?;
        if let Some(detail) = &self.detail {
            write!(f, ": {}", redact_digits(detail))?;
        }
        for (name, reason) in &self.extra_details {
            write!(f, "; {name}: {}", redact_digits(reason))?;
        }
        if let Some(id) = &self.trace_id {
            write!(f, " (trace {id})")?;
        }
        Ok(())
    }
}

/// The wire shapes before normalisation. Every field is a loose `Value` so one odd field
/// (a number where a string was expected) does not lose the whole error.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawProblem {
    #[serde(rename = "type")]
    type_: Option<Value>,
    title: Option<Value>,
    detail: Option<Value>,
    status: Option<Value>,
    #[serde(rename = "traceId")]
    trace_id: Option<Value>,
    instance: Option<Value>,
    #[serde(rename = "extraDetails")]
    extra_details: Option<Value>,
    #[serde(rename = "invalidParams")]
    invalid_params: Option<Value>,
    #[serde(rename = "extraInfo")]
    extra_info: Option<Value>,
    /// Azure API Management (401/403/429 in front of the APIs).
    message: Option<Value>,
    #[serde(rename = "statusCode")]
    status_code: Option<Value>,
}

impl From<RawProblem> for Problem {
    fn from(raw: RawProblem) -> Self {
        let mut extra_details = Vec::new();
        for list in [raw.extra_details, raw.invalid_params]
            .into_iter()
            .flatten()
        {
            if let Value::Array(items) = list {
                for item in items {
                    let name = item.get("name").and_then(as_text).unwrap_or_default();
                    let reason = item.get("reason").and_then(as_text).unwrap_or_default();
                    extra_details.push((name, reason));
                }
            }
        }
        if let Some(Value::Object(map)) = raw.extra_info {
            for (name, value) in map {
                extra_details.push((name, as_text(&value).unwrap_or_else(|| value.to_string())));
            }
        }
        Problem {
            type_: raw.type_.as_ref().and_then(as_text),
            title: raw
                .title
                .as_ref()
                .or(raw.message.as_ref())
                .and_then(as_text)
                .unwrap_or_default(),
            detail: raw.detail.as_ref().and_then(as_text),
            status: raw.status.or(raw.status_code).as_ref().and_then(as_status),
            trace_id: raw
                .trace_id
                .as_ref()
                .or(raw.instance.as_ref())
                .and_then(as_text),
            extra_details,
        }
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Userinfo sends `"status": "400"`, the others a number.
fn as_status(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn canonical_reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or_else(|| format!("HTTP {status}"), str::to_owned)
}

/// At most `max` characters, marked when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// Masks runs of 8–15 digits (phone-number length, MSISDN with or without country code) but
/// the last two, so error texts from upstream can be logged without full phone numbers.
pub(crate) fn redact_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if (8..=15).contains(&run.len()) {
            let keep = run.len() - 2;
            out.extend(std::iter::repeat_n('*', keep));
            out.push_str(&run[keep..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// What a 4xx from Vipps means for the request. The one place that decides it: the client
/// retries what is not final, and the payment service stores only final refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Decides the request (validation, "Capture amount too high", "Reference not found",
    /// idempotency conflicts, …): it did not and will not take effect under this key.
    Final,
    /// Vipps is busy with this payment: 423 Locked, or the FAQ's "Order processing" (too many
    /// concurrent requests) and "Cannot cancel pending". Vipps' advice: retry with the same
    /// Idempotency-Key. An earlier attempt may still be in progress, so the outcome is unknown.
    Transient,
    /// 429 Too Many Requests: retry later with the same key.
    RateLimited,
}

/// Titles (or details) of refusals that only mean "not now" (REFERENCE.md, ePayment errors).
const TRANSIENT_TITLES: &[&str] = &["order processing", "cannot cancel pending"];

/// Classifies a 4xx answer by status and problem text (`type` would be more stable, but Vipps
/// documents only titles for these).
pub fn classify(status: u16, problem: &Problem) -> Refusal {
    match status {
        429 => Refusal::RateLimited,
        423 => Refusal::Transient,
        _ => {
            let says = |text: &str| {
                let text = text.to_ascii_lowercase();
                TRANSIENT_TITLES.iter().any(|t| text.contains(t))
            };
            if says(&problem.title) || problem.detail.as_deref().is_some_and(says) {
                Refusal::Transient
            } else {
                Refusal::Final
            }
        }
    }
}

/// Failure of a Vipps call.
#[derive(Debug, thiserror::Error)]
pub enum VippsError {
    /// A final refusal ([`Refusal::Final`]; problem+json parsed when possible, other bodies kept
    /// as detail). Never retried; the request did not take effect.
    #[error("Vipps refused the request with HTTP {status}: {problem}")]
    Rejected { status: u16, problem: Problem },
    /// A transient refusal ([`Refusal::Transient`]) still after retries: not decided, and an
    /// earlier attempt may still be in progress at Vipps (outcome unknown).
    #[error("Vipps is still busy with this payment (HTTP {status}): {problem}")]
    Busy { status: u16, problem: Problem },
    /// 429 still after retries (or a `Retry-After` beyond the time budget). Not taken effect.
    #[error("Vipps rate limit still in force{}", fmt_retry_after(*.retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        problem: Option<Problem>,
    },
    /// 5xx, connect error, timeout, after retries: for a money-moving call the outcome is UNKNOWN.
    #[error("Vipps unavailable{}: {message}", fmt_status(*.status))]
    Unavailable {
        status: Option<u16>,
        message: String,
    },
    /// 2xx whose body did not parse: the call took effect but the answer is unreadable.
    #[error("Vipps answered HTTP {status} with an unreadable body: {message}")]
    Decode { status: u16, message: String },
    /// The access token could not be obtained (bad credentials etc.); nothing else was sent.
    #[error("no Vipps access token{}: {message}", fmt_status(*.status))]
    Auth {
        status: Option<u16>,
        message: String,
    },
    /// Bad configuration (base URL, header values) or an invalid argument such as an
    /// Idempotency-Key that cannot be sent; nothing was sent.
    #[error("invalid Vipps client configuration: {0}")]
    Config(String),
}

impl VippsError {
    /// True when the request may have taken effect although no success was seen: the caller
    /// must reconcile (GET the payment) rather than assume failure.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Decode { .. } | Self::Busy { .. }
        )
    }

    /// Whether Vipps decided the request for good (a final refusal), so the refusal may be
    /// stored and replayed. 401/403 are about paygate's own credentials, not the request.
    pub fn is_final_refusal(&self) -> bool {
        matches!(self, Self::Rejected { status, .. } if !matches!(status, 401 | 403))
    }

    /// How long Vipps asked us to wait before trying again (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status behind the error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. }
            | Self::Busy { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            Self::Unavailable { status, .. } | Self::Auth { status, .. } => *status,
            Self::Config(_) => None,
        }
    }
}

fn fmt_status(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn fmt_retry_after(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (retry after {} s)", d.as_secs_f64()))
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn epayment_problem() {
        let body = br#"{"type":"https://developer.vippsmobilepay.com/docs/APIs/epayment-api/errors","title":"Bad Request","detail":"Amount too small","status":400,"traceId":"abc-123","extraDetails":[{"name":"amount.value","reason":"must be >= 100"}]}"#;
        let p = Problem::from_body(400, body);
        assert_eq!(p.title, "Bad Request");
        assert_eq!(p.detail.as_deref(), Some("Amount too small"));
        assert_eq!(p.status, Some(400));
        assert_eq!(p.trace_id.as_deref(), Some("abc-123"));
        assert_eq!(
            p.extra_details,
            vec![("amount.value".to_owned(), "must be >= 100".to_owned())]
        );
    }

    #[test]
    fn userinfo_status_string_and_qr_instance() {
        let p = Problem::from_body(
            404,
            br#"{"type":"x","title":"Not found","status":"404","detail":"d","instance":"i-1"}"#,
        );
        assert_eq!(p.status, Some(404));
        assert_eq!(p.trace_id.as_deref(), Some("i-1"));
        let p = Problem::from_body(
            400,
            br#"{"title":"Validation","detail":"BadRequest","instance":"00-1","invalidParams":[{"name":"RedirectUrl","reason":"bad"}]}"#,
        );
        assert_eq!(p.extra_details, vec![("RedirectUrl".into(), "bad".into())]);
    }

    #[test]
    fn apim_and_non_json_bodies() {
        let p = Problem::from_body(401, br#"{"statusCode":401,"message":"Access denied"}"#);
        assert_eq!((p.title.as_str(), p.status), ("Access denied", Some(401)));
        let p = Problem::from_body(403, b"<html>Forbidden</html>");
        assert_eq!(p.title, "Forbidden");
        assert_eq!(p.detail.as_deref(), Some("<html>Forbidden</html>"));
        let p = Problem::from_body(409, b"");
        assert_eq!((p.title.as_str(), p.detail), ("Conflict", None));
    }

    #[test]
    fn display_masks_phone_numbers() {
        let p = Problem {
            title: "Invalid phone number".into(),
            detail: Some("4791234567 is not a user; ref 123".into()),
            ..Problem::default()
        };
        assert_eq!(
            p.to_string(),
            "Invalid phone number: ********67 is not a user; ref 123"
        );
    }

    /// Every ePayment error title REFERENCE.md lists, and the statuses, classified.
    #[test]
    fn refusals_are_classified_in_one_place() {
        let final_titles = [
            "Amount too small",
            "Amount invalid",
            "Capture amount too high",
            "Cannot capture before reservation",
            "Cannot capture a cancelled payment",
            "Capture period expired",
            "Capture idempotency conflict",
            "Cannot cancel a captured payment",
            "Cannot cancel a non-reserved payment",
            "Not enough refundable",
            "Payment already refunded",
            "Refund idempotency conflict",
            "Invalid phone number",
            "Customer not found",
            "Idempotency error: Reference acme-1 already exists",
            "Idempotency error: Idempotency-Key k1 already exists",
            "Reference not found",
            "Missing required parameter",
            "Invalid URL",
            "Skip landing page not allowed",
            "Long-living payment not allowed",
            "Invalid scope",
            "Illegal scope",
            "Approve failed",
            "Expiration date invalid",
            "ExpiresAt not allowed",
        ];
        let problem = |title: &str| Problem {
            title: title.into(),
            ..Problem::default()
        };
        for title in final_titles {
            for status in [400, 404, 409] {
                assert_eq!(classify(status, &problem(title)), Refusal::Final, "{title}");
            }
        }
        for title in ["Order processing", "Cannot cancel pending"] {
            for status in [400, 409] {
                assert_eq!(
                    classify(status, &problem(title)),
                    Refusal::Transient,
                    "{title}"
                );
            }
        }
        let in_detail = Problem {
            title: "Conflict".into(),
            detail: Some("Order processing: too many concurrent requests".into()),
            ..Problem::default()
        };
        assert_eq!(classify(409, &in_detail), Refusal::Transient);
        assert_eq!(classify(423, &problem("Locked")), Refusal::Transient);
        assert_eq!(
            classify(429, &problem("Too many requests")),
            Refusal::RateLimited
        );
        assert_eq!(classify(409, &problem("Conflict")), Refusal::Final);
    }

    #[test]
    fn outcome_and_status() {
        let e = VippsError::Unavailable {
            status: Some(503),
            message: "x".into(),
        };
        assert!(e.outcome_unknown());
        assert_eq!(e.status(), Some(503));
        let e = VippsError::Rejected {
            status: 409,
            problem: Problem::default(),
        };
        assert!(!e.outcome_unknown());
        assert_eq!(e.status(), Some(409));
    }
}
