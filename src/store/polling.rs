//! The reconciler's schedule: which payments to poll next, claimed so that two replicas never
//! poll the same payment at once.

use sea_orm::{
    sea_query::{CaseStatement, Expr},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};

use super::{entities::payment, now_ms, Store, StoreError};

/// A payment due for polling.
#[derive(Debug, Clone)]
pub struct DuePoll {
    pub reference: String,
    pub create_time_ms: i64,
    pub next_poll_ms: i64,
}

impl Store {
    /// Confirmed payments still CREATED, at least `min_age_ms` old, whose poll time has come.
    pub async fn due_polls(&self, min_age_ms: i64, limit: u64) -> Result<Vec<DuePoll>, StoreError> {
        let now = now_ms();
        Ok(payment::Entity::find()
            .filter(payment::Column::State.eq("CREATED"))
            .filter(payment::Column::Confirmed.eq(true))
            .filter(payment::Column::NextPollMs.lte(now))
            .filter(payment::Column::CreateTimeMs.lte(now - min_age_ms))
            .order_by_asc(payment::Column::NextPollMs)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| DuePoll {
                reference: m.reference,
                create_time_ms: m.create_time_ms,
                next_poll_ms: m.next_poll_ms,
            })
            .collect())
    }

    /// Claims due payments, each until its own time, in ONE write (one fsync for a tick's batch
    /// instead of one per payment: the reconciler polls up to 50 a second, and every claim
    /// waited behind the same write lock as the creates and webhooks). Each claim is a
    /// compare-and-set on the poll time read with it, so among replicas that saw a payment due,
    /// exactly one wins. Answers the references this call claimed.
    pub async fn claim_polls(&self, claims: &[(DuePoll, i64)]) -> Result<Vec<String>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let until = claims
            .iter()
            .fold(CaseStatement::new(), |case, (due, until)| {
                case.case(
                    payment::Column::Reference.eq(due.reference.as_str()),
                    *until,
                )
            })
            .finally(Expr::col(payment::Column::NextPollMs));
        let unchanged = claims.iter().fold(Condition::any(), |any, (due, _)| {
            any.add(
                Condition::all()
                    .add(payment::Column::Reference.eq(due.reference.as_str()))
                    .add(payment::Column::NextPollMs.eq(due.next_poll_ms)),
            )
        });
        let mut update = payment::Entity::update_many()
            .col_expr(payment::Column::NextPollMs, until.into())
            .filter(unchanged)
            .into_query();
        update.returning_col(payment::Column::Reference);
        let w = self.begin_write().await?;
        let rows = w.txn.query_all(self.backend.build(&update)).await?;
        w.txn.commit().await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String>("", "reference")?))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use sea_orm::EntityTrait;

    use crate::test_support;

    /// Stores confirmed CREATED payments, due for polling at once.
    async fn due_payments(store: &super::Store, references: &[&str]) {
        let w = store.begin_write().await.unwrap();
        for reference in references {
            let payment = test_support::payment(reference);
            super::super::payments::insert(&w.txn, &payment)
                .await
                .unwrap();
            super::super::payments::update(&w.txn, &payment, true)
                .await
                .unwrap();
        }
        w.txn.commit().await.unwrap();
    }

    #[tokio::test]
    async fn only_one_poller_claims_a_payment() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = test_support::fresh_store(&dir).await;
        due_payments(&store, &["poll-claim-0001"]).await;
        let due = store.due_polls(0, 10).await.unwrap();
        let mine = due
            .iter()
            .find(|d| d.reference == "poll-claim-0001")
            .expect("due");
        let until = chrono::Utc::now().timestamp_millis() + 60_000;
        let claim = [(mine.clone(), until)];
        assert_eq!(
            store.claim_polls(&claim).await.unwrap(),
            ["poll-claim-0001"]
        );
        assert!(
            store.claim_polls(&claim).await.unwrap().is_empty(),
            "the second claimant loses"
        );
        assert!(
            store.due_polls(0, 10).await.unwrap().is_empty(),
            "claimed: not due"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn one_write_claims_a_batch_each_until_its_own_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = test_support::fresh_store(&dir).await;
        due_payments(
            &store,
            &["poll-batch-0001", "poll-batch-0002", "poll-batch-0003"],
        )
        .await;
        let mut due = store.due_polls(0, 10).await.unwrap();
        due.sort_by(|a, b| a.reference.cmp(&b.reference));
        assert_eq!(due.len(), 3);
        // Another replica claimed the second one after this one read the schedule.
        let now = chrono::Utc::now().timestamp_millis();
        let theirs = now + 1_000;
        assert_eq!(
            store
                .claim_polls(&[(due[1].clone(), theirs)])
                .await
                .unwrap(),
            ["poll-batch-0002"]
        );
        let claims: Vec<_> = due
            .iter()
            .zip([now + 2_000, now + 5_000, now + 30_000])
            .map(|(d, until)| (d.clone(), until))
            .collect();
        let mut claimed = store.claim_polls(&claims).await.unwrap();
        claimed.sort();
        assert_eq!(claimed, ["poll-batch-0001", "poll-batch-0003"]);
        for (reference, until) in [
            ("poll-batch-0001", now + 2_000),
            ("poll-batch-0002", theirs),
            ("poll-batch-0003", now + 30_000),
        ] {
            let row = super::payment::Entity::find_by_id(reference)
                .one(&store.db)
                .await
                .unwrap()
                .expect("stored");
            assert_eq!(row.next_poll_ms, until, "{reference}");
        }
        assert!(store.claim_polls(&[]).await.unwrap().is_empty());
        store.close().await;
    }
}
