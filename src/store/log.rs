//! Reading the event log.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

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
}
