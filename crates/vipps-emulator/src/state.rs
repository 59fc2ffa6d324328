//! The payment store and the ePayment state machine (REFERENCE.md §1).
//!
//! Pure and synchronous: callers hold one lock around lookup, transition and
//! idempotency bookkeeping, so a transition and its event are atomic.

use std::collections::HashMap;

use axum::http::StatusCode;
use chrono::SecondsFormat;
use rand::Rng as _;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::{
    Aggregate, Amount, EventName, PaymentEvent, PaymentMethodType, PaymentState, UserFlow,
};
use super::problem::Problem;
use super::validate::NewPayment;

/// The calls that change money or create payments; also the idempotency scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Capture,
    Refund,
    Cancel,
}

/// One money-moving effect that was applied; retries must never add a second one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effect {
    pub operation: Operation,
    pub idempotency_key: String,
    pub amount: Amount,
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub msn: String,
    pub reference: String,
    pub amount: Amount,
    pub state: PaymentState,
    pub aggregate: Aggregate,
    pub payment_method: PaymentMethodType,
    pub redirect_url: Option<String>,
    /// The `token` inside `redirect_url`; force-approve may present it.
    pub redirect_token: String,
    pub metadata: Option<Map<String, Value>>,
    /// The Order Management receipt sent with create, as sent.
    pub receipt: Option<Value>,
    pub scope: Option<String>,
    /// Userinfo subject, set on approval when a scope was requested.
    pub sub: Option<String>,
    /// Phone number from the create request's `customer`, if any.
    pub requested_phone: Option<String>,
    /// Phone number of the user who approved.
    pub customer_phone: Option<String>,
    pub events: Vec<PaymentEvent>,
    pub effects: Vec<Effect>,
    /// Creation order, to pick the newest when a reference exists under several MSNs.
    pub sequence: u64,
}

/// Why a transition was refused. Titles follow the vendor FAQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    NotFound(String),
    CaptureBeforeReservation,
    CaptureCancelled,
    CaptureTooHigh {
        requested: i64,
        capturable: i64,
    },
    CurrencyMismatch {
        expected: &'static str,
        got: &'static str,
    },
    CancelCaptured,
    CancelNotReserved(PaymentState),
    AlreadyCancelled,
    NotEnoughRefundable {
        requested: i64,
        refundable: i64,
    },
    AlreadyRefunded,
    ApproveFailed(String),
    /// Emulator control calls (reject, expire) need a CREATED payment.
    NotCreated(PaymentState),
}

impl StateError {
    pub fn problem(&self) -> Problem {
        match self {
            Self::NotFound(reference) => Problem::reference_not_found(reference),
            Self::CaptureBeforeReservation => Problem::bad_request(
                "Cannot capture before reservation",
                "The payment is not authorized",
            ),
            Self::CaptureCancelled => Problem::bad_request(
                "Cannot capture a cancelled payment",
                "The remaining amount was cancelled",
            ),
            Self::CaptureTooHigh {
                requested,
                capturable,
            } => Problem::bad_request(
                "Capture amount too high",
                format!("Requested {requested}, but only {capturable} can be captured"),
            ),
            Self::CurrencyMismatch { expected, got } => Problem::bad_request(
                "Amount invalid",
                format!("Currency {got} does not match the payment currency {expected}"),
            ),
            Self::CancelCaptured => Problem::bad_request(
                "Cannot cancel a captured payment",
                "The payment is fully captured",
            ),
            Self::CancelNotReserved(state) => Problem::bad_request(
                "Cannot cancel a non-reserved payment",
                format!("The payment is in state {state:?}"),
            ),
            Self::AlreadyCancelled => Problem::bad_request(
                "Payment already cancelled",
                "The remaining amount was already cancelled",
            ),
            Self::NotEnoughRefundable {
                requested,
                refundable,
            } => Problem::bad_request(
                "Not enough refundable",
                format!("Requested {requested}, but only {refundable} can be refunded"),
            ),
            Self::AlreadyRefunded => Problem::bad_request(
                "Payment already refunded",
                "The captured amount is fully refunded",
            ),
            Self::ApproveFailed(why) => Problem::bad_request("Approve failed", why.clone()),
            Self::NotCreated(state) => Problem::new(
                StatusCode::CONFLICT,
                "Invalid state transition",
                format!("Only a CREATED payment can change this way; it is {state:?}"),
            ),
        }
    }
}

