//! The operation journal: every money-moving call is recorded before it is sent.

use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};

use super::{convert, entities::operation, now_ms, payments, Store, StoreError};
use crate::domain::{NewOperation, Operation, OperationStatus, Payment};

/// What journalling an operation found.
#[derive(Debug)]
pub enum Journaled {
    /// Newly journalled as pending: send it.
    Started(Operation),
    /// The same idempotency key was journalled before.
    Existing(Operation),
}

/// A journal entry to write before the upstream call (handed to the group-commit writer).
#[derive(Debug, Clone)]
pub enum JournalEntry {
    /// A create, with the (not yet confirmed) payment it records.
    Create {
        payment: Box<Payment>,
        wants_profile: bool,
        op: NewOperation,
    },
    /// A capture, cancel or refund.
    Operation(NewOperation),
}

/// A journal entry's outcome inside a batch: a taken reference is that entry's answer alone;
/// any other error fails the whole batch.
pub(super) fn in_batch(
    outcome: Result<Journaled, StoreError>,
) -> Result<Result<Journaled, StoreError>, StoreError> {
    match outcome {
        Err(StoreError::ReferenceTaken(r)) => Ok(Err(StoreError::ReferenceTaken(r))),
        Err(e) => Err(e),
        Ok(journaled) => Ok(Ok(journaled)),
    }
}

/// Journals one entry inside an open write transaction. A key seen before returns the earlier
/// operation; a reference already used by another create key is refused (before any write).
pub(super) async fn journal_in<C: ConnectionTrait>(
    db: &C,
    entry: JournalEntry,
) -> Result<Journaled, StoreError> {
    match entry {
        JournalEntry::Create {
            payment,
            wants_profile,
            op,
        } => {
            if let Some(existing) = find(db, &op).await? {
                return Ok(Journaled::Existing(existing));
            }
            if payments::load(db, payment.reference.as_str())
                .await?
                .is_some()
            {
                return Err(StoreError::ReferenceTaken(payment.reference.to_string()));
            }
            payments::insert(db, &payment).await?;
            if wants_profile {
                super::customers::set_profile_status(
                    db,
                    payment.reference.as_str(),
                    "pending",
                    None,
                )
                .await?;
            }
            Ok(Journaled::Started(insert(db, op).await?))
        }
        JournalEntry::Operation(op) => {
            if let Some(existing) = find(db, &op).await? {
                return Ok(Journaled::Existing(existing));
            }
            Ok(Journaled::Started(insert(db, op).await?))
        }
    }
}

impl Store {
    /// Operations whose outcome is still unknown, that nobody is sending (lease expired), whose
    /// re-send time has come and that nobody touched for `idle_ms`, oldest first.
    pub async fn pending_operations(
        &self,
        idle_ms: i64,
        limit: u64,
    ) -> Result<Vec<Operation>, StoreError> {
        use sea_orm::{QueryOrder, QuerySelect};
        let now = now_ms();
        operation::Entity::find()
            // The partial index's own condition (`operations_pending`), not a bound value:
            // PostgreSQL's generic plan could not use the index for `= $1`.
            .filter(Expr::cust("status = 'pending'"))
            .filter(operation::Column::LeaseUntilMs.lte(now))
            .filter(operation::Column::NextSendMs.lte(now))
            .filter(operation::Column::UpdatedMs.lte(now - idle_ms))
            .order_by_asc(operation::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::operation)
            .collect()
    }
}

async fn find<C: ConnectionTrait>(
    db: &C,
    op: &NewOperation,
) -> Result<Option<Operation>, StoreError> {
    operation::Entity::find()
        .filter(operation::Column::Kind.eq(op.kind.as_str()))
        .filter(operation::Column::Scope.eq(op.scope()))
        .filter(operation::Column::IdempotencyKey.eq(op.idempotency_key.as_str()))
        .one(db)
        .await?
        .map(convert::operation)
        .transpose()
}

async fn insert<C: ConnectionTrait>(db: &C, op: NewOperation) -> Result<Operation, StoreError> {
    let now = now_ms();
    let model = operation::ActiveModel {
        kind: Set(op.kind.as_str().to_owned()),
        scope: Set(op.scope().to_owned()),
        reference: Set(op.reference.clone()),
        idempotency_key: Set(op.idempotency_key.clone()),
        fingerprint: Set(op.fingerprint.clone()),
        request: Set(op.request.to_string()),
        status: Set(OperationStatus::Pending.as_str().to_owned()),
        outcome: Set(None),
        created_ms: Set(now),
        updated_ms: Set(now),
        lease_until_ms: Set(op.lease_until_ms),
        next_send_ms: Set(now),
        sends: Set(1),
        caller: Set(op.caller.clone()),
        ..Default::default()
    };
    let id = operation::Entity::insert(model)
        .exec(db)
        .await?
        .last_insert_id;
    Ok(started(op, id))
}

/// A newly journalled operation as stored under `id`: pending, sent once (its first send is
/// the caller's, under the lease it was journalled with).
pub(super) fn started(op: NewOperation, id: i64) -> Operation {
    Operation {
        id,
        kind: op.kind,
        reference: op.reference,
        idempotency_key: op.idempotency_key,
        fingerprint: op.fingerprint,
        request: op.request,
        status: OperationStatus::Pending,
        outcome: None,
        sends: 1,
    }
}

