//! The operation journal: every money-moving call is recorded before it is sent.

use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

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
    /// Operations whose outcome is still unknown and that nobody touched for `idle_ms`,
    /// oldest first.
    pub async fn pending_operations(
        &self,
        idle_ms: i64,
        limit: u64,
    ) -> Result<Vec<Operation>, StoreError> {
        use sea_orm::{QueryOrder, QuerySelect};
        operation::Entity::find()
            .filter(operation::Column::Status.eq(OperationStatus::Pending.as_str()))
            .filter(operation::Column::UpdatedMs.lte(super::now_ms() - idle_ms))
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
        ..Default::default()
    };
    let id = operation::Entity::insert(model)
        .exec(db)
        .await?
        .last_insert_id;
    Ok(Operation {
        id,
        kind: op.kind,
        reference: op.reference,
        idempotency_key: op.idempotency_key,
        fingerprint: op.fingerprint,
        request: op.request,
        status: OperationStatus::Pending,
        outcome: None,
    })
}

/// Settles an operation with its outcome.
pub(super) async fn finish<C: ConnectionTrait>(
    db: &C,
    id: i64,
    status: OperationStatus,
    outcome: &serde_json::Value,
) -> Result<(), StoreError> {
    let model = operation::ActiveModel {
        id: Set(id),
        status: Set(status.as_str().to_owned()),
        outcome: Set(Some(outcome.to_string())),
        updated_ms: Set(now_ms()),
        ..Default::default()
    };
    operation::Entity::update(model).exec(db).await?;
    Ok(())
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
        };
        find(&self.db, &probe).await
    }
}
