//! How store and Vipps failures become service errors, and how refusals are stored for replay.

use serde_json::json;

use crate::{domain::PaygateError, store::StoreError, vipps::VippsError};

impl From<StoreError> for PaygateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReferenceTaken(r) => PaygateError::AlreadyExists(format!(
                "reference {r} is already used by another payment request"
            )),
            StoreError::SecondWriter(why) => PaygateError::Unavailable(why),
            StoreError::Corrupt(why) => PaygateError::Internal(format!("stored data: {why}")),
            StoreError::Db(_) | StoreError::Sqlx(_) | StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "database failure");
                PaygateError::Unavailable("the database is unavailable; retry later".into())
            }
        }
    }
}

/// The service error for a Vipps failure.
pub fn from_vipps(e: &VippsError) -> PaygateError {
    match e {
        VippsError::Rejected { status: 401 | 403, .. } => PaygateError::Unavailable(
            "Vipps refused paygate's credentials; an operator must check the VIPPS_* settings".into(),
        ),
        VippsError::Rejected { status, problem } => {
            // Display masks digit runs: upstream texts may quote a phone number.
            let message = format!("Vipps refused the request: {problem}");
            match status {
                404 => PaygateError::NotFound(message),
                _ => PaygateError::FailedPrecondition(message),
            }
        }
        VippsError::RateLimited { .. } => PaygateError::ResourceExhausted(
            "Vipps is rate limiting paygate; retry later with the same idempotency key".into(),
        ),
        VippsError::Unavailable { .. } | VippsError::Decode { .. } => PaygateError::Unavailable(
            "Vipps did not answer in time; the outcome is unknown, retry with the same idempotency key"
                .into(),
        ),
        VippsError::Auth { .. } => PaygateError::Unavailable(
            "paygate could not authenticate with Vipps; retry later".into(),
        ),
        VippsError::Config(why) => PaygateError::Internal(format!("Vipps client configuration: {why}")),
    }
}

/// Whether Vipps definitely refused this request (so the refusal is final and replayed).
/// 401/403 mean paygate's own credentials are wrong: nothing about the payment is decided.
pub fn definite_refusal(e: &VippsError) -> bool {
    matches!(e, VippsError::Rejected { status, .. } if !matches!(status, 401 | 403))
}

/// A refusal as stored in the journal, so a retry gets the same answer.
pub fn stored_refusal(e: &PaygateError) -> serde_json::Value {
    let (code, message) = match e {
        PaygateError::NotFound(m) => ("not_found", m.clone()),
        PaygateError::AlreadyExists(m) => ("already_exists", m.clone()),
        other => ("failed_precondition", other.to_string()),
    };
    json!({ "code": code, "message": message })
}

/// The service error a stored refusal replays as.
pub fn replay_refusal(stored: Option<&serde_json::Value>) -> PaygateError {
    let code = stored
        .and_then(|s| s.get("code"))
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    let message = stored
        .and_then(|s| s.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or("Vipps refused the request")
        .to_owned();
    match code {
        "not_found" => PaygateError::NotFound(message),
        "already_exists" => PaygateError::AlreadyExists(message),
        _ => PaygateError::FailedPrecondition(message),
    }
}
