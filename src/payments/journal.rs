//! The journal's rules, shared by every money-moving operation: a key seen before answers as it
//! did then (the same parameters, or a refusal), and an operation whose outcome is unknown is
//! sent again, unchanged.

use serde_json::json;

use super::Payments;
use crate::domain::{Operation, OperationKind, OperationStatus, PaygateError, Payment};

impl Payments {
    /// Answers a repeated idempotency key: the stored outcome, or a re-send while pending.
    pub(super) async fn replay(
        &self,
        op: Operation,
        fingerprint: &str,
    ) -> Result<Payment, PaygateError> {
        check_same_request(&op, fingerprint)?;
        match op.status {
            OperationStatus::Succeeded => replay_payment(&op),
            OperationStatus::Rejected => Err(replay_refusal(op.outcome.as_ref())),
            OperationStatus::Pending if op.kind == OperationKind::Create => {
                self.send_create(op).await
            }
            OperationStatus::Pending => self.send_modification(op).await,
        }
    }
}

/// The same idempotency key with other parameters is a caller bug, never a retry.
fn check_same_request(op: &Operation, fingerprint: &str) -> Result<(), PaygateError> {
    if op.fingerprint == fingerprint {
        return Ok(());
    }
    Err(PaygateError::FailedPrecondition(format!(
        "idempotency key {:?} was already used for a different {} request on {}; use a new key for a new request",
        op.idempotency_key,
        op.kind.as_str(),
        op.reference
    )))
}

/// The payment as the first successful call returned it.
fn replay_payment(op: &Operation) -> Result<Payment, PaygateError> {
    op.outcome
        .clone()
        .and_then(|o| serde_json::from_value::<Option<Payment>>(o).ok().flatten())
        .ok_or_else(|| PaygateError::Internal("journalled outcome unreadable".into()))
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
