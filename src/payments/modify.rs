//! CapturePayment, RefundPayment and CancelPayment.

use serde_json::json;

use super::{
    journal::{self, SendFailure},
    Payments,
};
use crate::{
    domain::{
        operation::fingerprint, Cancel, CaptureOrRefund, EventName, IdempotencyKey, Money,
        NewEvent, NewOperation, Operation, OperationKind, PaygateError, Payment, PaymentState,
        Reference,
    },
    store::{JournalEntry, Journaled, PaymentChange, Settlement},
    vipps::{mapping, models},
};

impl Payments {
    /// Captures `amount` (None: all that remains), exactly once per idempotency key.
    pub async fn capture(
        &self,
        cmd: CaptureOrRefund,
        caller: &str,
    ) -> Result<Payment, PaygateError> {
        let kind = OperationKind::Capture;
        self.modify(
            kind,
            &cmd.reference,
            cmd.amount,
            &cmd.idempotency_key,
            caller,
        )
        .await
    }

    /// Refunds `amount` (None: all captured and not yet refunded), exactly once per key.
    pub async fn refund(
        &self,
        cmd: CaptureOrRefund,
        caller: &str,
    ) -> Result<Payment, PaygateError> {
        let kind = OperationKind::Refund;
        self.modify(
            kind,
            &cmd.reference,
            cmd.amount,
            &cmd.idempotency_key,
            caller,
        )
        .await
    }

    /// Cancels: before authorization the payment ends (TERMINATED); after it, what was not
    /// captured is released (CANCELLED). The key defaults to the reference.
    pub async fn cancel(&self, cmd: Cancel, caller: &str) -> Result<Payment, PaygateError> {
        let key = cmd
            .idempotency_key
            .unwrap_or_else(|| IdempotencyKey::from(&cmd.reference));
        self.modify(OperationKind::Cancel, &cmd.reference, None, &key, caller)
            .await
    }

    async fn modify(
        &self,
        kind: OperationKind,
        reference: &Reference,
        amount: Option<Money>,
        key: &IdempotencyKey,
        caller: &str,
    ) -> Result<Payment, PaygateError> {
        let fingerprint = fingerprint(&json!({
            "amount": amount.map(|a| (a.currency.code(), a.value)),
        }));
        // A key seen before answers as it did then, whatever the payment's state is now.
        if let Some(op) = self
            .store()
            .find_operation(kind, reference.as_str(), key.as_str())
            .await?
        {
            return self.replay(op, &fingerprint).await;
        }
        let payment = self.get(reference).await?;
        let resolved = plan(kind, &payment, amount)?;
        let request = match resolved {
            Some(amount) => json!({ "modificationAmount": mapping::amount(amount) }),
            None => json!({}),
        };
        let op = NewOperation {
            kind,
            reference: reference.to_string(),
            idempotency_key: key.as_str().to_owned(),
            fingerprint: fingerprint.clone(),
            request,
            lease_until_ms: self.lease_until_ms(),
            caller: caller.to_owned(),
        };
        match self.log.journal(JournalEntry::Operation(op)).await? {
            Journaled::Started(op) => self.send_modification(op).await,
            Journaled::Existing(op) => self.replay(op, &fingerprint).await,
        }
    }

    /// Sends a journalled capture, refund or cancel (again) and records what Vipps said.
    pub(super) async fn send_modification(&self, op: Operation) -> Result<Payment, PaygateError> {
        let result = self.try_modification(&op).await;
        self.after_send(&op, result).await
    }

