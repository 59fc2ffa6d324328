//! The one write transaction: journal entries and payment changes of a batch (group commit),
//! committed together with one fsync. A SQLite file writes it on `sqlite_writer`'s thread;
//! PostgreSQL on a transaction of paygate's own (`pg_txn`) that sends the hot statements in two
//! messages; an in-memory SQLite (tests) through sea-orm.

use super::{
    batch, batch_write,
    change::{CommitResult, PaymentChange},
    operations::{self, JournalEntry, Journaled},
    pg_lists,
    pg_lists::Reads,
    pg_txn::PgTxn,
    Store, StoreError,
};

/// What a group commit did: each journal entry's outcome, then each change's result.
pub type Written = (Vec<Result<Journaled, StoreError>>, Vec<CommitResult>);

impl Store {
    /// Group commit of journal entries and changes in ONE transaction. Journal entries come
    /// first: none of them can depend on a change in the same batch (a change for an operation
    /// is only made after its entry was committed and answered). A refused entry (reference
    /// taken) is answered alone; any database error fails the whole batch.
    pub async fn write_batch(
        &self,
        entries: Vec<JournalEntry>,
        changes: Vec<PaymentChange>,
    ) -> Result<Written, StoreError> {
        if let Some(writer) = &self.sqlite_writer {
            // Behind the same in-process lock as every other write.
            let _guard = self.write_guard().await;
            return writer.commit(entries, changes).await;
        }
        if let Some(pool) = self.postgres_pool() {
            return write_postgres(&pool, &self.origin, entries, changes).await;
        }
        // An in-memory SQLite database (tests): sea-orm's transaction.
        let w = self.begin_write().await?;
        let mut started = Vec::with_capacity(entries.len());
        for entry in entries {
            started.push(operations::in_batch(
                operations::journal_in(&w.txn, entry).await,
            )?);
        }
        let results = batch_write::apply(&w.txn, changes).await?;
        if results.iter().any(|r| !r.appended.is_empty()) {
            crate::crashpoint::hit("in_commit");
        }
        w.txn.commit().await?;
        Ok((started, results))
    }
}

/// PostgreSQL's group commit, in two messages for a batch of webhooks (`pg_txn`, `pg_lists`).
async fn write_postgres(
    pool: &sqlx::PgPool,
    origin: &str,
    entries: Vec<JournalEntry>,
    changes: Vec<PaymentChange>,
) -> Result<Written, StoreError> {
    let txn = PgTxn::acquire(pool).await?;
    let written = postgres_batch(&txn, origin, entries, changes).await;
    if written.is_err() {
        txn.rollback().await;
    }
    written
}

/// BEGIN, the append lock and the reads in one message (journal entries, rare in a batch of
/// webhooks, need the lock before the reads and a statement each); then the plan; effects one
/// statement each; the event insert, the payments' updates, NOTIFY and COMMIT in one message.
async fn postgres_batch(
    txn: &PgTxn,
    origin: &str,
    entries: Vec<JournalEntry>,
    changes: Vec<PaymentChange>,
) -> Result<Written, StoreError> {
    let mut started = Vec::with_capacity(entries.len());
    let loaded = if entries.is_empty() {
        let reads = Reads::new(&changes)?;
        reads.read(txn.begin_locked(&reads.sql).await?)?
    } else {
        txn.begin_locked("").await?;
        for entry in entries {
            started.push(operations::in_batch(
                operations::journal_in(txn, entry).await,
            )?);
        }
        if changes.is_empty() {
            batch::Loaded::default()
        } else {
            let reads = Reads::new(&changes)?;
            reads.read(txn.send(&reads.sql).await?)?
        }
    };
    let mut plan = batch::plan(changes, loaded)?;
    batch_write::write_effects(txn, &plan.effects).await?;
    let last = pg_lists::last_message(&plan.inserts, &plan.updates, origin)?;
    if !plan.inserts.is_empty() {
        crate::crashpoint::hit("in_commit");
    }
    let statements = txn.commit(&last).await?;
    if !plan.inserts.is_empty() {
        let rows = statements.into_iter().next().unwrap_or_default();
        let sequences = pg_lists::inserted(&plan.inserts, rows)?;
        plan.number(&sequences)?;
    }
    Ok((started, plan.results))
}
