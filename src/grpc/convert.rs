//! Domain → protobuf.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::proto;
use crate::domain::{EventName, EventSource, Money, Payment, PaymentEvent, PaymentState, UserFlow};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn money(m: Money) -> proto::Money {
    proto::Money {
        currency: m.currency.code().to_owned(),
        value: m.value,
    }
}

pub fn state(s: PaymentState) -> proto::PaymentState {
    match s {
        PaymentState::Created => proto::PaymentState::Created,
        PaymentState::Authorized => proto::PaymentState::Authorized,
        PaymentState::Aborted => proto::PaymentState::Aborted,
        PaymentState::Expired => proto::PaymentState::Expired,
        PaymentState::Terminated => proto::PaymentState::Terminated,
    }
}

pub fn user_flow(f: UserFlow) -> proto::UserFlow {
    match f {
        UserFlow::PushMessage => proto::UserFlow::PushMessage,
        UserFlow::WebRedirect => proto::UserFlow::WebRedirect,
        UserFlow::NativeRedirect => proto::UserFlow::NativeRedirect,
        UserFlow::Qr => proto::UserFlow::Qr,
    }
}

pub fn event_name(n: EventName) -> proto::PaymentEventName {
    match n {
        EventName::Created => proto::PaymentEventName::Created,
        EventName::Authorized => proto::PaymentEventName::Authorized,
        EventName::Aborted => proto::PaymentEventName::Aborted,
        EventName::Expired => proto::PaymentEventName::Expired,
        EventName::Cancelled => proto::PaymentEventName::Cancelled,
        EventName::Captured => proto::PaymentEventName::Captured,
        EventName::Refunded => proto::PaymentEventName::Refunded,
        EventName::Terminated => proto::PaymentEventName::Terminated,
        EventName::ProfileShared => proto::PaymentEventName::ProfileShared,
    }
}

/// Whether an answer may carry personal data (the caller's `pii` scope). The discriminant is
/// the audience slot of an event's shared encodings (`events::Logged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    Hide = 0,
    Show = 1,
}

impl Pii {
    pub fn for_caller(caller: &crate::auth::Caller) -> Self {
        if caller.sees_pii() {
            Self::Show
        } else {
            Self::Hide
        }
    }

    /// `value` when personal data may be shown, else empty.
    fn filter(self, value: String) -> String {
        match self {
            Self::Show => value,
            Self::Hide => String::new(),
        }
    }
}

pub fn source(s: EventSource) -> proto::EventSource {
    match s {
        EventSource::Operation => proto::EventSource::Operation,
        EventSource::Webhook => proto::EventSource::Webhook,
        EventSource::Poll => proto::EventSource::Poll,
        EventSource::Paygate => proto::EventSource::Paygate,
    }
}

pub fn payment(p: &Payment, pii: Pii) -> proto::Payment {
    let cur = p.amount.currency;
    let m = |value| Some(money(Money::new(cur, value)));
    proto::Payment {
        reference: p.reference.to_string(),
        psp_reference: p.psp_reference.clone(),
        state: state(p.state).into(),
        amount: Some(money(p.amount)),
        aggregate: Some(proto::Aggregate {
            authorized_amount: m(p.aggregate.authorized),
            captured_amount: m(p.aggregate.captured),
            refunded_amount: m(p.aggregate.refunded),
            cancelled_amount: m(p.aggregate.cancelled),
        }),
        user_flow: user_flow(p.user_flow).into(),
        redirect_url: p.redirect_url.clone().unwrap_or_default(),
        customer_key: p.customer_key.clone().unwrap_or_default(),
        phone_number: pii.filter(
            p.phone_number
                .as_ref()
                .map(|n| n.expose().to_owned())
                .unwrap_or_default(),
        ),
        profile_sub: pii.filter(p.profile_sub.clone().unwrap_or_default()),
        create_time: Some(timestamp(p.create_time)),
        update_time: Some(timestamp(p.update_time)),
        metadata: p
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
    }
}

pub fn event(e: &PaymentEvent, pii: Pii) -> proto::PaymentEvent {
    let ev = &e.event;
    proto::PaymentEvent {
        sequence: e.sequence,
        reference: ev.reference.clone(),
        psp_reference: ev.psp_reference.clone(),
        name: event_name(ev.name).into(),
        amount: Some(money(ev.amount)),
        timestamp: Some(timestamp(ev.timestamp)),
        idempotency_key: ev.idempotency_key.clone().unwrap_or_default(),
        success: ev.success,
        payment: e.payment.as_ref().map(|p| payment(p, pii)),
        source: source(ev.source).into(),
    }
}

pub fn customer(c: crate::domain::CustomerProfile, pii: Pii) -> proto::CustomerProfile {
    proto::CustomerProfile {
        customer_key: c.customer_key,
        phone_number: pii.filter(c.phone_number.expose().to_owned()),
        profile_sub: pii.filter(c.profile_sub.unwrap_or_default()),
        shared_time: Some(timestamp(c.shared_time)),
    }
}
