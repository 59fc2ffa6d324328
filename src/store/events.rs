//! The event log, and the one transaction that records a change to a payment.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::{convert, entities::event, now_ms, operations, payments, Store, StoreError};
use crate::domain::{Aggregate, NewEvent, OperationStatus, Payment, PaymentEvent, PaymentState};

/// Vipps' own view of a payment (GET payment or a modification's answer).
#[derive(Debug, Clone)]
pub struct RemoteView {
    pub state: PaymentState,
    pub aggregate: Aggregate,
    pub psp_reference: String,
    pub redirect_url: Option<String>,
    pub profile_sub: Option<String>,
}

/// How a journalled operation ended.
#[derive(Debug, Clone)]
pub enum Finish {
    /// Carried out: the resulting payment becomes the operation's stored outcome.
    Succeeded,
    /// Refused by Vipps: the refusal is stored and replayed to retries.
    Rejected(serde_json::Value),
}

/// What fetching a payment's shared profile came to.
#[derive(Debug, Clone)]
pub enum ProfileOutcome {
    Shared {
        phone_number: crate::domain::PhoneNumber,
        sub: String,
    },
    Failed(String),
}

/// Everything that changes together, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub reference: String,
    /// Events to append; ones already in the log (by dedupe key) are skipped.
    pub events: Vec<NewEvent>,
    /// Vipps' view to merge in (never moves the payment backwards).
    pub remote: Option<RemoteView>,
    /// Vipps acknowledged the create.
    pub confirm: bool,
    /// The journalled operation this change settles.
    pub finish: Option<(i64, Finish)>,
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

impl Store {
    /// Records a change atomically: payment, new events and the operation outcome.
    pub async fn commit(&self, change: Change) -> Result<CommitResult, StoreError> {
        let mut results = self.commit_batch(vec![change]).await?;
        results
            .pop()
            .ok_or_else(|| StoreError::Corrupt("empty commit result".into()))
    }

    /// Records several changes in ONE transaction (group commit: one fsync for all), in order;
    /// a later change sees the earlier ones. On PostgreSQL the commit also notifies the other
    /// replicas that the log grew.
    pub async fn commit_batch(
        &self,
        changes: Vec<Change>,
    ) -> Result<Vec<CommitResult>, StoreError> {
        let w = self.begin_write().await?;
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            results.push(apply(&w.txn, change).await?);
        }
        let latest = results
            .iter()
            .flat_map(|r| r.appended.last())
            .map(|e| e.sequence)
            .max();
        if let (Some(latest), sea_orm::DbBackend::Postgres) = (latest, self.backend) {
            w.txn
                .execute_unprepared(&format!(
                    "SELECT pg_notify('{}', '{latest}')",
                    super::NOTIFY_CHANNEL
                ))
                .await?;
        }
        if results.iter().any(|r| !r.appended.is_empty()) {
            crate::crashpoint::hit("in_commit");
        }
        w.txn.commit().await?;
        Ok(results)
    }

    /// One payment's events in log order.
    pub async fn list_events(&self, reference: &str) -> Result<Vec<PaymentEvent>, StoreError> {
        event::Entity::find()
            .filter(event::Column::Reference.eq(reference))
            .order_by_asc(event::Column::Sequence)
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::event)
            .collect()
    }

    /// Up to `limit` events after `sequence`, in log order.
    pub async fn events_after(
        &self,
        sequence: u64,
        limit: u64,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        let after = i64::try_from(sequence).unwrap_or(i64::MAX);
        event::Entity::find()
            .filter(event::Column::Sequence.gt(after))
            .order_by_asc(event::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::event)
            .collect()
    }

    /// The highest sequence in the log (0 when empty).
    pub async fn latest_sequence(&self) -> Result<u64, StoreError> {
        let max: Option<Option<i64>> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Sequence.max(), "max")
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(max
            .flatten()
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0))
    }

    /// How many events the log holds.
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        Ok(event::Entity::find().count(&self.db).await?)
    }
}

async fn is_recorded<C: ConnectionTrait>(db: &C, dedupe_key: &str) -> Result<bool, StoreError> {
    Ok(event::Entity::find()
        .filter(event::Column::DedupeKey.eq(dedupe_key))
        .count(db)
        .await?
        > 0)
}