/// All payments of all MSNs, keyed by (MSN, reference): references are unique per MSN only.
#[derive(Debug)]
pub struct PaymentStore {
    payments: HashMap<(String, String), Payment>,
    psp: PspSequence,
    next_sequence: u64,
}

impl Default for PaymentStore {
    fn default() -> Self {
        Self {
            payments: HashMap::new(),
            psp: PspSequence::new(),
            next_sequence: 0,
        }
    }
}

impl PaymentStore {
    pub fn get(&self, msn: &str, reference: &str) -> Option<&Payment> {
        self.payments.get(&(msn.to_string(), reference.to_string()))
    }

    /// Lookup for the control API, which has no MSN header: the newest payment
    /// with this reference, optionally restricted to one MSN.
    pub fn find(&self, reference: &str, msn: Option<&str>) -> Option<&Payment> {
        self.payments
            .values()
            .filter(|p| p.reference == reference && msn.is_none_or(|m| p.msn == m))
            .max_by_key(|p| p.sequence)
    }

    /// Creates a payment (the caller has checked that the reference is free).
    pub fn create(&mut self, msn: &str, new: NewPayment, idempotency_key: &str) -> &Payment {
        let token = random_token();
        let redirect_url = redirect_url(new.user_flow, new.qr_target_url, &token);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let mut payment = Payment {
            msn: msn.to_string(),
            reference: new.reference.clone(),
            amount: new.amount,
            state: PaymentState::Created,
            aggregate: Aggregate::zero(new.amount.currency),
            payment_method: new.payment_method,
            redirect_url,
            redirect_token: token,
            metadata: new.metadata,
            receipt: new.receipt,
            scope: new.scope,
            sub: None,
            requested_phone: new.customer_phone,
            customer_phone: None,
            events: Vec::new(),
            effects: Vec::new(),
            sequence,
        };
        payment.record(
            self.psp.next(),
            EventName::Created,
            new.amount,
            Some(idempotency_key),
        );
        payment.effects.push(Effect {
            operation: Operation::Create,
            idempotency_key: idempotency_key.to_string(),
            amount: new.amount,
        });
        self.payments
            .entry((msn.to_string(), new.reference))
            .or_insert(payment)
    }

    /// Applies one transition to an existing payment, handing it a fresh pspReference.
    pub fn transition(
        &mut self,
        msn: &str,
        reference: &str,
        apply: impl FnOnce(&mut Payment, String) -> Result<PaymentEvent, StateError>,
    ) -> Result<(PaymentEvent, &Payment), StateError> {
        let payment = self
            .payments
            .get_mut(&(msn.to_string(), reference.to_string()))
            .ok_or_else(|| StateError::NotFound(reference.to_string()))?;
        let event = apply(payment, self.psp.next())?;
        Ok((event, payment))
    }
}

impl Payment {
    /// Latest event's pspReference, which GetPayment reports as the payment's.
    pub fn psp_reference(&self) -> &str {
        self.events.last().map_or("", |e| e.psp_reference.as_str())
    }

    /// The user approves in the app (or via force-approve).
    pub fn approve(
        &mut self,
        psp: String,
        phone: Option<String>,
        token: Option<&str>,
        fallback_phone: &str,
    ) -> Result<PaymentEvent, StateError> {
        if self.state != PaymentState::Created {
            return Err(StateError::ApproveFailed(format!(
                "The payment is in state {:?}",
                self.state
            )));
        }
        if token.is_some_and(|t| t != self.redirect_token) {
            return Err(StateError::ApproveFailed(
                "The token does not belong to this payment".into(),
            ));
        }
        let phone = phone
            .or_else(|| self.requested_phone.clone())
            .unwrap_or_else(|| fallback_phone.to_string());
        if self.scope.is_some() {
            self.sub = Some(derive_sub(&phone, &self.msn));
        }
        self.customer_phone = Some(phone);
        self.state = PaymentState::Authorized;
        self.aggregate.authorized_amount = self.amount;
        Ok(self.record(psp, EventName::Authorized, self.amount, None))
    }

    /// The user rejects (ABORTED) or the payment times out (EXPIRED).
    pub fn abandon(&mut self, psp: String, outcome: EventName) -> Result<PaymentEvent, StateError> {
        if self.state != PaymentState::Created {
            return Err(StateError::NotCreated(self.state));
        }
        self.state = if outcome == EventName::Expired {
            PaymentState::Expired
        } else {
            PaymentState::Aborted
        };
        Ok(self.record(psp, outcome, self.amount, None))
    }

