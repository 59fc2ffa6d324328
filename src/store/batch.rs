//! Group commit, done in bulk: a batch of changes is applied with a handful of statements,
//! whatever its size — one query for the payments it touches, one for the dedupe keys already in
//! the log, one for the totals of known payments, multi-row inserts for the new events, and one
//! update per changed payment. Changes are applied in order, in memory, so a later change in the
//! batch sees the earlier ones exactly as if each had been its own transaction.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};

use super::{
    change::{CommitResult, PaymentChange, Settlement},
    convert,
    entities::{event, payment},
    now_ms, operations, payments, StoreError,
};
use crate::domain::{
    Aggregate, EventName, NewEvent, OperationStatus, Payment, PaymentEvent, ProfileOutcome,
};

/// Rows per multi-row INSERT (13 columns: well inside SQLite's and PostgreSQL's parameter limits).
const INSERT_CHUNK: usize = 500;

/// A payment as the batch sees it while applying changes.
struct Working {
    payment: Option<Payment>,
    confirmed: bool,
    /// The payment's shared profile is still awaited (not fetched, failed or erased).
    profile_pending: bool,
    dirty: bool,
}

/// An event to insert: its dedupe key, the event, the payment snapshot after it, and where its
/// sequence goes in the results (change index, position in `appended`).
struct Pending {
    key: String,
    snapshot: Option<String>,
    slot: (usize, usize),
}

