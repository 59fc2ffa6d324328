//! CreatePaymentRequest.

use chrono::Utc;
use serde_json::json;

use super::{commands::CreatePayment, errors, upstream, Payments};
use crate::{
    domain::{
        operation::fingerprint, Aggregate, EventName, IdempotencyKey, NewOperation, Operation,
        OperationKind, OperationStatus, PaygateError, Payment, PaymentState, PhoneNumber,
        Reference, UserFlow,
    },
    store::{Change, Finish, RemoteView, Start, StartOutcome},
    vipps::models,
};

impl Payments {
    /// Creates a payment request, exactly once per idempotency key.
    pub async fn create(&self, mut cmd: CreatePayment) -> Result<Payment, PaygateError> {
        // The fingerprint covers what the caller sent, before paygate fills in defaults.
        let fingerprint = fingerprint(&create_params(&cmd));
        if cmd.user_flow == UserFlow::PushMessage && cmd.phone_number.is_none() {
            cmd.phone_number = Some(self.known_phone(cmd.customer_key.as_deref()).await?);
        }
        let reference = cmd.reference.clone().unwrap_or_else(Reference::generate);
        let key = cmd
            .idempotency_key
            .clone()
            .unwrap_or_else(|| IdempotencyKey::from(&reference));
        let body = vipps_request(&cmd, &reference);
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
            customer_key: cmd.customer_key.clone(),
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
        };
        let start = Start::Create {
            payment: Box::new(payment),
            wants_profile: !cmd.profile_scopes.is_empty(),
            op,
        };
        match self.log.journal(start).await? {
            StartOutcome::Started(op) => self.send_create(op).await,
            StartOutcome::Existing(op) => {
                super::modify::check_same_request(&op, &fingerprint)?;
                match op.status {
                    OperationStatus::Succeeded => super::modify::replay_payment(&op),
                    OperationStatus::Rejected => Err(errors::replay_refusal(op.outcome.as_ref())),
                    OperationStatus::Pending => self.send_create(op).await,
                }
            }
        }
    }

    /// Sends a journalled create (again, after an unknown outcome) and records what Vipps said.
    pub(super) async fn send_create(&self, op: Operation) -> Result<Payment, PaygateError> {
        let body: models::CreatePaymentRequest = serde_json::from_value(op.request.clone())
            .map_err(|e| PaygateError::Internal(format!("journalled create request: {e}")))?;
        let amount = upstream::money(&body.amount)?;
        crate::crashpoint::hit("before_upstream");
        let answer = self.vipps.create_payment(&body, &op.idempotency_key).await;
        crate::crashpoint::hit("after_upstream");
        match answer {
            Ok(answer) => {
                let change = Change {
                    reference: op.reference.clone(),
                    events: vec![upstream::own_event(
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
                    finish: Some((op.id, Finish::Succeeded)),
                    ..Change::default()
                };
                self.log
                    .commit(change)
                    .await?
                    .payment
                    .ok_or_else(|| PaygateError::Internal("created payment vanished".into()))
            }
            Err(e) if errors::definite_refusal(&e) => {
                let error = errors::from_vipps(&e);
                let change = Change {
                    reference: op.reference.clone(),
                    finish: Some((op.id, Finish::Rejected(errors::stored_refusal(&error)))),
                    discard_payment: true,
                    ..Change::default()
                };
                self.log.commit(change).await?;
                Err(error)
            }
            Err(e) => {
                tracing::warn!(reference = %op.reference, error = %e, "create outcome unknown; left pending");
                Err(errors::from_vipps(&e))
            }
        }
    }
}

impl Payments {
    /// The stored phone number of a known customer, for a push without a number.
    async fn known_phone(&self, customer_key: Option<&str>) -> Result<PhoneNumber, PaygateError> {
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
        match self.store().get_customer(key).await? {
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
        "customerKey": cmd.customer_key,
        "metadata": cmd.metadata,
    })
}

fn vipps_request(cmd: &CreatePayment, reference: &Reference) -> models::CreatePaymentRequest {
    models::CreatePaymentRequest {
        amount: upstream::amount(cmd.amount),
        payment_method: models::PaymentMethod {
            kind: "WALLET".into(),
        },
        reference: reference.to_string(),
        user_flow: cmd.user_flow.as_str().into(),
        customer: cmd.phone_number.as_ref().map(|p| models::Customer {
            phone_number: p.expose().to_owned(),
        }),
        return_url: cmd.return_url.clone(),
        payment_description: cmd.description.clone(),
        profile: (!cmd.profile_scopes.is_empty()).then(|| models::ProfileRequest {
            scope: cmd.profile_scopes.join(" "),
        }),
        receipt: cmd.receipt.as_ref().map(receipt),
        metadata: (!cmd.metadata.is_empty()).then(|| cmd.metadata.clone()),
        customer_interaction: None,
    }
}

fn receipt(r: &crate::domain::Receipt) -> models::Receipt {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    models::Receipt {
        order_lines: r
            .order_lines
            .iter()
            .map(|l| models::OrderLine {
                name: l.name.clone(),
                id: l.id.clone(),
                total_amount: l.total_amount,
                total_amount_excluding_tax: l.total_amount_excluding_tax,
                total_tax_amount: l.total_tax_amount,
                tax_percentage: l.tax_percentage,
                unit_info: l.unit_info.as_ref().map(|u| models::UnitInfo {
                    unit_price: Some(u.unit_price),
                    quantity: u.quantity.clone(),
                    quantity_unit: non_empty(&u.quantity_unit),
                }),
                discount: (l.discount != 0).then_some(l.discount),
                is_return: l.is_return.then_some(true),
                is_shipping: l.is_shipping.then_some(true),
            })
            .collect(),
        bottom_line: models::BottomLine {
            currency: r.bottom_line.currency.clone(),
            tip_amount: (r.bottom_line.tip_amount != 0).then_some(r.bottom_line.tip_amount),
            pos_id: non_empty(&r.bottom_line.pos_id),
            receipt_number: non_empty(&r.bottom_line.receipt_number),
        },
    }
}
