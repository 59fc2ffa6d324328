//! Retention: what paygate keeps, and for how long. Events, finished operations and payments in
//! a final state are deleted once older than `PAYGATE_RETENTION`; webhook events for references
//! paygate never created after `PAYGATE_UNKNOWN_EVENT_RETENTION`. Deletion runs in small batches,
//! each its own short write transaction, so the writer is never held long.
//!
//! The log's horizon (`log_horizon`) is the highest sequence ever deleted: a subscriber resuming
//! from a cursor below it would miss events, so it gets OUT_OF_RANGE instead of a silent gap.

use std::collections::HashSet;

use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

use super::{
    entities::{event, operation, payment},
    now_ms, Store, StoreError,
};

/// Rows deleted per statement: small enough that webhooks never wait long behind it.
pub const BATCH: u64 = 500;

/// What one round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub events: u64,
    pub operations: u64,
    pub payments: u64,
}

impl Expired {
    /// Whether a kind hit the batch size (more may be waiting).
    pub fn full(&self) -> bool {
        self.events >= BATCH || self.operations >= BATCH || self.payments >= BATCH
    }
}

impl Store {
    /// Deletes one batch of each kind older than its cutoff (milliseconds of age).
    pub async fn expire(&self, retention_ms: i64, unknown_ms: i64) -> Result<Expired, StoreError> {
        let now = now_ms();
        let mut expired = Expired::default();
        let mut doomed = self.unknown_events(now - unknown_ms).await?;
        if (doomed.len() as u64) < BATCH {
            doomed.extend(self.old_events(now - retention_ms).await?);
        }
        expired.events = self.delete_events(&doomed).await?;
        expired.operations = self.delete_operations(now - retention_ms).await?;
        expired.payments = self.delete_payments(now - retention_ms).await?;
        Ok(expired)
    }

    /// The highest sequence retention has deleted (0: nothing yet).
    pub async fn log_horizon(&self) -> Result<u64, StoreError> {
        let row = self
            .db
            .query_one(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT sequence FROM log_horizon WHERE id = 1",
            ))
            .await?;
        let sequence: i64 = match row {
            Some(row) => row.try_get("", "sequence")?,
            None => 0,
        };
        Ok(u64::try_from(sequence).unwrap_or(0))
    }

    /// Events without a snapshot (their reference was unknown when they arrived) older than
    /// `before_ms` whose reference paygate still does not know.
    async fn unknown_events(&self, before_ms: i64) -> Result<Vec<i64>, StoreError> {
        let candidates: Vec<(i64, String)> = unknown_candidates(before_ms)
            .into_tuple()
            .all(&self.db)
            .await?;
        let references: HashSet<&String> = candidates.iter().map(|(_, r)| r).collect();
        let known: HashSet<String> = payment::Entity::find()
            .select_only()
            .column(payment::Column::Reference)
            .filter(payment::Column::Reference.is_in(references.into_iter().cloned()))
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(candidates
            .into_iter()
            .filter(|(_, r)| !known.contains(r))
            .map(|(s, _)| s)
            .collect())
    }

    /// The oldest events, up to the first one recorded at or after `before_ms`. The log is
    /// recorded in sequence order, so the oldest sequences are the oldest events; reading them by
    /// sequence needs no index on `recorded_ms`, which every event commit would write (see
    /// migration `m0009`). Where replicas' clocks disagree, an event stamped a little later stops
    /// the batch early: it is kept, never one after it deleted first.
    async fn old_events(&self, before_ms: i64) -> Result<Vec<i64>, StoreError> {
        let oldest: Vec<(i64, i64)> = event::Entity::find()
            .select_only()
            .columns([event::Column::Sequence, event::Column::RecordedMs])
            .order_by_asc(event::Column::Sequence)
            .limit(BATCH)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(oldest
            .into_iter()
            .take_while(|&(_, recorded_ms)| recorded_ms < before_ms)
            .map(|(sequence, _)| sequence)
            .collect())
    }

    /// Deletes these events and moves the horizon past them, in one transaction.
    async fn delete_events(&self, sequences: &[i64]) -> Result<u64, StoreError> {
        let Some(highest) = sequences.iter().max().copied() else {
            return Ok(0);
        };
        let w = self.begin_write().await?;
        let deleted = event::Entity::delete_many()
            .filter(event::Column::Sequence.is_in(sequences.iter().copied()))
            .exec(&w.txn)
            .await?
            .rows_affected;
        let backend = w.txn.get_database_backend();
        w.txn
            .execute(Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm::DbBackend::Postgres => {
                        "UPDATE log_horizon SET sequence = GREATEST(sequence, $1) WHERE id = 1"
                    }
                    _ => "UPDATE log_horizon SET sequence = MAX(sequence, ?) WHERE id = 1",
                },
                [highest.into()],
            ))
            .await?;
        w.txn.commit().await?;
        Ok(deleted)
    }

    /// Settled journal entries: their keys can no longer be replayed (a retry that late is a
    /// new request to Vipps, whose own idempotency window is far shorter).
    async fn delete_operations(&self, before_ms: i64) -> Result<u64, StoreError> {
        let ids: Vec<i64> = operation::Entity::find()
            .select_only()
            .column(operation::Column::Id)
            .filter(operation::Column::Status.ne("pending"))
            .filter(operation::Column::UpdatedMs.lt(before_ms))
            .limit(BATCH)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let w = self.begin_write().await?;
        let deleted = operation::Entity::delete_many()
            .filter(operation::Column::Id.is_in(ids))
            .exec(&w.txn)
            .await?
            .rows_affected;
        w.txn.commit().await?;
        Ok(deleted)
    }

    /// Payments in a final state that nothing touched since `before_ms`, and no longer awaiting
    /// a shared profile.
    async fn delete_payments(&self, before_ms: i64) -> Result<u64, StoreError> {
        let references: Vec<String> = payment::Entity::find()
            .select_only()
            .column(payment::Column::Reference)
            .filter(payment::Column::State.ne("CREATED"))
            .filter(payment::Column::UpdateTimeMs.lt(before_ms))
            .filter(
                Expr::col(payment::Column::ProfileStatus)
                    .is_null()
                    .or(payment::Column::ProfileStatus.ne("pending")),
            )
            .limit(BATCH)
            .into_tuple()
            .all(&self.db)
            .await?;
        if references.is_empty() {
            return Ok(0);
        }
        let w = self.begin_write().await?;
        let deleted = payment::Entity::delete_many()
            .filter(payment::Column::Reference.is_in(references))
            .exec(&w.txn)
            .await?
            .rows_affected;
        w.txn.commit().await?;
        Ok(deleted)
    }
}

