//! The sea-orm writer of a group commit (an in-memory SQLite database): loads what a batch
//! touches with IN lists, has `batch::plan` decide every write, and writes the plan inside the
//! open transaction with multi-row VALUES. The effects are written here for PostgreSQL too.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};

use super::{
    batch::{self, Effect, Insert, Loaded, Stored, INSERT_CHUNK},
    change::{CommitResult, PaymentChange},
    entities::{event, payment},
    now_ms, operations, payments, StoreError,
};
use crate::domain::Aggregate;

/// Loads, plans and writes a batch inside the open transaction `db`.
pub(super) async fn apply<C: ConnectionTrait>(
    db: &C,
    changes: Vec<PaymentChange>,
) -> Result<Vec<CommitResult>, StoreError> {
    let loaded = load(db, &changes).await?;
    let mut plan = batch::plan(changes, loaded)?;
    write_effects(db, &plan.effects).await?;
    let sequences = insert_events(db, &plan.inserts).await?;
    plan.number(&sequences)?;
    for (p, confirmed) in &plan.updates {
        payments::update(db, p, *confirmed).await?;
    }
    Ok(plan.results)
}

/// The plan's writes besides events and payments, in the order it decided them.
pub(super) async fn write_effects<C: ConnectionTrait>(
    db: &C,
    effects: &[Effect],
) -> Result<(), StoreError> {
    for effect in effects {
        match effect {
            Effect::Customer(customer) => super::customers::upsert(db, customer).await?,
            Effect::ProfileStatus {
                reference,
                status,
                failure,
            } => {
                super::customers::set_profile_status(db, reference, status, failure.as_deref())
                    .await?
            }
            Effect::DeletePayment(reference) => payments::delete(db, reference).await?,
            Effect::Finish {
                id,
                status,
                outcome,
            } => {
                if !operations::finish(db, *id, *status, outcome).await? {
                    // Another sender settled it first: its outcome stands (Vipps' idempotency
                    // made both answers describe the same effect).
                    tracing::info!(operation = id, "operation was already settled");
                }
            }
        }
    }
    Ok(())
}

/// What the plan needs to know, read with IN lists.
async fn load<C: ConnectionTrait>(db: &C, changes: &[PaymentChange]) -> Result<Loaded, StoreError> {
    let payments = load_payments(db, &batch::references(changes)).await?;
    let recorded = recorded_keys(db, &batch::keys(changes)).await?;
    let totals = log_totals(db, &batch::with_events(changes, &payments)).await?;
    Ok(Loaded {
        payments,
        recorded,
        totals,
    })
}

async fn load_payments<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Stored>, StoreError> {
    let mut out = HashMap::new();
    for chunk in references.chunks(INSERT_CHUNK) {
        let rows = payment::Entity::find()
            .filter(payment::Column::Reference.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        for row in rows {
            let (reference, stored) = Stored::from_model(row)?;
            out.insert(reference, stored);
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
            batch::add_to_total(&mut out, reference, &name, amount, success);
        }
    }
    Ok(out)
}

/// Multi-row inserts; returns the new events' sequences in insert order. Within one statement
/// rows take increasing sequences in VALUES order, and statements run in batch order, so the
/// log order is the batch order.
async fn insert_events<C: ConnectionTrait>(
    db: &C,
    inserts: &[Insert],
) -> Result<Vec<u64>, StoreError> {
    let mut by_key = HashMap::with_capacity(inserts.len());
    let recorded_ms = now_ms();
    for chunk in inserts.chunks(INSERT_CHUNK) {
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
        for Insert {
            key,
            event: ev,
            snapshot,
            ..
        } in chunk
        {
            insert
                .values([
                    Expr::val(key.clone()).into(),
                    Expr::val(ev.reference.clone()).into(),
                    Expr::val(ev.psp_reference.clone()).into(),
                    Expr::val(ev.name.as_str()).into(),
                    Expr::val(ev.amount.currency.code()).into(),
                    Expr::val(ev.amount.value).into(),
                    Expr::val(ev.timestamp.timestamp_millis()).into(),
                    Expr::val(ev.idempotency_key.clone()).into(),
                    Expr::val(ev.success).into(),
                    Expr::val(ev.source.as_str()).into(),
                    Expr::val(snapshot.clone()).into(),
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
        batch::note_returned(rows, &mut by_key)?;
    }
    batch::in_insert_order(inserts, &by_key)
}
