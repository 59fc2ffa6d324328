//! The reconciler's schedule: which payments to poll next, claimed so that two replicas never
//! poll the same payment at once.

use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

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

    /// Claims a due payment until `until_ms`: a compare-and-set on its poll time, so among
    /// replicas that saw it due, exactly one wins.
    pub async fn claim_poll(&self, due: &DuePoll, until_ms: i64) -> Result<bool, StoreError> {
        let w = self.begin_write().await?;
        let claimed = payment::Entity::update_many()
            .col_expr(payment::Column::NextPollMs, Expr::value(until_ms))
            .filter(payment::Column::Reference.eq(due.reference.as_str()))
            .filter(payment::Column::NextPollMs.eq(due.next_poll_ms))
            .exec(&w.txn)
            .await?
            .rows_affected
            == 1;
        w.txn.commit().await?;
        Ok(claimed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::test_support;

    #[tokio::test]
    async fn only_one_poller_claims_a_payment() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = test_support::fresh_store(&dir).await;
        let payment = test_support::payment("poll-claim-0001");
        {
            let w = store.begin_write().await.unwrap();
            super::super::payments::insert(&w.txn, &payment)
                .await
                .unwrap();
            super::super::payments::update(&w.txn, &payment, true)
                .await
                .unwrap();
            w.txn.commit().await.unwrap();
        }
        let due = store.due_polls(0, 10).await.unwrap();
        let mine = due
            .iter()
            .find(|d| d.reference == "poll-claim-0001")
            .expect("due");
        let until = chrono::Utc::now().timestamp_millis() + 60_000;
        assert!(store.claim_poll(mine, until).await.unwrap());
        assert!(
            !store.claim_poll(mine, until).await.unwrap(),
            "the second claimant loses"
        );
        assert!(
            store.due_polls(0, 10).await.unwrap().is_empty(),
            "claimed: not due"
        );
        store.close().await;
    }
}
