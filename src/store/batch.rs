//! Group commit, done in bulk: a batch of changes is applied with a handful of statements,
//! whatever its size — one query for the payments it touches, one for the dedupe keys already in
//! the log, one for the totals of known payments, multi-row inserts for the new events, and one
//! update per changed payment. Changes are applied in order, in memory, so a later change in the
//! batch sees the earlier ones exactly as if each had been its own transaction.
//!
//! Three phases: load what the batch touches, `plan` it (pure: no database), write the plan. The
//! plan is shared by three writers: `sqlite_writer`'s prepared statements (a SQLite file),
//! PostgreSQL's two messages (`write.rs` with `pg_lists`) and `batch_write`'s sea-orm one (an
//! in-memory SQLite).

use std::collections::{HashMap, HashSet};

use sea_orm::QueryResult;

use super::{
    change::{CommitResult, PaymentChange, Settlement},
    convert,
    entities::payment,
    StoreError,
};
use crate::domain::{
    Aggregate, CustomerProfile, EventName, NewEvent, OperationStatus, Payment, PaymentEvent,
    ProfileOutcome,
};

/// Rows per multi-row INSERT (13 columns: well inside SQLite's and PostgreSQL's parameter limits).
pub(super) const INSERT_CHUNK: usize = 500;

/// A stored payment as the batch loads it.
pub(super) struct Stored {
    pub payment: Payment,
    pub confirmed: bool,
    /// The payment's shared profile is still awaited (not fetched, failed or erased).
    pub profile_pending: bool,
}

impl Stored {
    pub fn from_model(row: payment::Model) -> Result<(String, Stored), StoreError> {
        let confirmed = row.confirmed;
        let profile_pending = row.profile_status.as_deref() == Some("pending");
        let reference = row.reference.clone();
        let payment = convert::payment(row)?;
        Ok((
            reference,
            Stored {
                payment,
                confirmed,
                profile_pending,
            },
        ))
    }
}

/// What a batch reads before it is planned.
#[derive(Default)]
pub(super) struct Loaded {
    /// The known payments among the batch's references.
    pub payments: HashMap<String, Stored>,
    /// The batch's dedupe keys already in the log.
    pub recorded: HashSet<String>,
    /// Log totals of the known payments that get events.
    pub totals: HashMap<String, Aggregate>,
}

/// The distinct references a batch touches.
pub(super) fn references(changes: &[PaymentChange]) -> Vec<String> {
    let distinct: HashSet<&str> = changes.iter().map(|c| c.reference.as_str()).collect();
    distinct.into_iter().map(str::to_owned).collect()
}

/// The dedupe keys of every event in a batch.
pub(super) fn keys(changes: &[PaymentChange]) -> Vec<String> {
    changes
        .iter()
        .flat_map(|c| c.events.iter().map(NewEvent::dedupe_key))
        .collect()
}

/// The distinct references of changes with events (the known ones among them need totals).
pub(super) fn references_with_events(changes: &[PaymentChange]) -> Vec<String> {
    let distinct: HashSet<&str> = changes
        .iter()
        .filter(|c| !c.events.is_empty())
        .map(|c| c.reference.as_str())
        .collect();
    distinct.into_iter().map(str::to_owned).collect()
}

/// The known payments that get events (whose log totals the plan needs).
pub(super) fn with_events(
    changes: &[PaymentChange],
    payments: &HashMap<String, Stored>,
) -> Vec<String> {
    let mut known = references_with_events(changes);
    known.retain(|r| payments.contains_key(r));
    known
}

/// A write the plan needs besides the events and the payments, in the order it was decided.
pub(super) enum Effect {
    Customer(CustomerProfile),
    ProfileStatus {
        reference: String,
        status: &'static str,
        failure: Option<String>,
    },
    DeletePayment(String),
    /// Settles a journalled operation (compare-and-set: a settled one stays as it is).
    Finish {
        id: i64,
        status: OperationStatus,
        outcome: serde_json::Value,
    },
}

/// An event to insert, with the payment snapshot after it.
pub(super) struct Insert {
    pub key: String,
    pub event: NewEvent,
    pub snapshot: Option<String>,
    /// Where its sequence goes in the results: change index, position in `appended`.
    slot: (usize, usize),
}

/// Everything a batch writes, decided in memory.
pub(super) struct Plan {
    pub results: Vec<CommitResult>,
    pub effects: Vec<Effect>,
    /// In batch order: the log order.
    pub inserts: Vec<Insert>,
    /// Changed payments and their `confirmed` flag.
    pub updates: Vec<(Payment, bool)>,
}

/// A payment as the batch sees it while applying changes.
struct Working {
    payment: Option<Payment>,
    confirmed: bool,
    profile_pending: bool,
    dirty: bool,
}