    pub fn capture(
        &mut self,
        psp: String,
        amount: Amount,
        key: &str,
    ) -> Result<PaymentEvent, StateError> {
        self.same_currency(amount)?;
        match self.state {
            PaymentState::Authorized => {}
            PaymentState::Terminated => return Err(StateError::CaptureCancelled),
            PaymentState::Created | PaymentState::Aborted | PaymentState::Expired => {
                return Err(StateError::CaptureBeforeReservation)
            }
        }
        let agg = &self.aggregate;
        if agg.cancelled_amount.value > 0 {
            return Err(StateError::CaptureCancelled);
        }
        let capturable =
            agg.authorized_amount.value - agg.cancelled_amount.value - agg.captured_amount.value;
        if amount.value > capturable {
            return Err(StateError::CaptureTooHigh {
                requested: amount.value,
                capturable,
            });
        }
        self.aggregate.captured_amount.value += amount.value;
        Ok(self.apply_effect(psp, Operation::Capture, EventName::Captured, amount, key))
    }

    pub fn refund(
        &mut self,
        psp: String,
        amount: Amount,
        key: &str,
    ) -> Result<PaymentEvent, StateError> {
        self.same_currency(amount)?;
        let agg = &self.aggregate;
        let refundable = agg.captured_amount.value - agg.refunded_amount.value;
        if agg.captured_amount.value > 0 && refundable == 0 {
            return Err(StateError::AlreadyRefunded);
        }
        if amount.value > refundable {
            return Err(StateError::NotEnoughRefundable {
                requested: amount.value,
                refundable,
            });
        }
        self.aggregate.refunded_amount.value += amount.value;
        Ok(self.apply_effect(psp, Operation::Refund, EventName::Refunded, amount, key))
    }

    /// Before authorization: TERMINATED. After: releases everything not captured.
    /// `transaction_only` (later spec versions) refuses to terminate a CREATED payment.
    pub fn cancel(
        &mut self,
        psp: String,
        key: &str,
        transaction_only: bool,
    ) -> Result<PaymentEvent, StateError> {
        match self.state {
            PaymentState::Created if !transaction_only => {
                self.state = PaymentState::Terminated;
                self.aggregate.cancelled_amount = self.amount;
                Ok(self.apply_effect(
                    psp,
                    Operation::Cancel,
                    EventName::Terminated,
                    self.amount,
                    key,
                ))
            }
            PaymentState::Authorized => {
                let agg = &self.aggregate;
                if agg.cancelled_amount.value > 0 {
                    return Err(StateError::AlreadyCancelled);
                }
                let remainder = agg.authorized_amount.value - agg.captured_amount.value;
                if remainder <= 0 {
                    return Err(StateError::CancelCaptured);
                }
                let released = self.amount.with_value(remainder);
                self.aggregate.cancelled_amount = released;
                Ok(self.apply_effect(psp, Operation::Cancel, EventName::Cancelled, released, key))
            }
            state => Err(StateError::CancelNotReserved(state)),
        }
    }

    fn same_currency(&self, amount: Amount) -> Result<(), StateError> {
        if amount.currency == self.amount.currency {
            Ok(())
        } else {
            Err(StateError::CurrencyMismatch {
                expected: self.amount.currency.code(),
                got: amount.currency.code(),
            })
        }
    }

    fn apply_effect(
        &mut self,
        psp: String,
        operation: Operation,
        name: EventName,
        amount: Amount,
        key: &str,
    ) -> PaymentEvent {
        self.effects.push(Effect {
            operation,
            idempotency_key: key.to_string(),
            amount,
        });
        self.record(psp, name, amount, Some(key))
    }

    fn record(
        &mut self,
        psp: String,
        name: EventName,
        amount: Amount,
        key: Option<&str>,
    ) -> PaymentEvent {
        let event = PaymentEvent {
            reference: self.reference.clone(),
            psp_reference: psp,
            name,
            amount,
            timestamp: chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            idempotency_key: key.map(str::to_string),
            success: true,
        };
        self.events.push(event.clone());
        event
    }
}

/// Ten-digit pspReferences, unique for the emulator's lifetime: a random start
/// and random positive steps, so values look arbitrary yet never repeat.
#[derive(Debug)]
struct PspSequence(u64);

impl PspSequence {
    const FIRST: u64 = 1_000_000_000;
    const LAST: u64 = 9_999_999_999;

