//! The one write transaction: journal entries and payment changes of a batch (group commit),
//! committed together with one fsync. A SQLite file writes it on `sqlite_writer`'s thread;
//! PostgreSQL (and an in-memory SQLite) through sea-orm, here.

use sea_orm::ConnectionTrait;

use super::{
    change::{CommitResult, PaymentChange},
    operations::{self, JournalEntry, Journaled},
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
        let w = self.begin_write().await?;
        let mut started = Vec::with_capacity(entries.len());
        for entry in entries {
            started.push(operations::in_batch(
                operations::journal_in(&w.txn, entry).await,
            )?);
        }
        let results = super::batch_write::apply(&w.txn, changes).await?;
        let latest = results
            .iter()
            .flat_map(|r| r.appended.last())
            .map(|e| e.sequence)
            .max();
        if let (Some(latest), sea_orm::DbBackend::Postgres) = (latest, self.backend) {
            w.txn
                .execute_unprepared(&format!(
                    "SELECT pg_notify('{}', '{}')",
                    super::NOTIFY_CHANNEL,
                    super::commit_notice(latest, &self.origin)
                ))
                .await?;
        }
        if results.iter().any(|r| !r.appended.is_empty()) {
            crate::crashpoint::hit("in_commit");
        }
        w.txn.commit().await?;
        Ok((started, results))
    }
}
