//! Server-side wire types, written from the ePayment spec independently of
//! paygate's client models so that the emulator catches client mistakes.

use serde::Serialize;

/// ISO currency accepted by ePayment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Currency {
    #[serde(rename = "NOK")]
    Nok,
    #[serde(rename = "DKK")]
    Dkk,
    #[serde(rename = "EUR")]
    Eur,
}

impl Currency {
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "NOK" => Some(Self::Nok),
            "DKK" => Some(Self::Dkk),
            "EUR" => Some(Self::Eur),
            _ => None,
        }
    }

    /// Smallest payment amount in minor units (docs: 1.00 NOK, 1 øre DKK, 1 cent EUR).
    pub fn minimum_payment(self) -> i64 {
        match self {
            Self::Nok => 100,
            Self::Dkk | Self::Eur => 1,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Nok => "NOK",
            Self::Dkk => "DKK",
            Self::Eur => "EUR",
        }
    }
}

/// `{currency, value}` in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub currency: Currency,
    pub value: i64,
}

impl Amount {
    pub fn zero(currency: Currency) -> Self {
        Self { currency, value: 0 }
    }

    pub fn with_value(self, value: i64) -> Self {
        Self {
            currency: self.currency,
            value,
        }
    }
}

/// The five payment states; CAPTURED/REFUNDED/CANCELLED are events, not states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentState {
    Created,
    Authorized,
    Aborted,
    Expired,
    Terminated,
}

/// The eight event-log and webhook names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventName {
    Created,
    Authorized,
    Aborted,
    Expired,
    Terminated,
    Captured,
    Refunded,
    Cancelled,
}

impl EventName {
    /// Webhook event type this name is delivered under.
    pub fn webhook_event_type(self) -> &'static str {
        match self {
            Self::Created => "epayments.payment.created.v1",
            Self::Authorized => "epayments.payment.authorized.v1",
            Self::Aborted => "epayments.payment.aborted.v1",
            Self::Expired => "epayments.payment.expired.v1",
            Self::Terminated => "epayments.payment.terminated.v1",
            Self::Captured => "epayments.payment.captured.v1",
            Self::Refunded => "epayments.payment.refunded.v1",
            Self::Cancelled => "epayments.payment.cancelled.v1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMethodType {
    Wallet,
    Card,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserFlow {
    PushMessage,
    NativeRedirect,
    WebRedirect,
    Qr,
}

/// Running totals of a payment; all four are always present on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    pub authorized_amount: Amount,
    pub cancelled_amount: Amount,
    pub captured_amount: Amount,
    pub refunded_amount: Amount,
}

impl Aggregate {
    pub fn zero(currency: Currency) -> Self {
        let zero = Amount::zero(currency);
        Self {
            authorized_amount: zero,
            cancelled_amount: zero,
            captured_amount: zero,
            refunded_amount: zero,
        }
    }
}

/// One entry of the event log (and, with `msn`, the webhook payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    pub reference: String,
    pub psp_reference: String,
    pub name: EventName,
    pub amount: Amount,
    /// RFC 3339 with milliseconds, as in the docs' examples.
    pub timestamp: String,
    pub idempotency_key: Option<String>,
    pub success: bool,
}
