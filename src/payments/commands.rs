//! Validated requests, as the service receives them from the gRPC edge.

use std::collections::BTreeMap;

use crate::domain::{IdempotencyKey, Money, PhoneNumber, Receipt, Reference, UserFlow};

/// A payment request to create.
#[derive(Debug, Clone)]
pub struct CreatePayment {
    /// None: paygate generates one.
    pub reference: Option<Reference>,
    pub amount: Money,
    pub user_flow: UserFlow,
    pub phone_number: Option<PhoneNumber>,
    /// Profile scope words, e.g. `phoneNumber`.
    pub profile_scopes: Vec<String>,
    pub receipt: Option<Receipt>,
    pub return_url: Option<String>,
    pub description: Option<String>,
    /// None: defaults to the reference.
    pub idempotency_key: Option<IdempotencyKey>,
    pub customer_key: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A capture or refund: `amount` None means all that remains.
#[derive(Debug, Clone)]
pub struct CaptureOrRefund {
    pub reference: Reference,
    pub amount: Option<Money>,
    pub idempotency_key: IdempotencyKey,
}