/// Settles an operation with its outcome, only while it is still pending (compare-and-set):
/// the first outcome recorded stands, a late second sender cannot overwrite it. Returns whether
/// this call settled it.
pub(super) async fn finish<C: ConnectionTrait>(
    db: &C,
    id: i64,
    status: OperationStatus,
    outcome: &serde_json::Value,
) -> Result<bool, StoreError> {
    let settled = operation::Entity::update_many()
        .col_expr(operation::Column::Status, Expr::value(status.as_str()))
        .col_expr(operation::Column::Outcome, Expr::value(outcome.to_string()))
        .col_expr(operation::Column::UpdatedMs, Expr::value(now_ms()))
        .col_expr(operation::Column::LeaseUntilMs, Expr::value(0i64))
        .filter(operation::Column::Id.eq(id))
        .filter(operation::Column::Status.eq(OperationStatus::Pending.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    Ok(settled == 1)
}

impl Store {
    /// Claims the right to send a pending operation until `lease_until_ms`: a compare-and-set
    /// that succeeds only when nobody holds a lease and its re-send time has come, so one
    /// operation has one sender at a time, in this process and across replicas.
    pub async fn claim_send(&self, id: i64, lease_until_ms: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let w = self.begin_write().await?;
        let claimed = operation::Entity::update_many()
            .col_expr(operation::Column::LeaseUntilMs, Expr::value(lease_until_ms))
            .col_expr(
                operation::Column::Sends,
                Expr::col(operation::Column::Sends).add(1),
            )
            .col_expr(operation::Column::UpdatedMs, Expr::value(now))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.eq(OperationStatus::Pending.as_str()))
            .filter(operation::Column::LeaseUntilMs.lte(now))
            .filter(operation::Column::NextSendMs.lte(now))
            .exec(&w.txn)
            .await?
            .rows_affected
            == 1;
        w.txn.commit().await?;
        Ok(claimed)
    }

    /// Gives the lease back after a send whose outcome is still unknown; the next send may
    /// happen from `next_send_ms` on.
    pub async fn release_send(&self, id: i64, next_send_ms: i64) -> Result<(), StoreError> {
        let w = self.begin_write().await?;
        operation::Entity::update_many()
            .col_expr(operation::Column::LeaseUntilMs, Expr::value(0i64))
            .col_expr(operation::Column::NextSendMs, Expr::value(next_send_ms))
            .col_expr(operation::Column::UpdatedMs, Expr::value(now_ms()))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.eq(OperationStatus::Pending.as_str()))
            .exec(&w.txn)
            .await?;
        w.txn.commit().await?;
        Ok(())
    }

    /// At start on SQLite: this process holds the database's single-writer lock, so no other
    /// paygate is sending anything; leases left by a crashed predecessor are released at once.
    /// (On PostgreSQL other replicas may be sending: leases there expire by themselves.)
    pub async fn release_orphaned_leases(&self) -> Result<(), StoreError> {
        if self.postgres_pool().is_some() {
            return Ok(());
        }
        let w = self.begin_write().await?;
        operation::Entity::update_many()
            .col_expr(operation::Column::LeaseUntilMs, Expr::value(0i64))
            .filter(operation::Column::Status.eq(OperationStatus::Pending.as_str()))
            .filter(operation::Column::LeaseUntilMs.gt(0i64))
            .exec(&w.txn)
            .await?;
        w.txn.commit().await?;
        Ok(())
    }

    /// The operation as stored now.
    pub async fn operation(&self, id: i64) -> Result<Option<Operation>, StoreError> {
        operation::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(convert::operation)
            .transpose()
    }
}

impl Store {
    /// The operation journalled under this key, if any.
    pub async fn find_operation(
        &self,
        kind: crate::domain::OperationKind,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Option<Operation>, StoreError> {
        let probe = NewOperation {
            kind,
            reference: reference.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            fingerprint: String::new(),
            request: serde_json::Value::Null,
            lease_until_ms: 0,
            caller: String::new(),
        };
        find(&self.db, &probe).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::{
        domain::{NewOperation, OperationKind, OperationStatus},
        store::{JournalEntry, Journaled, PaymentChange, Settlement},
        test_support,
    };

    fn capture(lease_until_ms: i64) -> JournalEntry {
        JournalEntry::Operation(NewOperation {
            kind: OperationKind::Capture,
            reference: "lease-test-0001".into(),
            idempotency_key: "cap-1".into(),
            fingerprint: "f".into(),
            request: serde_json::json!({}),
            lease_until_ms,
            caller: "test".into(),
        })
    }

    /// One sender at a time, and the first outcome stands (reproduced: a second sender's
    /// refusal overwrote the first sender's success).
    #[tokio::test]
    async fn sends_are_leased_and_settling_is_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = test_support::fresh_store(&dir).await;
        let far = chrono::Utc::now().timestamp_millis() + 60_000;
        let (mut started, _) = store.write_batch(vec![capture(far)], vec![]).await.unwrap();
        let Ok(Journaled::Started(op)) = started.remove(0) else {
            panic!("journalled");
        };
        assert!(
            !store.claim_send(op.id, far).await.unwrap(),
            "the journal entry holds the first send's lease"
        );
        store.release_send(op.id, 0).await.unwrap();
        assert!(store.claim_send(op.id, far).await.unwrap());
        assert!(!store.claim_send(op.id, far).await.unwrap(), "one sender");

        let settle = |settlement| PaymentChange {
            reference: "lease-test-0001".into(),
            settle: Some((op.id, settlement)),
            ..PaymentChange::default()
        };
        store
            .write_batch(vec![], vec![settle(Settlement::Succeeded)])
            .await
            .unwrap();
        store
            .write_batch(
                vec![],
                vec![settle(Settlement::Rejected(
                    serde_json::json!({"code": "x"}),
                ))],
            )
            .await
            .unwrap();
        let stored = store.operation(op.id).await.unwrap().unwrap();
        assert_eq!(
            stored.status,
            OperationStatus::Succeeded,
            "the first outcome stands"
        );
        assert!(
            !store.claim_send(op.id, far).await.unwrap(),
            "a settled operation is never sent again"
        );
        store.close().await;
    }
}