    async fn try_modification(&self, op: &Operation) -> Result<Payment, SendFailure> {
        let reference = op.reference.as_str();
        let before = self.store().get_payment(reference).await?.ok_or_else(|| {
            PaygateError::NotFound(format!("no payment with reference {reference}"))
        })?;
        let amount: Option<models::Amount> = op
            .request
            .get("modificationAmount")
            .map(|a| serde_json::from_value(a.clone()))
            .transpose()
            .map_err(|e| PaygateError::Internal(format!("journalled request: {e}")))?;
        let key = op.idempotency_key.as_str();
        crate::crashpoint::hit("before_upstream");
        let answer = match (op.kind, &amount) {
            (OperationKind::Capture, Some(a)) => {
                self.vipps.capture_payment(reference, a, key).await
            }
            (OperationKind::Refund, Some(a)) => self.vipps.refund_payment(reference, a, key).await,
            (OperationKind::Cancel, _) => self.vipps.cancel_payment(reference, key).await,
            _ => {
                return Err(PaygateError::Internal("malformed journalled operation".into()).into())
            }
        };
        crate::crashpoint::hit("after_upstream");
        match answer {
            Ok(answer) => {
                let view = mapping::view_of_modification(&answer)?;
                // The journalled amount is in the payment's currency (checked before it was
                // journalled); only its value travels back.
                let currency = before.amount.currency;
                let (name, moved) = match (op.kind, &amount) {
                    (OperationKind::Capture, Some(a)) => {
                        (EventName::Captured, Money::new(currency, a.value))
                    }
                    (OperationKind::Refund, Some(a)) => {
                        (EventName::Refunded, Money::new(currency, a.value))
                    }
                    _ if view.state == PaymentState::Terminated => {
                        (EventName::Terminated, before.amount)
                    }
                    _ => {
                        let released = view.aggregate.cancelled - before.aggregate.cancelled;
                        (EventName::Cancelled, Money::new(currency, released.max(0)))
                    }
                };
                let event = NewEvent::own(reference, name, moved, &answer.psp_reference, key);
                let change = PaymentChange {
                    reference: op.reference.clone(),
                    events: vec![event],
                    remote: Some(view),
                    settle: Some((op.id, Settlement::Succeeded)),
                    ..PaymentChange::default()
                };
                self.log
                    .commit(change)
                    .await?
                    .payment
                    .ok_or_else(|| PaygateError::Internal("payment vanished".into()).into())
            }
            Err(e) if e.is_final_refusal() => {
                let error = mapping::error(&e);
                let change = PaymentChange {
                    reference: op.reference.clone(),
                    settle: Some((op.id, Settlement::Rejected(journal::stored_refusal(&error)))),
                    ..PaymentChange::default()
                };
                self.log.commit(change).await?;
                Err(error.into())
            }
            Err(e) => {
                tracing::warn!(reference, operation = op.kind.as_str(), error = %e, outcome_unknown = e.outcome_unknown(), "not done; left pending");
                Err(SendFailure::from_vipps(&e))
            }
        }
    }
}

/// Checks what the payment's state allows and returns the amount to send (None for cancel).
fn plan(
    kind: OperationKind,
    p: &Payment,
    amount: Option<Money>,
) -> Result<Option<Money>, PaygateError> {
    let refuse = |why: String| Err(PaygateError::FailedPrecondition(why));
    let reference = &p.reference;
    if let Some(a) = amount {
        if a.currency != p.amount.currency {
            return Err(PaygateError::invalid(
                "amount.currency",
                format!("must be the payment's currency {}", p.amount.currency),
            ));
        }
    }
    match kind {
        OperationKind::Capture => {
            match p.state {
                PaymentState::Authorized => {}
                PaymentState::Created => {
                    return refuse(format!(
                        "payment {reference} is not authorized yet (state CREATED): the customer has not approved it"
                    ))
                }
                other => {
                    return refuse(format!(
                        "payment {reference} is {}: there is nothing to capture",
                        other.as_str()
                    ))
                }
            }
            if p.aggregate.cancelled > 0 {
                return refuse(format!("payment {reference} was cancelled: cannot capture a cancelled payment"));
            }
            let remaining = p.capturable();
            if remaining == 0 {
                return refuse(format!("payment {reference} is fully captured: nothing remains to capture"));
            }
            let value = amount.map_or(remaining, |a| a.value);
            if value > remaining {
                return refuse(format!(
                    "capture of {value} exceeds the {remaining} that remains to capture on {reference}"
                ));
            }
            Ok(Some(Money::new(p.amount.currency, value)))
        }
        OperationKind::Refund => {
            let remaining = p.refundable();
            if remaining == 0 {
                return refuse(format!(
                    "payment {reference} has nothing captured that is not already refunded"
                ));
            }
            let value = amount.map_or(remaining, |a| a.value);
            if value > remaining {
                return refuse(format!(
                    "refund of {value} exceeds the {remaining} captured and not yet refunded on {reference}"
                ));
            }
            Ok(Some(Money::new(p.amount.currency, value)))
        }
        OperationKind::Cancel => match p.state {
            PaymentState::Created => Ok(None),
            PaymentState::Authorized if p.aggregate.cancelled > 0 => {
                refuse(format!("payment {reference} is already cancelled"))
            }
            PaymentState::Authorized if p.capturable() == 0 => refuse(format!(
                "payment {reference} is fully captured: cannot cancel a captured payment (refund it instead)"
            )),
            PaymentState::Authorized => Ok(None),
            other => refuse(format!(
                "payment {reference} is {}: there is nothing to cancel",
                other.as_str()
            )),
        },
        OperationKind::Create => Err(PaygateError::Internal("create is not a modification".into())),
    }
}
