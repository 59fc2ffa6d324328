//! A payment as paygate keeps it, and how events move it forward.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CustomerProfile, EventName, Money, NewEvent, PaymentState, PhoneNumber, Reference};

/// How the customer is brought to approve the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserFlow {
    PushMessage,
    WebRedirect,
    NativeRedirect,
    Qr,
}

impl UserFlow {
    /// The ePayment `userFlow` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PushMessage => "PUSH_MESSAGE",
            Self::WebRedirect => "WEB_REDIRECT",
            Self::NativeRedirect => "NATIVE_REDIRECT",
            Self::Qr => "QR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PUSH_MESSAGE" => Some(Self::PushMessage),
            "WEB_REDIRECT" => Some(Self::WebRedirect),
            "NATIVE_REDIRECT" => Some(Self::NativeRedirect),
            "QR" => Some(Self::Qr),
            _ => None,
        }
    }

    pub fn needs_return_url(self) -> bool {
        matches!(self, Self::WebRedirect | Self::NativeRedirect)
    }
}

/// The running totals, in minor units of the payment's currency. Every total only ever grows,
/// which is what lets paygate merge views from different sources by taking the larger value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub cancelled: i64,
}

impl Aggregate {
    /// Adds one event's contribution to sums over the event log.
    pub fn with_event(self, event: &NewEvent) -> Aggregate {
        self.with(event.name, event.amount.value, event.success)
    }

    /// Adds the contribution of an event given by name, amount and success.
    pub fn with(mut self, name: EventName, value: i64, success: bool) -> Aggregate {
        if !success {
            return self;
        }
        match name {
            EventName::Authorized => self.authorized = self.authorized.max(value),
            EventName::Terminated | EventName::Cancelled => {
                self.cancelled = self.cancelled.saturating_add(value)
            }
            EventName::Captured => self.captured = self.captured.saturating_add(value),
            EventName::Refunded => self.refunded = self.refunded.saturating_add(value),
            _ => {}
        }
        self
    }

    /// Field-wise maximum: the totals are monotonic, so the larger value is the newer one.
    pub fn merge(self, other: Aggregate) -> Aggregate {
        Aggregate {
            authorized: self.authorized.max(other.authorized),
            captured: self.captured.max(other.captured),
            refunded: self.refunded.max(other.refunded),
            cancelled: self.cancelled.max(other.cancelled),
        }
    }
}

/// Vipps' own view of a payment (GET payment, or a modification's answer).
#[derive(Debug, Clone)]
pub struct RemoteView {
    pub state: PaymentState,
    pub aggregate: Aggregate,
    pub psp_reference: String,
    pub redirect_url: Option<String>,
    pub profile_sub: Option<String>,
}

/// What fetching a payment's shared profile came to.
#[derive(Debug, Clone)]
pub enum ProfileOutcome {
    Shared {
        phone_number: PhoneNumber,
        sub: String,
    },
    Failed(String),
}