/// Applies a batch's changes in order, in memory.
pub(super) fn plan(changes: Vec<PaymentChange>, loaded: Loaded) -> Result<Plan, StoreError> {
    let Loaded {
        payments,
        mut recorded,
        mut totals,
    } = loaded;
    let mut work: HashMap<String, Working> = payments
        .into_iter()
        .map(|(reference, s)| {
            let w = Working {
                payment: Some(s.payment),
                confirmed: s.confirmed,
                profile_pending: s.profile_pending,
                dirty: false,
            };
            (reference, w)
        })
        .collect();
    let mut results = Vec::with_capacity(changes.len());
    let mut effects = Vec::new();
    let mut inserts = Vec::new();
    for (index, mut change) in changes.into_iter().enumerate() {
        let w = work.entry(change.reference.clone()).or_insert(Working {
            payment: None,
            confirmed: false,
            profile_pending: false,
            dirty: false,
        });
        // A profile that is no longer awaited was erased meanwhile (or already recorded): a late
        // Userinfo answer must not bring the number back, nor announce it.
        if change.profile.is_some() && !w.profile_pending {
            change.profile = None;
            change.events.retain(|e| e.name != EventName::ProfileShared);
        }
        if let Some(p) = w.payment.as_mut() {
            if change.confirm && !w.confirmed {
                w.confirmed = true;
                w.dirty = true;
            }
            if let Some(remote) = &change.remote {
                p.merge_remote(remote);
                w.dirty = true;
            }
            if let Some(outcome) = &change.profile {
                if let Some(customer) = p.take_profile(outcome) {
                    effects.push(Effect::Customer(customer));
                }
                let (status, failure) = match outcome {
                    ProfileOutcome::Shared { .. } => ("shared", None),
                    ProfileOutcome::Failed(why) => ("failed", Some(why.clone())),
                };
                effects.push(Effect::ProfileStatus {
                    reference: change.reference.clone(),
                    status,
                    failure,
                });
                w.profile_pending = false;
                w.dirty = true;
            }
        }

        let mut appended = Vec::new();
        for ev in change.events {
            let key = ev.dedupe_key();
            if recorded.contains(&key) {
                continue; // already in the log, or earlier in this batch
            }
            recorded.insert(key.clone());
            let total = totals.entry(change.reference.clone()).or_default();
            *total = total.with_event(&ev);
            if let Some(p) = w.payment.as_mut() {
                p.apply(&ev, *total);
                w.dirty = true;
            }
            let snapshot = match &w.payment {
                Some(p) => {
                    Some(serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                }
                None => None,
            };
            appended.push(PaymentEvent {
                sequence: 0, // assigned when inserted
                event: ev.clone(),
                payment: w.payment.clone(),
            });
            inserts.push(Insert {
                key,
                event: ev,
                snapshot,
                slot: (index, appended.len() - 1),
            });
        }

        if change.discard_payment {
            if w.payment.take().is_some() {
                effects.push(Effect::DeletePayment(change.reference.clone()));
            }
            w.dirty = false;
        }
        if let Some((id, settlement)) = change.settle {
            let (status, outcome) = match settlement {
                Settlement::Succeeded => (
                    OperationStatus::Succeeded,
                    serde_json::to_value(&w.payment)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ),
                Settlement::Rejected(why) => (OperationStatus::Rejected, why),
            };
            effects.push(Effect::Finish {
                id,
                status,
                outcome,
            });
        }
        results.push(CommitResult {
            payment: w.payment.clone(),
            appended,
        });
    }
    let updates = work
        .into_values()
        .filter(|w| w.dirty)
        .filter_map(|w| w.payment.map(|p| (p, w.confirmed)))
        .collect();
    Ok(Plan {
        results,
        effects,
        inserts,
        updates,
    })
}

impl Plan {
    /// Gives the appended events their sequences, one per insert in insert order.
    pub fn number(&mut self, sequences: &[u64]) -> Result<(), StoreError> {
        if sequences.len() != self.inserts.len() {
            return Err(StoreError::Corrupt(format!(
                "{} events inserted, {} sequences returned",
                self.inserts.len(),
                sequences.len()
            )));
        }
        for (insert, &sequence) in self.inserts.iter().zip(sequences) {
            let (change, position) = insert.slot;
            if let Some(e) = self
                .results
                .get_mut(change)
                .and_then(|r| r.appended.get_mut(position))
            {
                e.sequence = sequence;
            }
        }
        Ok(())
    }
}

/// A sequence as the store hands it out.
pub(super) fn sequence(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("sequence {value}")))
}

/// Adds one recorded event (name, amount, success) to its payment's log total.
pub(super) fn add_to_total(
    totals: &mut HashMap<String, Aggregate>,
    reference: String,
    name: &str,
    amount: i64,
    success: bool,
) {
    if let Some(name) = EventName::parse(name) {
        let total = totals.entry(reference).or_default();
        *total = total.with(name, amount, success);
    }
}

/// Keeps the `sequence` and `dedupe_key` an event insert returned, by key.
pub(super) fn note_returned(
    rows: Vec<QueryResult>,
    by_key: &mut HashMap<String, u64>,
) -> Result<(), StoreError> {
    for row in rows {
        let value: i64 = row.try_get("", "sequence")?;
        let key: String = row.try_get("", "dedupe_key")?;
        by_key.insert(key, sequence(value)?);
    }
    Ok(())
}

/// The inserted events' sequences in insert order, from what the insert returned by key.
pub(super) fn in_insert_order(
    inserts: &[Insert],
    by_key: &HashMap<String, u64>,
) -> Result<Vec<u64>, StoreError> {
    inserts
        .iter()
        .map(|i| {
            by_key
                .get(&i.key)
                .copied()
                .ok_or_else(|| StoreError::Corrupt("an inserted event returned no sequence".into()))
        })
        .collect()
}
