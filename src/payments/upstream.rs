//! Reading Vipps' answers into domain terms.

use chrono::{DateTime, Utc};

use crate::{
    domain::{
        Aggregate, Currency, EventName, EventSource, Money, NewEvent, PaygateError, PaymentState,
    },
    store::RemoteView,
    vipps::models,
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

/// The event paygate records for its own successful operation.
pub fn own_event(
    reference: &str,
    name: EventName,
    amount: Money,
    psp_reference: &str,
    idempotency_key: &str,
) -> NewEvent {
    NewEvent {
        reference: reference.to_owned(),
        psp_reference: psp_reference.to_owned(),
        name,
        amount,
        timestamp: Utc::now(),
        idempotency_key: Some(idempotency_key.to_owned()),
        success: true,
        source: EventSource::Operation,
    }
}

pub fn amount(m: Money) -> models::Amount {
    models::Amount {
        currency: m.currency.code().to_owned(),
        value: m.value,
    }
}
