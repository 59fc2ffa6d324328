//! Reading the event log.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::{convert, entities::event, Store, StoreError};
use crate::domain::PaymentEvent;

impl Store {
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
        if let Some(reader) = &self.sqlite_reader {
            return reader
                .page_after(after, i64::try_from(limit).unwrap_or(i64::MAX))
                .await;
        }
        if self.db.get_database_backend() == DbBackend::Sqlite {
            return self.sqlite_page_after(after, limit).await;
        }
        self.model_page_after(after, limit).await
    }

    /// `events_after` through sea-orm models, row by row (PostgreSQL).
    async fn model_page_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
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

    /// `events_after` on an in-memory SQLite database (a file has `sqlite_reader`): the page
    /// comes back as one row, a JSON array built by SQLite.
    /// sqlx hands every result row from its SQLite thread to ours separately, a thread wake-up
    /// per row; in a catch-up profile those hand-offs (and copying each value) were about half
    /// of paygate's CPU. One row crosses once, and the snapshot is parsed in the same pass.
    async fn sqlite_page_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        const PAGE: &str = "SELECT json_group_array(json_object(\
            'sequence', sequence, 'reference', reference, 'psp_reference', psp_reference, \
            'name', name, 'currency', currency, 'amount', amount, 'timestamp_ms', timestamp_ms, \
            'idempotency_key', idempotency_key, 'success', success, 'source', source, \
            'payment', json(payment))) AS page \
            FROM (SELECT * FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?)";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let row = self
            .db
            .query_one(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                PAGE,
                [after.into(), limit.into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let page: String = row.try_get("", "page")?;
        let rows: Vec<convert::LoggedRow> = serde_json::from_str(&page)
            .map_err(|e| StoreError::Corrupt(format!("event page: {e}")))?;
        let mut events = rows
            .into_iter()
            .map(convert::logged)
            .collect::<Result<Vec<_>, _>>()?;
        // An aggregate's order is SQLite's choice, not a promise: keep the log's.
        events.sort_unstable_by_key(|e| e.sequence);
        Ok(events)
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};

    use super::*;
    use crate::{domain::PhoneNumber, test_support};

    fn row(
        sequence: i64,
        payment: Option<String>,
        key: Option<&str>,
        success: bool,
    ) -> event::Model {
        event::Model {
            sequence,
            dedupe_key: format!("page-test-{sequence}"),
            reference: "ride-page-0001".into(),
            psp_reference: format!("psp-\"{sequence}\"\\u00e6"),
            name: "AUTHORIZED".into(),
            currency: "NOK".into(),
            amount: 12_345 + sequence,
            timestamp_ms: 1_764_000_000_000 + sequence,
            idempotency_key: key.map(str::to_owned),
            success,
            source: "webhook".into(),
            payment,
            recorded_ms: 1_764_000_000_000,
        }
    }

    /// SQLite's one-row JSON page and the file's own reader (`sqlite_reader`, what
    /// `events_after` uses on a file) read exactly what the row-by-row sea-orm path reads:
    /// nulls, booleans, quotes and escapes in text, and the payment snapshot with personal data.
    #[tokio::test]
    async fn the_sqlite_json_page_reads_what_the_models_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = test_support::fresh_store(&dir).await;
        if !url.starts_with("sqlite") {
            return;
        }
        let mut payment = test_support::payment("ride-page-0001");
        payment.phone_number = Some(PhoneNumber::parse("phone_number", "4791234567").unwrap());
        payment.customer_key = Some("rider \"quoted\" ø".into());
        let snapshot = serde_json::to_string(&payment).unwrap();
        for m in [
            row(1, Some(snapshot.clone()), Some("key-1"), true),
            row(2, None, None, false),
            row(3, Some(snapshot), None, true),
        ] {
            m.into_active_model().insert(&store.db).await.unwrap();
        }
        let json_page = store.sqlite_page_after(0, 10).await.unwrap();
        let model_page = store.model_page_after(0, 10).await.unwrap();
        assert_eq!(json_page.len(), 3);
        assert_eq!(json_page, model_page);
        assert_eq!(json_page[0].payment.as_ref(), Some(&payment));
        assert_eq!(
            store.sqlite_page_after(1, 1).await.unwrap(),
            model_page[1..2]
        );
        assert!(store.sqlite_page_after(3, 10).await.unwrap().is_empty());
        assert!(store.sqlite_reader.is_some(), "a file has its reader");
        assert_eq!(store.events_after(0, 10).await.unwrap(), model_page);
        assert_eq!(store.events_after(1, 1).await.unwrap(), model_page[1..2]);
        assert!(store.events_after(3, 10).await.unwrap().is_empty());
        store.close().await;
    }
}
