//! CreatePaymentRequest.

use chrono::Utc;
use serde_json::json;

use super::{
    journal::{self, SendFailure},
    Payments,
};
use crate::{
    domain::{
        operation::fingerprint, Aggregate, CreatePayment, CustomerKey, EventName, IdempotencyKey,
        NewEvent, NewOperation, Operation, OperationKind, PaygateError, Payment, PaymentState,
        PhoneNumber, Reference, RemoteView, UserFlow,
    },
    store::{JournalEntry, Journaled, PaymentChange, Settlement},
    vipps::{mapping, models},
};

impl Payments {
    /// Creates a payment request, exactly once per idempotency key; `caller` is journalled.
    pub async fn create(
        &self,
        mut cmd: CreatePayment,
        caller: &str,
    ) -> Result<Payment, PaygateError> {
        // The fingerprint covers what the caller sent, before paygate fills in defaults.
        let fingerprint = fingerprint(&create_params(&cmd));
        if cmd.user_flow == UserFlow::PushMessage && cmd.phone_number.is_none() {
            cmd.phone_number = Some(self.known_phone(cmd.customer_key.as_ref()).await?);
        }
        let reference = cmd.reference.clone().unwrap_or_else(Reference::generate);
        let key = cmd
            .idempotency_key
            .clone()
            .unwrap_or_else(|| IdempotencyKey::from(&reference));
        let body = mapping::create_request(&cmd, &reference);
        let request = serde_json::to_value(&body)
            .map_err(|e| PaygateError::Internal(format!("encoding the create request: {e}")))?;
        let now = Utc::now();
        let payment = Payment {
            reference: reference.clone(),
            psp_reference: String::new(),
            state: PaymentState::Created,
            amount: cmd.amount,
            aggregate: Aggregate::default(),
            user_flow: cmd.user_flow,
            redirect_url: None,
            customer_key: cmd.customer_key.as_ref().map(|k| k.as_str().to_owned()),
            phone_number: cmd.phone_number.clone(),
            profile_sub: None,
            metadata: cmd.metadata.clone(),
            create_time: now,
            update_time: now,
        };
        let op = NewOperation {
            kind: OperationKind::Create,
            reference: reference.to_string(),
            idempotency_key: key.as_str().to_owned(),
            fingerprint: fingerprint.clone(),
            request,
            lease_until_ms: self.lease_until_ms(),
            caller: caller.to_owned(),
        };
        let start = JournalEntry::Create {
            payment: Box::new(payment),
            wants_profile: !cmd.profile_scopes.is_empty(),
            op,
        };
        match self.log.journal(start).await? {
            Journaled::Started(op) => self.send_create(op).await,
            Journaled::Existing(op) => self.replay(op, &fingerprint).await,
        }
    }

    /// Sends a journalled create (again, after an unknown outcome) and records what Vipps said;
    /// the caller holds the operation's send lease.
    pub(super) async fn send_create(&self, op: Operation) -> Result<Payment, PaygateError> {
        let result = self.try_create(&op).await;
        self.after_send(&op, result).await
    }

    async fn try_create(&self, op: &Operation) -> Result<Payment, SendFailure> {
        let body: models::CreatePaymentRequest = serde_json::from_value(op.request.clone())
            .map_err(|e| PaygateError::Internal(format!("journalled create request: {e}")))?;
        let amount = mapping::money(&body.amount)?;
        crate::crashpoint::hit("before_upstream");
        let answer = self.vipps.create_payment(&body, &op.idempotency_key).await;
        crate::crashpoint::hit("after_upstream");
        match answer {
            Ok(answer) => {
                let change = PaymentChange {
                    reference: op.reference.clone(),
                    events: vec![NewEvent::own(
                        &op.reference,
                        EventName::Created,
                        amount,
                        "",
                        &op.idempotency_key,
                    )],
                    remote: Some(RemoteView {
                        state: PaymentState::Created,
                        aggregate: Aggregate::default(),
                        psp_reference: String::new(),
                        redirect_url: answer.redirect_url,
                        profile_sub: None,
                    }),
                    confirm: true,
                    settle: Some((op.id, Settlement::Succeeded)),
                    ..PaymentChange::default()
                };
                self.log
                    .commit(change)
                    .await?
                    .payment
                    .ok_or_else(|| PaygateError::Internal("created payment vanished".into()).into())
            }
            Err(e) if e.is_final_refusal() => {
                let error = mapping::error(&e);
                let change = PaymentChange {
                    reference: op.reference.clone(),
                    settle: Some((op.id, Settlement::Rejected(journal::stored_refusal(&error)))),
                    discard_payment: true,
                    ..PaymentChange::default()
                };
                self.log.commit(change).await?;
                Err(error.into())
            }
            Err(e) => {
                tracing::warn!(reference = %op.reference, error = %e, outcome_unknown = e.outcome_unknown(), "create not done; left pending");
                Err(SendFailure::from_vipps(&e))
            }
        }
    }
}

impl Payments {
    /// The stored phone number of a known customer, for a push without a number.
    async fn known_phone(
        &self,
        customer_key: Option<&CustomerKey>,
    ) -> Result<PhoneNumber, PaygateError> {
        let explain = |why: String| {
            PaygateError::invalid(
                "customer.phone_number",
                format!(
                    "USER_FLOW_PUSH_MESSAGE needs the customer's phone number: set customer.phone_number, \
                     or customer_key of a customer who shared their number in an earlier payment ({why})"
                ),
            )
        };
        let key = customer_key.ok_or_else(|| explain("neither is set".into()))?;
        match self.store().get_customer(key.as_str()).await? {
            Some(c) => Ok(c.phone_number),
            None => Err(explain(format!(
                "customer_key {key:?} has no stored phone number"
            ))),
        }
    }
}

/// The caller's parameters that make two creates "the same request".
fn create_params(cmd: &CreatePayment) -> serde_json::Value {
    json!({
        "reference": cmd.reference.as_ref().map(|r| r.as_str()),
        "amount": [cmd.amount.currency.code(), cmd.amount.value],
        "userFlow": cmd.user_flow.as_str(),
        "phoneNumber": cmd.phone_number.as_ref().map(|p| p.expose()),
        "scopes": cmd.profile_scopes,
        "receipt": cmd.receipt,
        "returnUrl": cmd.return_url,
        "description": cmd.description,
        "customerKey": cmd.customer_key.as_ref().map(CustomerKey::as_str),
        "metadata": cmd.metadata,
    })
}