/// A payment as paygate knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub reference: Reference,
    pub psp_reference: String,
    pub state: PaymentState,
    pub amount: Money,
    pub aggregate: Aggregate,
    pub user_flow: UserFlow,
    pub redirect_url: Option<String>,
    pub customer_key: Option<String>,
    pub phone_number: Option<PhoneNumber>,
    pub profile_sub: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Payment {
    /// What can still be captured: authorized, less what was captured or released.
    pub fn capturable(&self) -> i64 {
        if self.state != PaymentState::Authorized {
            return 0;
        }
        let a = self.aggregate;
        (a.authorized - a.cancelled - a.captured).max(0)
    }

    /// What can still be refunded: captured less refunded.
    pub fn refundable(&self) -> i64 {
        let a = self.aggregate;
        (a.captured - a.refunded).max(0)
    }

    /// Moves the payment forward by one *new* event (the caller has already deduplicated it).
    /// `log_totals` are the sums of every event in the log for this payment, this one included:
    /// the totals become the larger of what paygate knew and what the log adds up to, so a late,
    /// reordered or repeated source can never make them go backwards or count twice.
    pub fn apply(&mut self, event: &NewEvent, log_totals: Aggregate) {
        if event.success {
            let next = match event.name {
                EventName::Authorized => Some(PaymentState::Authorized),
                EventName::Aborted => Some(PaymentState::Aborted),
                EventName::Expired => Some(PaymentState::Expired),
                EventName::Terminated => Some(PaymentState::Terminated),
                _ => None,
            };
            if let Some(next) = next.filter(|n| self.state.can_become(*n)) {
                self.state = next;
            }
            if !event.psp_reference.is_empty() {
                self.psp_reference = event.psp_reference.clone();
            }
        }
        self.aggregate = self.aggregate.merge(log_totals);
        self.update_time = Utc::now();
    }

    /// Merges Vipps' own view (GET payment or a modification answer) into ours, never backwards.
    pub fn merge_remote(&mut self, remote: &RemoteView) {
        if self.state.can_become(remote.state) {
            self.state = remote.state;
        }
        self.aggregate = self.aggregate.merge(remote.aggregate);
        if !remote.psp_reference.is_empty() {
            self.psp_reference.clone_from(&remote.psp_reference);
        }
        if remote.redirect_url.is_some() {
            self.redirect_url.clone_from(&remote.redirect_url);
        }
        if remote.profile_sub.is_some() {
            self.profile_sub.clone_from(&remote.profile_sub);
        }
        self.update_time = Utc::now();
    }

    /// Records a fetched profile. Returns the customer to remember when the customer shared
    /// their number and the payment names a customer key.
    pub fn take_profile(&mut self, outcome: &ProfileOutcome) -> Option<CustomerProfile> {
        let ProfileOutcome::Shared { phone_number, sub } = outcome else {
            return None;
        };
        self.phone_number = Some(phone_number.clone());
        self.profile_sub = Some(sub.clone());
        self.customer_key.as_ref().map(|key| CustomerProfile {
            customer_key: key.clone(),
            phone_number: phone_number.clone(),
            profile_sub: Some(sub.clone()),
            shared_time: Utc::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, EventSource};

    fn view(state: PaymentState, aggregate: Aggregate, psp_reference: &str) -> RemoteView {
        RemoteView {
            state,
            aggregate,
            psp_reference: psp_reference.into(),
            redirect_url: None,
            profile_sub: None,
        }
    }

    fn payment() -> Payment {
        Payment {
            reference: Reference::parse("r", "ride-00000001").unwrap(),
            psp_reference: String::new(),
            state: PaymentState::Created,
            amount: Money::new(Currency::Nok, 1000),
            aggregate: Aggregate::default(),
            user_flow: UserFlow::PushMessage,
            redirect_url: None,
            customer_key: None,
            phone_number: None,
            profile_sub: None,
            metadata: BTreeMap::new(),
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    fn event(name: EventName, value: i64) -> NewEvent {
        NewEvent {
            reference: "ride-00000001".into(),
            psp_reference: "1".into(),
            name,
            amount: Money::new(Currency::Nok, value),
            timestamp: Utc::now(),
            idempotency_key: None,
            success: true,
            source: EventSource::Webhook,
        }
    }

    #[test]
    fn events_move_forward_only() {
        let mut p = payment();
        let mut log = Aggregate::default();
        let mut record = |p: &mut Payment, e: NewEvent| {
            log = log.with_event(&e);
            p.apply(&e, log);
        };
        record(&mut p, event(EventName::Authorized, 1000));
        assert_eq!(p.capturable(), 1000);
        record(&mut p, event(EventName::Captured, 400));
        assert_eq!(p.capturable(), 600);
        record(&mut p, event(EventName::Cancelled, 600));
        assert_eq!(p.capturable(), 0);
        // A late ABORTED cannot move an authorized payment.
        record(&mut p, event(EventName::Aborted, 1000));
        assert_eq!(p.state, PaymentState::Authorized);
        record(&mut p, event(EventName::Refunded, 100));
        assert_eq!(p.refundable(), 300);
    }

    #[test]
    fn log_sums_and_remote_views_never_double_count() {
        // Vipps says 500 captured (an earlier capture paygate has not seen yet, plus ours of 200).
        let mut p = payment();
        p.merge_remote(&view(
            PaymentState::Authorized,
            Aggregate {
                authorized: 1000,
                captured: 500,
                ..Default::default()
            },
            "",
        ));
        let ours = event(EventName::Captured, 200);
        let mut log = Aggregate::default().with_event(&ours);
        p.apply(&ours, log);
        assert_eq!(p.aggregate.captured, 500);
        // The earlier capture's webhook arrives late: the log now adds up to 500 as well.
        let late = event(EventName::Captured, 300);
        log = log.with_event(&late);
        p.apply(&late, log);
        assert_eq!(p.aggregate.captured, 500);
    }

    #[test]
    fn merge_never_goes_backwards() {
        let mut p = payment();
        p.merge_remote(&view(
            PaymentState::Authorized,
            Aggregate {
                authorized: 1000,
                captured: 500,
                ..Default::default()
            },
            "2",
        ));
        p.merge_remote(&view(PaymentState::Created, Aggregate::default(), ""));
        assert_eq!(p.state, PaymentState::Authorized);
        assert_eq!(p.aggregate.captured, 500);
    }
}