/// Events of unknown payments recorded before `before_ms`, in the order of their index
/// (`events_unknown`): ordered by sequence, SQLite walked the whole log to find none.
fn unknown_candidates(before_ms: i64) -> sea_orm::Select<event::Entity> {
    event::Entity::find()
        .select_only()
        .columns([event::Column::Sequence, event::Column::Reference])
        .filter(event::Column::Payment.is_null())
        .filter(event::Column::RecordedMs.lt(before_ms))
        .order_by_asc(event::Column::RecordedMs)
        .limit(BATCH)
}

/// Deletes expired data until `stop`: a round now and then, rounds back to back (with a short
/// pause for the writer) while a round still finds full batches.
pub async fn run(
    store: Store,
    retention: std::time::Duration,
    unknown: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    use std::time::Duration;
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
    // Often enough that short test retentions expire promptly, at most once a minute.
    let period =
        (retention.min(unknown) / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        let pause = match store.expire(millis(retention), millis(unknown)).await {
            Ok(expired) => {
                if expired != Expired::default() {
                    tracing::info!(
                        events = expired.events,
                        operations = expired.operations,
                        payments = expired.payments,
                        "retention deleted expired data"
                    );
                    metrics::counter!("paygate_retention_deleted_total", "kind" => "events")
                        .increment(expired.events);
                }
                if expired.full() {
                    Duration::from_millis(20)
                } else {
                    period
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention round failed; will retry");
                period
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use sea_orm::ConnectionTrait;

    use crate::test_support;

    /// Old events are taken from the start of the log up to the first one recorded after the
    /// cutoff (a replica with a later clock): that one and every event after it stay, so the
    /// horizon never passes an event that was kept.
    #[tokio::test]
    async fn old_events_end_at_the_first_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = test_support::fresh_store(&dir).await;
        let now = super::now_ms();
        let day = 86_400_000;
        // Sequences 1..=4: two old, one recorded now, one old again.
        for (i, recorded_ms) in [now - 3 * day, now - 3 * day, now, now - 3 * day]
            .into_iter()
            .enumerate()
        {
            store
                .db
                .execute_unprepared(&format!(
                    "INSERT INTO events (dedupe_key, reference, psp_reference, name, currency, \
                     amount, timestamp_ms, success, source, payment, recorded_ms) VALUES \
                     ('k{i}', 'payment-old-{i}', 'psp', 'CAPTURED', 'NOK', 100, 0, TRUE, \
                     'webhook', '{{}}', {recorded_ms})"
                ))
                .await
                .unwrap();
        }
        let expired = store.expire(day, day).await.unwrap();
        assert_eq!(expired.events, 2);
        assert_eq!(store.log_horizon().await.unwrap(), 2);
        let left: Vec<i64> = store
            .db
            .query_all(sea_orm::Statement::from_string(
                store.backend,
                "SELECT sequence FROM events ORDER BY sequence",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("", "sequence").unwrap())
            .collect();
        assert_eq!(left, [3, 4]);
        store.close().await;
    }

    /// Finding expired webhooks of unknown payments reads their index, not the whole log (it
    /// runs every minute, and a log holds millions of events).
    #[tokio::test]
    async fn unknown_events_are_found_through_their_index() {
        use sea_orm::QueryTrait;
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = test_support::fresh_store(&dir).await;
        if !url.starts_with("sqlite") {
            return; // the plan's wording is SQLite's
        }
        // A connection of its own: a pooled one opened before the migrations may plan an
        // EXPLAIN with the schema it read then.
        let sql = super::unknown_candidates(0)
            .as_query()
            .to_string(sea_orm::sea_query::SqliteQueryBuilder);
        let conn = rusqlite::Connection::open(dir.path().join("paygate.db")).unwrap();
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = explain
            .query_map([], |r| r.get("detail"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            plan,
            ["SEARCH events USING INDEX events_unknown (recorded_ms<?)"]
        );
        store.close().await;
    }
}
