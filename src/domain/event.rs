//! Payment events: what happened, where paygate learned it, and how duplicates are recognised.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Money, Payment};

/// The name of an event. The first eight are Vipps' ePayment events; `ProfileShared` is paygate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventName {
    Created,
    Authorized,
    Aborted,
    Expired,
    Cancelled,
    Captured,
    Refunded,
    Terminated,
    ProfileShared,
}

impl EventName {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CREATED" => Self::Created,
            "AUTHORIZED" => Self::Authorized,
            "ABORTED" => Self::Aborted,
            "EXPIRED" => Self::Expired,
            "CANCELLED" => Self::Cancelled,
            "CAPTURED" => Self::Captured,
            "REFUNDED" => Self::Refunded,
            "TERMINATED" => Self::Terminated,
            "PROFILE_SHARED" => Self::ProfileShared,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Authorized => "AUTHORIZED",
            Self::Aborted => "ABORTED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
            Self::Captured => "CAPTURED",
            Self::Refunded => "REFUNDED",
            Self::Terminated => "TERMINATED",
            Self::ProfileShared => "PROFILE_SHARED",
        }
    }

    /// Captures and refunds may happen many times for one payment; every other event at most once.
    pub fn repeats(self) -> bool {
        matches!(self, Self::Captured | Self::Refunded)
    }
}

/// Where paygate learned of an event. One event learned from several sources is stored once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// paygate's own call to Vipps (create, capture, cancel, refund) answered.
    Operation,
    /// A signed webhook from Vipps.
    Webhook,
    /// Read from Vipps' event log or payment state when refreshing.
    Poll,
    /// paygate's own event (e.g. the shared phone number arrived).
    Paygate,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operation => "operation",
            Self::Webhook => "webhook",
            Self::Poll => "poll",
            Self::Paygate => "paygate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "operation" => Self::Operation,
            "webhook" => Self::Webhook,
            "poll" => Self::Poll,
            "paygate" => Self::Paygate,
            _ => return None,
        })
    }
}

/// An event before it has a place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Kept as a plain string: a webhook may name a reference paygate never created.
    pub reference: String,
    pub psp_reference: String,
    pub name: EventName,
    pub amount: Money,
    pub timestamp: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub success: bool,
    pub source: EventSource,
}

impl NewEvent {
    /// The event paygate records for its own successful operation (create, capture, cancel,
    /// refund), carrying the operation's idempotency key.
    pub fn own(
        reference: &str,
        name: EventName,
        amount: Money,
        psp_reference: &str,
        idempotency_key: &str,
    ) -> Self {
        Self {
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

    /// The identity of the event, the same whichever source reported it.
    ///
    /// Once-only events are identified by payment and name. Captures and refunds repeat, so they
    /// add the Idempotency-Key of the call that caused them (our own answer and the webhook both
    /// carry it) or, without one, Vipps' pspReference. Failed events never hide a later success.
    pub fn dedupe_key(&self) -> String {
        let base = format!("{}:{}", self.reference, self.name.as_str());
        let key = if !self.success {
            format!("{base}:failed:{}", self.psp_reference)
        } else if !self.name.repeats() {
            base
        } else if let Some(k) = self.idempotency_key.as_deref().filter(|k| !k.is_empty()) {
            format!("{base}:k:{k}")
        } else {
            format!("{base}:p:{}", self.psp_reference)
        };
        // Bounded length for the unique index, whatever the inputs' lengths.
        if key.len() > 200 {
            use sha2::{Digest, Sha256};
            format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
        } else {
            key
        }
    }
}

/// An event in paygate's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// Position in the log; strictly increasing and visible in order.
    pub sequence: u64,
    pub event: NewEvent,
    /// The payment as it stood after the event; absent for a reference paygate does not know.
    pub payment: Option<Payment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn ev(name: EventName, key: Option<&str>, psp: &str) -> NewEvent {
        NewEvent {
            reference: "ride-1234".into(),
            psp_reference: psp.into(),
            name,
            amount: Money::new(Currency::Nok, 100),
            timestamp: Utc::now(),
            idempotency_key: key.map(str::to_owned),
            success: true,
            source: EventSource::Webhook,
        }
    }

    #[test]
    fn dedupe_keys() {
        assert_eq!(
            ev(EventName::Authorized, Some("a"), "1").dedupe_key(),
            ev(EventName::Authorized, None, "2").dedupe_key()
        );
        assert_eq!(
            ev(EventName::Captured, Some("c1"), "1").dedupe_key(),
            ev(EventName::Captured, Some("c1"), "9").dedupe_key()
        );
        assert_ne!(
            ev(EventName::Captured, Some("c1"), "1").dedupe_key(),
            ev(EventName::Captured, Some("c2"), "1").dedupe_key()
        );
        assert_ne!(
            ev(EventName::Refunded, None, "1").dedupe_key(),
            ev(EventName::Refunded, None, "2").dedupe_key()
        );
        let long = ev(EventName::Captured, Some(&"x".repeat(50)), &"9".repeat(300));
        assert!(long.dedupe_key().len() <= 200);
    }
}
