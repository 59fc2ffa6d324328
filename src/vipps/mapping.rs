//! The one home of the Vipps <-> domain mapping: Vipps' answers and events read into domain
//! terms, domain requests written as Vipps' request bodies, and Vipps' errors as the service
//! errors callers see.

use chrono::{DateTime, Utc};

use super::{models, VippsError};
use crate::domain::{
    Aggregate, CreatePayment, Currency, EventName, EventSource, Money, NewEvent, PaygateError,
    PaymentState, Receipt, Reference, RemoteView,
};

/// An answer paygate cannot read: for a money-moving call the outcome is unknown, so the
/// caller is told to retry with the same key (the journal keeps the operation pending).
fn bad_answer(what: &str) -> PaygateError {
    PaygateError::Unavailable(format!(
        "Vipps answered with an unexpected {what}; the outcome is unknown, retry with the same idempotency key"
    ))
}

pub fn state(s: &str) -> Result<PaymentState, PaygateError> {
    PaymentState::parse(s).ok_or_else(|| bad_answer("payment state"))
}

pub fn money(a: &models::Amount) -> Result<Money, PaygateError> {
    let currency = Currency::parse(&a.currency).ok_or_else(|| bad_answer("currency"))?;
    Ok(Money::new(currency, a.value))
}

pub fn aggregate(a: &models::Aggregate) -> Aggregate {
    Aggregate {
        authorized: a.authorized_amount.value,
        captured: a.captured_amount.value,
        refunded: a.refunded_amount.value,
        cancelled: a.cancelled_amount.value,
    }
}

pub fn view_of_payment(p: &models::GetPaymentResponse) -> Result<RemoteView, PaygateError> {
    Ok(RemoteView {
        state: state(&p.state)?,
        aggregate: aggregate(&p.aggregate),
        psp_reference: p.psp_reference.clone(),
        redirect_url: p.redirect_url.clone(),
        profile_sub: p.profile.as_ref().and_then(|pr| pr.sub.clone()),
    })
}

pub fn view_of_modification(m: &models::ModificationResponse) -> Result<RemoteView, PaygateError> {
    Ok(RemoteView {
        state: state(&m.state)?,
        aggregate: aggregate(&m.aggregate),
        psp_reference: m.psp_reference.clone(),
        redirect_url: None,
        profile_sub: None,
    })
}

/// An event from Vipps' event log or a webhook body.
pub fn event(e: &models::PaymentEvent, source: EventSource) -> Result<NewEvent, PaygateError> {
    Ok(NewEvent {
        reference: e.reference.clone(),
        psp_reference: e.psp_reference.clone(),
        // Only Vipps' eight ePayment names: PROFILE_SHARED is paygate's own.
        name: EventName::parse(&e.name)
            .filter(|n| *n != EventName::ProfileShared)
            .ok_or_else(|| bad_answer("event name"))?,
        amount: money(&e.amount)?,
        timestamp: DateTime::parse_from_rfc3339(&e.timestamp)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad_answer("event timestamp"))?,
        idempotency_key: e.idempotency_key.clone(),
        success: e.success,
        source,
    })
}

pub fn amount(m: Money) -> models::Amount {
    models::Amount {
        currency: m.currency.code().to_owned(),
        value: m.value,
    }
}

/// The service error for a Vipps failure.
pub fn error(e: &VippsError) -> PaygateError {
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
        VippsError::Busy { .. } => PaygateError::Unavailable(
            "Vipps is still processing an earlier request for this payment; the outcome is unknown, \
             retry later with the same idempotency key"
                .into(),
        ),
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

/// The ePayment create request for a validated command.
pub fn create_request(cmd: &CreatePayment, reference: &Reference) -> models::CreatePaymentRequest {
    models::CreatePaymentRequest {
        amount: amount(cmd.amount),
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

fn receipt(r: &Receipt) -> models::Receipt {
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
