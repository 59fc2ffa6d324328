//! The journal's rules, shared by every money-moving operation: a key seen before answers as it
//! did then (the same parameters, or a refusal), and an operation whose outcome is unknown is
//! sent again, unchanged.

use serde_json::json;

use super::Payments;
use crate::{
    domain::{
        operation::resend_backoff, Operation, OperationKind, OperationStatus, PaygateError, Payment,
    },
    vipps::{mapping, VippsError},
};

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
            OperationStatus::Pending => self.resend(op).await,
        }
    }

    /// Sends a pending operation again, if nobody else is sending it and its re-send time has
    /// come (one sender per operation, across replicas); otherwise answers what is known.
    pub(super) async fn resend(&self, mut op: Operation) -> Result<Payment, PaygateError> {
        if !self
            .store()
            .claim_send(op.id, self.lease_until_ms())
            .await?
        {
            return match self.store().operation(op.id).await? {
                Some(now) if now.status != OperationStatus::Pending => {
                    Box::pin(self.replay(now, &op.fingerprint)).await
                }
                _ => Err(PaygateError::Unavailable(format!(
                    "the {} with idempotency key {:?} is still being sent to Vipps; the outcome is \
                     unknown, retry later with the same key",
                    op.kind.as_str(),
                    op.idempotency_key
                ))),
            };
        }
        op.sends += 1;
        match op.kind {
            OperationKind::Create => self.send_create(op).await,
            _ => self.send_modification(op).await,
        }
    }

    /// After a send: a success or a final refusal settled the operation (which cleared its
    /// lease); any failure gives the lease back and schedules the next send (growing backoff, at
    /// least what Vipps' Retry-After asked). Releasing a settled operation changes nothing.
    pub(super) async fn after_send(
        &self,
        op: &Operation,
        result: Result<Payment, SendFailure>,
    ) -> Result<Payment, PaygateError> {
        let failure = match result {
            Ok(payment) => return Ok(payment),
            Err(failure) => failure,
        };
        let wait = resend_backoff(op.sends).max(failure.retry_after.unwrap_or_default());
        let next = chrono::Utc::now().timestamp_millis()
            + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
        if let Err(e) = self.store().release_send(op.id, next).await {
            // The lease then simply expires.
            tracing::warn!(operation = op.id, error = %e, "could not release a send lease");
        }
        Err(failure.error)
    }
}

/// Why a send did not settle its operation, and how long Vipps asked us to wait.
pub(super) struct SendFailure {
    pub error: PaygateError,
    pub retry_after: Option<std::time::Duration>,
}

impl SendFailure {
    pub fn from_vipps(e: &VippsError) -> Self {
        Self {
            error: mapping::error(e),
            retry_after: e.retry_after(),
        }
    }
}

impl From<PaygateError> for SendFailure {
    fn from(error: PaygateError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl From<crate::store::StoreError> for SendFailure {
    fn from(e: crate::store::StoreError) -> Self {
        PaygateError::from(e).into()
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
