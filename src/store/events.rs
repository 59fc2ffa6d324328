//! The event log, and the one transaction that records a change to a payment.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    convert,
    entities::event,
    operations::{Start, StartOutcome},
    Store, StoreError,
};
use crate::domain::{Aggregate, NewEvent, Payment, PaymentEvent, PaymentState};

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
        Ok(self.commit_jobs(Vec::new(), changes).await?.1)
    }

    /// Group commit of journal entries and changes in ONE transaction. Journal entries come
    /// first: none of them can depend on a change in the same batch (a change for an operation
    /// is only made after its entry was committed and answered). A refused entry (reference
    /// taken) is answered alone; any database error fails the whole batch.
    pub async fn commit_jobs(
        &self,
        starts: Vec<Start>,
        changes: Vec<Change>,
    ) -> Result<(Vec<Result<StartOutcome, StoreError>>, Vec<CommitResult>), StoreError> {
        let w = self.begin_write().await?;
        let mut started = Vec::with_capacity(starts.len());
        for start in starts {
            match super::operations::start_in(&w.txn, start).await {
                Err(StoreError::ReferenceTaken(r)) => {
                    started.push(Err(StoreError::ReferenceTaken(r)))
                }
                Err(e) => return Err(e),
                Ok(outcome) => started.push(Ok(outcome)),
            }
        }
        let results = super::batch::apply(&w.txn, changes).await?;
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
        Ok((started, results))
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