pub(super) async fn apply<C: ConnectionTrait>(
    db: &C,
    changes: Vec<PaymentChange>,
) -> Result<Vec<CommitResult>, StoreError> {
    let references: Vec<String> = changes
        .iter()
        .map(|c| c.reference.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut work: HashMap<String, Working> = load_payments(db, &references).await?;
    let keys: Vec<String> = changes
        .iter()
        .flat_map(|c| c.events.iter().map(NewEvent::dedupe_key))
        .collect();
    let mut recorded = recorded_keys(db, &keys).await?;
    let with_events: Vec<String> = changes
        .iter()
        .filter(|c| {
            !c.events.is_empty() && work.get(&c.reference).is_some_and(|w| w.payment.is_some())
        })
        .map(|c| c.reference.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut totals = log_totals(db, &with_events).await?;

    let mut results = Vec::with_capacity(changes.len());
    let mut pending = Vec::new();
    for (index, change) in changes.into_iter().enumerate() {
        let w = work.entry(change.reference.clone()).or_insert(Working {
            payment: None,
            confirmed: false,
            profile_pending: false,
            dirty: false,
        });
        // A profile that is no longer awaited was erased meanwhile (or already recorded): a late
        // Userinfo answer must not bring the number back, nor announce it.
        let late_profile = change.profile.is_some() && !w.profile_pending;
        let mut change = change;
        if late_profile {
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
                    super::customers::upsert(db, &customer).await?;
                }
                let (status, why) = match outcome {
                    ProfileOutcome::Shared { .. } => ("shared", None),
                    ProfileOutcome::Failed(why) => ("failed", Some(why.as_str())),
                };
                super::customers::set_profile_status(db, &change.reference, status, why).await?;
                w.profile_pending = false;
                w.dirty = true;
            }
        }

        let mut appended = Vec::new();
        for ev in change.events {
            let key = ev.dedupe_key();
            if !recorded.insert(key.clone()) {
                continue; // already in the log, or earlier in this batch
            }
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
            pending.push((
                Pending {
                    key,
                    snapshot,
                    slot: (index, appended.len()),
                },
                ev.clone(),
            ));
            appended.push(PaymentEvent {
                sequence: 0, // assigned by the insert below
                event: ev,
                payment: w.payment.clone(),
            });
        }

        if change.discard_payment {
            if w.payment.take().is_some() {
                payments::delete(db, &change.reference).await?;
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
            if !operations::finish(db, id, status, &outcome).await? {
                // Another sender settled it first: its outcome stands (Vipps' idempotency made
                // both answers describe the same effect).
                tracing::info!(operation = id, "operation was already settled");
            }
        }
        results.push(CommitResult {
            payment: w.payment.clone(),
            appended,
        });
    }

    let sequences = insert_events(db, &pending).await?;
    for (p, _) in &pending {
        let sequence = sequences
            .get(&p.key)
            .copied()
            .ok_or_else(|| StoreError::Corrupt("an inserted event returned no sequence".into()))?;
        let (change, position) = p.slot;
        if let Some(e) = results
            .get_mut(change)
            .and_then(|r| r.appended.get_mut(position))
        {
            e.sequence = sequence;
        }
    }
    for w in work.values() {
        if let (true, Some(p)) = (w.dirty, &w.payment) {
            payments::update(db, p, w.confirmed).await?;
        }
    }
    Ok(results)
}

async fn load_payments<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Working>, StoreError> {
    let mut out = HashMap::new();
    for chunk in references.chunks(INSERT_CHUNK) {
        let rows = payment::Entity::find()
            .filter(payment::Column::Reference.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        for row in rows {
            let confirmed = row.confirmed;
            let reference = row.reference.clone();
            out.insert(
                reference,
                Working {
                    profile_pending: row.profile_status.as_deref() == Some("pending"),
                    payment: Some(convert::payment(row)?),
                    confirmed,
                    dirty: false,
                },
            );
        }
    }
    Ok(out)
}

async fn recorded_keys<C: ConnectionTrait>(
    db: &C,
    keys: &[String],
) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    for chunk in keys.chunks(INSERT_CHUNK) {
        let found: Vec<String> = event::Entity::find()
            .select_only()
            .column(event::Column::DedupeKey)
            .filter(event::Column::DedupeKey.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// Sums of the recorded events of these payments, from three columns only.
async fn log_totals<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Aggregate>, StoreError> {
    let mut out: HashMap<String, Aggregate> = HashMap::new();
    for chunk in references.chunks(INSERT_CHUNK) {
        let rows: Vec<(String, String, i64, bool)> = event::Entity::find()
            .select_only()
            .columns([
                event::Column::Reference,
                event::Column::Name,
                event::Column::Amount,
                event::Column::Success,
            ])
            .filter(event::Column::Reference.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        for (reference, name, amount, success) in rows {
            if let Some(name) = EventName::parse(&name) {
                let total = out.entry(reference).or_default();
                *total = total.with(name, amount, success);
            }
        }
    }
    Ok(out)
}

/// Multi-row inserts; returns each new event's sequence by dedupe key. Within one statement
/// rows take increasing sequences in VALUES order, and statements run in batch order, so the
/// log order is the batch order.
async fn insert_events<C: ConnectionTrait>(
    db: &C,
    pending: &[(Pending, NewEvent)],
) -> Result<HashMap<String, u64>, StoreError> {
    let mut out = HashMap::with_capacity(pending.len());
    let recorded_ms = now_ms();
    for chunk in pending.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(event::Entity).columns([
            event::Column::DedupeKey,
            event::Column::Reference,
            event::Column::PspReference,
            event::Column::Name,
            event::Column::Currency,
            event::Column::Amount,
            event::Column::TimestampMs,
            event::Column::IdempotencyKey,
            event::Column::Success,
            event::Column::Source,
            event::Column::Payment,
            event::Column::RecordedMs,
        ]);
        for (p, ev) in chunk {
            insert
                .values([
                    Expr::val(p.key.clone()).into(),
                    Expr::val(ev.reference.clone()).into(),
                    Expr::val(ev.psp_reference.clone()).into(),
                    Expr::val(ev.name.as_str()).into(),
                    Expr::val(ev.amount.currency.code()).into(),
                    Expr::val(ev.amount.value).into(),
                    Expr::val(ev.timestamp.timestamp_millis()).into(),
                    Expr::val(ev.idempotency_key.clone()).into(),
                    Expr::val(ev.success).into(),
                    Expr::val(ev.source.as_str()).into(),
                    Expr::val(p.snapshot.clone()).into(),
                    Expr::val(recorded_ms).into(),
                ])
                .map_err(|e| StoreError::Corrupt(format!("building the event insert: {e}")))?;
        }
        insert.returning(
            Query::returning().columns([event::Column::Sequence, event::Column::DedupeKey]),
        );
        let rows = db
            .query_all(db.get_database_backend().build(&insert))
            .await?;
        for row in rows {
            let sequence: i64 = row.try_get("", "sequence")?;
            let key: String = row.try_get("", "dedupe_key")?;
            let sequence = u64::try_from(sequence)
                .map_err(|_| StoreError::Corrupt(format!("sequence {sequence}")))?;
            out.insert(key, sequence);
        }
    }
    Ok(out)
}
