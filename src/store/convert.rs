//! Conversions between sea-orm models and domain types.

use chrono::{DateTime, TimeZone, Utc};

use super::{entities, StoreError};
use crate::domain::{
    Aggregate, Currency, EventName, EventSource, Money, NewEvent, Operation, OperationKind,
    OperationStatus, Payment, PaymentEvent, PaymentState, PhoneNumber, Reference, UserFlow,
};

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub fn payment(m: entities::payment::Model) -> Result<Payment, StoreError> {
    let currency = Currency::parse(&m.currency).ok_or_else(|| corrupt("currency", &m.currency))?;
    Ok(Payment {
        reference: Reference::parse("reference", &m.reference)
            .map_err(|_| corrupt("reference", &m.reference))?,
        psp_reference: m.psp_reference,
        state: PaymentState::parse(&m.state).ok_or_else(|| corrupt("state", &m.state))?,
        amount: Money::new(currency, m.amount),
        aggregate: Aggregate {
            authorized: m.authorized,
            captured: m.captured,
            refunded: m.refunded,
            cancelled: m.cancelled,
        },
        user_flow: UserFlow::parse(&m.user_flow)
            .ok_or_else(|| corrupt("user flow", &m.user_flow))?,
        redirect_url: m.redirect_url,
        customer_key: m.customer_key,
        phone_number: m
            .phone_number
            .as_deref()
            .and_then(|p| PhoneNumber::parse("phone_number", p).ok()),
        profile_sub: m.profile_sub,
        metadata: serde_json::from_str(&m.metadata)
            .map_err(|e| corrupt("metadata", &e.to_string()))?,
        create_time: time(m.create_time_ms),
        update_time: time(m.update_time_ms),
    })
}

/// The columns of a payment; `confirmed` and `failure` are the store's own.
pub fn payment_model(p: &Payment, confirmed: bool) -> entities::payment::Model {
    entities::payment::Model {
        reference: p.reference.as_str().to_owned(),
        psp_reference: p.psp_reference.clone(),
        state: p.state.as_str().to_owned(),
        currency: p.amount.currency.code().to_owned(),
        amount: p.amount.value,
        authorized: p.aggregate.authorized,
        captured: p.aggregate.captured,
        refunded: p.aggregate.refunded,
        cancelled: p.aggregate.cancelled,
        user_flow: p.user_flow.as_str().to_owned(),
        redirect_url: p.redirect_url.clone(),
        customer_key: p.customer_key.clone(),
        phone_number: p.phone_number.as_ref().map(|n| n.expose().to_owned()),
        profile_sub: p.profile_sub.clone(),
        metadata: serde_json::to_string(&p.metadata).unwrap_or_else(|_| "{}".into()),
        confirmed,
        failure: None,
        profile_status: None,
        next_poll_ms: 0,
        create_time_ms: p.create_time.timestamp_millis(),
        update_time_ms: p.update_time.timestamp_millis(),
    }
}

pub fn event(m: entities::event::Model) -> Result<PaymentEvent, StoreError> {
    let payment = match m.payment.as_deref() {
        Some(json) => Some(
            serde_json::from_str::<Payment>(json)
                .map_err(|e| corrupt("payment snapshot", &e.to_string()))?,
        ),
        None => None,
    };
    logged(LoggedRow {
        sequence: m.sequence,
        reference: m.reference,
        psp_reference: m.psp_reference,
        name: m.name,
        currency: m.currency,
        amount: m.amount,
        timestamp_ms: m.timestamp_ms,
        idempotency_key: m.idempotency_key,
        success: i64::from(m.success),
        source: m.source,
        payment,
    })
}

/// An event row with its payment snapshot already parsed: what both ways of reading the log
/// (sea-orm models, or SQLite's one-row JSON page) produce.
#[derive(serde::Deserialize)]
pub struct LoggedRow {
    pub sequence: i64,
    pub reference: String,
    pub psp_reference: String,
    pub name: String,
    pub currency: String,
    pub amount: i64,
    pub timestamp_ms: i64,
    pub idempotency_key: Option<String>,
    /// 0 or 1 (SQLite has no boolean type).
    pub success: i64,
    pub source: String,
    pub payment: Option<Payment>,
}

pub fn logged(m: LoggedRow) -> Result<PaymentEvent, StoreError> {
    let currency = Currency::parse(&m.currency).ok_or_else(|| corrupt("currency", &m.currency))?;
    Ok(PaymentEvent {
        sequence: u64::try_from(m.sequence)
            .map_err(|_| corrupt("sequence", &m.sequence.to_string()))?,
        event: NewEvent {
            reference: m.reference,
            psp_reference: m.psp_reference,
            name: EventName::parse(&m.name).ok_or_else(|| corrupt("event name", &m.name))?,
            amount: Money::new(currency, m.amount),
            timestamp: time(m.timestamp_ms),
            idempotency_key: m.idempotency_key,
            success: m.success != 0,
            source: EventSource::parse(&m.source).ok_or_else(|| corrupt("source", &m.source))?,
        },
        payment: m.payment,
    })
}

pub fn operation(m: entities::operation::Model) -> Result<Operation, StoreError> {
    Ok(Operation {
        id: m.id,
        kind: OperationKind::parse(&m.kind).ok_or_else(|| corrupt("operation kind", &m.kind))?,
        reference: m.reference,
        idempotency_key: m.idempotency_key,
        fingerprint: m.fingerprint,
        request: serde_json::from_str(&m.request)
            .map_err(|e| corrupt("request", &e.to_string()))?,
        status: OperationStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
        outcome: match m.outcome.as_deref() {
            Some(json) => {
                Some(serde_json::from_str(json).map_err(|e| corrupt("outcome", &e.to_string()))?)
            }
            None => None,
        },
        sends: u32::try_from(m.sends).unwrap_or(0),
    })
}