/// The sums of the payment's recorded events, by name (only the three columns it needs).
async fn log_totals<C: ConnectionTrait>(db: &C, reference: &str) -> Result<Aggregate, StoreError> {
    let rows: Vec<(String, i64, bool)> = event::Entity::find()
        .select_only()
        .columns([
            event::Column::Name,
            event::Column::Amount,
            event::Column::Success,
        ])
        .filter(event::Column::Reference.eq(reference))
        .into_tuple()
        .all(db)
        .await?;
    let mut totals = Aggregate::default();
    for (name, amount, success) in rows {
        if let Some(name) = crate::domain::EventName::parse(&name) {
            totals = totals.with(name, amount, success);
        }
    }
    Ok(totals)
}

async fn append<C: ConnectionTrait>(
    db: &C,
    dedupe_key: &str,
    ev: &NewEvent,
    payment: Option<&Payment>,
) -> Result<u64, StoreError> {
    let snapshot = match payment {
        Some(p) => Some(serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        None => None,
    };
    let model = event::ActiveModel {
        dedupe_key: Set(dedupe_key.to_owned()),
        reference: Set(ev.reference.clone()),
        psp_reference: Set(ev.psp_reference.clone()),
        name: Set(ev.name.as_str().to_owned()),
        currency: Set(ev.amount.currency.code().to_owned()),
        amount: Set(ev.amount.value),
        timestamp_ms: Set(ev.timestamp.timestamp_millis()),
        idempotency_key: Set(ev.idempotency_key.clone()),
        success: Set(ev.success),
        source: Set(ev.source.as_str().to_owned()),
        payment: Set(snapshot),
        recorded_ms: Set(now_ms()),
        ..Default::default()
    };
    let sequence = event::Entity::insert(model).exec(db).await?.last_insert_id;
    u64::try_from(sequence).map_err(|_| StoreError::Corrupt(format!("sequence {sequence}")))
}
// x

/// Applies one change inside an open write transaction.
async fn apply<C: ConnectionTrait>(db: &C, change: Change) -> Result<CommitResult, StoreError> {
    let loaded = payments::load(db, &change.reference).await?;
    let confirmed = change.confirm || loaded.as_ref().is_some_and(|(_, c)| *c);
    let mut payment = loaded.map(|(p, _)| p);

    if let (Some(p), Some(remote)) = (payment.as_mut(), change.remote.as_ref()) {
        p.merge_remote(remote.state, remote.aggregate, &remote.psp_reference);
        if remote.redirect_url.is_some() {
            p.redirect_url.clone_from(&remote.redirect_url);
        }
        if remote.profile_sub.is_some() {
            p.profile_sub.clone_from(&remote.profile_sub);
        }
    }

    if let (Some(p), Some(outcome)) = (payment.as_mut(), change.profile.as_ref()) {
        let reference = p.reference.to_string();
        match outcome {
            ProfileOutcome::Shared { phone_number, sub } => {
                p.phone_number = Some(phone_number.clone());
                p.profile_sub = Some(sub.clone());
                if let Some(key) = &p.customer_key {
                    super::customers::upsert(db, key, phone_number, sub).await?;
                }
                super::customers::set_profile_status(db, &reference, "shared", None).await?;
            }
            ProfileOutcome::Failed(why) => {
                super::customers::set_profile_status(db, &reference, "failed", Some(why)).await?;
            }
        }
    }

    let mut appended = Vec::new();
    if !change.events.is_empty() {
        // Totals only matter for a payment paygate knows (an unknown reference has none).
        let mut totals = match &payment {
            Some(_) => log_totals(db, &change.reference).await?,
            None => Aggregate::default(),
        };
        for ev in change.events {
            let key = ev.dedupe_key();
            if is_recorded(db, &key).await? {
                continue;
            }
            totals = totals.with_event(&ev);
            if let Some(p) = payment.as_mut() {
                p.apply(&ev, totals);
            }
            let sequence = append(db, &key, &ev, payment.as_ref()).await?;
            appended.push(PaymentEvent {
                sequence,
                event: ev,
                payment: payment.clone(),
            });
        }
    }

    if let Some(p) = &payment {
        if change.discard_payment {
            payments::delete(db, p.reference.as_str()).await?;
        } else {
            payments::update(db, p, confirmed).await?;
        }
    }
    if let Some((id, finish)) = change.finish {
        let (status, outcome) = match finish {
            Finish::Succeeded => (
                OperationStatus::Succeeded,
                serde_json::to_value(&payment).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
            Finish::Rejected(why) => (OperationStatus::Rejected, why),
        };
        operations::finish(db, id, status, &outcome).await?;
    }
    if change.discard_payment {
        payment = None;
    }
    Ok(CommitResult { payment, appended })
}