    fn new() -> Self {
        Self(rand::rng().random_range(Self::FIRST..4_000_000_000))
    }

    fn next(&mut self) -> String {
        self.0 += rand::rng().random_range(1..=97);
        if self.0 > Self::LAST {
            self.0 = Self::FIRST;
        }
        self.0.to_string()
    }
}

fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn redirect_url(flow: UserFlow, qr_target_url: bool, token: &str) -> Option<String> {
    let landing = format!("https://landing.vipps.no?token={token}");
    match flow {
        UserFlow::WebRedirect => Some(landing),
        UserFlow::NativeRedirect => Some(format!("vipps://?token={token}")),
        UserFlow::Qr if qr_target_url => Some(landing),
        UserFlow::Qr => Some(format!("https://qr-image.vipps.no/v1?token={token}")),
        UserFlow::PushMessage => None,
    }
}

/// A stable userinfo `sub` per (user, sales unit), as Vipps issues: the same
/// phone and MSN always give the same UUID, across emulator restarts too.
pub fn derive_sub(phone: &str, msn: &str) -> String {
    let digest = Sha256::digest(format!("paygate-emulator-sub\n{msn}\n{phone}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;
    use crate::model::Currency;

    const MSN: &str = "123456";

    fn nok(value: i64) -> Amount {
        Amount {
            currency: Currency::Nok,
            value,
        }
    }

    fn store_with(amount: i64, scope: Option<&str>) -> PaymentStore {
        let mut store = PaymentStore::default();
        store.create(
            MSN,
            NewPayment {
                reference: "order-0001".into(),
                amount: nok(amount),
                payment_method: PaymentMethodType::Wallet,
                user_flow: UserFlow::WebRedirect,
                customer_phone: None,
                scope: scope.map(str::to_string),
                qr_target_url: false,
                metadata: None,
                receipt: None,
            },
            "create-key",
        );
        store
    }

    fn run(
        store: &mut PaymentStore,
        f: impl FnOnce(&mut Payment, String) -> Result<PaymentEvent, StateError>,
    ) -> Result<PaymentEvent, StateError> {
        store
            .transition(MSN, "order-0001", f)
            .map(|(event, _)| event)
    }

    fn approve(store: &mut PaymentStore) {
        run(store, |p, psp| p.approve(psp, None, None, "4712345678")).unwrap();
    }

    fn aggregate(store: &PaymentStore) -> [i64; 4] {
        let a = store.get(MSN, "order-0001").unwrap().aggregate;
        [
            a.authorized_amount.value,
            a.cancelled_amount.value,
            a.captured_amount.value,
            a.refunded_amount.value,
        ]
    }

    #[test]
    fn partial_captures_then_over_capture_is_refused() {
        let mut store = store_with(1000, None);
        assert_eq!(
            run(&mut store, |p, psp| p.capture(psp, nok(100), "k0")),
            Err(StateError::CaptureBeforeReservation)
        );
        approve(&mut store);
        run(&mut store, |p, psp| p.capture(psp, nok(400), "k1")).unwrap();
        run(&mut store, |p, psp| p.capture(psp, nok(500), "k2")).unwrap();
        assert_eq!(
            run(&mut store, |p, psp| p.capture(psp, nok(101), "k3")),
            Err(StateError::CaptureTooHigh {
                requested: 101,
                capturable: 100
            })
        );
        assert_eq!(aggregate(&store), [1000, 0, 900, 0]);
        let dkk = Amount {
            currency: Currency::Dkk,
            value: 1,
        };
        assert!(matches!(
            run(&mut store, |p, psp| p.capture(psp, dkk, "k4")),
            Err(StateError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn cancel_before_authorization_terminates() {
        let mut store = store_with(1000, None);
        let event = run(&mut store, |p, psp| p.cancel(psp, "c1", false)).unwrap();
        assert_eq!(event.name, EventName::Terminated);
        assert_eq!(event.amount.value, 1000);
        assert_eq!(
            store.get(MSN, "order-0001").unwrap().state,
            PaymentState::Terminated
        );
        assert_eq!(aggregate(&store), [0, 1000, 0, 0]);
        assert_eq!(
            run(&mut store, |p, psp| p.capture(psp, nok(100), "k")),
            Err(StateError::CaptureCancelled)
        );
        assert_eq!(
            run(&mut store, |p, psp| p.approve(
                psp,
                None,
                None,
                "4712345678"
            ))
            .map(|_| ()),
            Err(StateError::ApproveFailed(
                "The payment is in state Terminated".into()
            ))
        );
    }

    #[test]
    fn cancel_after_partial_capture_releases_the_remainder() {
        let mut store = store_with(1000, None);
        approve(&mut store);
        run(&mut store, |p, psp| p.capture(psp, nok(300), "k1")).unwrap();
        let event = run(&mut store, |p, psp| p.cancel(psp, "c1", false)).unwrap();
        assert_eq!(
            (event.name, event.amount.value),
            (EventName::Cancelled, 700)
        );
        assert_eq!(
            store.get(MSN, "order-0001").unwrap().state,
            PaymentState::Authorized
        );
        assert_eq!(aggregate(&store), [1000, 700, 300, 0]);
        assert_eq!(
            run(&mut store, |p, psp| p.capture(psp, nok(1), "k2")),
            Err(StateError::CaptureCancelled)
        );
        assert_eq!(
            run(&mut store, |p, psp| p.cancel(psp, "c2", false)),
            Err(StateError::AlreadyCancelled)
        );
        // Money already captured can still be refunded.
        run(&mut store, |p, psp| p.refund(psp, nok(300), "r1")).unwrap();
        assert_eq!(
            run(&mut store, |p, psp| p.refund(psp, nok(1), "r2")),
            Err(StateError::AlreadyRefunded)
        );
    }

    #[test]
    fn full_capture_cannot_be_cancelled_and_refund_is_bounded() {
        let mut store = store_with(1000, None);
        approve(&mut store);
        assert_eq!(
            run(&mut store, |p, psp| p.refund(psp, nok(1), "r0")),
            Err(StateError::NotEnoughRefundable {
                requested: 1,
                refundable: 0
            })
        );
        run(&mut store, |p, psp| p.capture(psp, nok(1000), "k1")).unwrap();
        assert_eq!(
            run(&mut store, |p, psp| p.cancel(psp, "c1", false)),
            Err(StateError::CancelCaptured)
        );
        run(&mut store, |p, psp| p.refund(psp, nok(600), "r1")).unwrap();
        assert_eq!(
            run(&mut store, |p, psp| p.refund(psp, nok(401), "r2")),
            Err(StateError::NotEnoughRefundable {
                requested: 401,
                refundable: 400
            })
        );
        assert_eq!(aggregate(&store), [1000, 0, 1000, 600]);
    }

    #[test]
    fn events_and_effects_are_recorded_with_distinct_psp_references() {
        let mut store = store_with(1000, Some("phoneNumber"));
        approve(&mut store);
        run(&mut store, |p, psp| p.capture(psp, nok(1000), "k1")).unwrap();
        let payment = store.get(MSN, "order-0001").unwrap();
        let names: Vec<_> = payment.events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                EventName::Created,
                EventName::Authorized,
                EventName::Captured
            ]
        );
        let keys: Vec<_> = payment
            .events
            .iter()
            .map(|e| e.idempotency_key.as_deref())
            .collect();
        assert_eq!(keys, [Some("create-key"), None, Some("k1")]);
        let mut psps: Vec<_> = payment
            .events
            .iter()
            .map(|e| e.psp_reference.clone())
            .collect();
        assert!(psps
            .iter()
            .all(|p| p.len() == 10 && p.bytes().all(|b| b.is_ascii_digit())));
        psps.dedup();
        assert_eq!(psps.len(), 3);
        assert_eq!(payment.effects.len(), 2);
        assert_eq!(
            payment.sub.as_deref(),
            Some(derive_sub("4712345678", MSN).as_str())
        );
    }

    #[test]
    fn reject_and_expire_only_from_created() {
        let mut store = store_with(1000, None);
        run(&mut store, |p, psp| p.abandon(psp, EventName::Aborted)).unwrap();
        assert_eq!(
            store.get(MSN, "order-0001").unwrap().state,
            PaymentState::Aborted
        );
        assert_eq!(
            run(&mut store, |p, psp| p.abandon(psp, EventName::Expired)),
            Err(StateError::NotCreated(PaymentState::Aborted))
        );
    }

    #[test]
    fn sub_is_stable_and_uuid_shaped() {
        let sub = derive_sub("4791234567", MSN);
        assert_eq!(sub, derive_sub("4791234567", MSN));
        assert_ne!(sub, derive_sub("4791234567", "654321"));
        assert!(uuid::Uuid::parse_str(&sub).is_ok());
    }
}
