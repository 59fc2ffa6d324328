//! What the store is asked to persist: a change to one payment, decided by the domain and the
//! payment service, and what committing it did.

use crate::domain::{NewEvent, Payment, PaymentEvent, ProfileOutcome, RemoteView};

/// How a journalled operation ended (settles it).
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Carried out: the resulting payment becomes the operation's stored outcome.
    Succeeded,
    /// Refused by Vipps: the refusal is stored and replayed to retries.
    Rejected(serde_json::Value),
}

/// Everything that changes together, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct PaymentChange {
    pub reference: String,
    /// Events to append; ones already in the log (by dedupe key) are skipped.
    pub events: Vec<NewEvent>,
    /// Vipps' view to merge in (never moves the payment backwards).
    pub remote: Option<RemoteView>,
    /// Vipps acknowledged the create.
    pub confirm: bool,
    /// The journalled operation this change settles.
    pub settle: Option<(i64, Settlement)>,
    /// Vipps refused the create: the payment never existed there, so forget it.
    pub discard_payment: bool,
    /// The customer's shared profile arrived (or could not be fetched).
    pub profile: Option<ProfileOutcome>,
}

/// What a committed change did.
#[derive(Debug, Clone, Default)]
pub struct CommitResult {
    /// The payment after the change (None for an unknown reference or a discarded payment).
    pub payment: Option<Payment>,
    /// The events that were new, with their sequences, in order.
    pub appended: Vec<PaymentEvent>,
}
