//! Known customers and profile sharing; erasure of personal data.

use sea_orm::{
    sea_query::OnConflict, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};

use super::{
    convert,
    entities::{customer, event, operation, payment},
    Store, StoreError,
};
use crate::domain::{CustomerProfile, Payment, PhoneNumber};

impl Store {
    pub async fn get_customer(&self, key: &str) -> Result<Option<CustomerProfile>, StoreError> {
        let Some(m) = customer::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let phone_number = PhoneNumber::parse("phone_number", &m.phone_number)
            .map_err(|_| StoreError::Corrupt("customer phone number".into()))?;
        Ok(Some(CustomerProfile {
            customer_key: m.customer_key,
            phone_number,
            profile_sub: m.profile_sub,
            shared_time: convert::time(m.shared_time_ms),
        }))
    }

    /// References of AUTHORIZED payments whose shared profile is still to be fetched.
    pub async fn pending_profiles(&self, limit: u64) -> Result<Vec<String>, StoreError> {
        use sea_orm::{QueryOrder, QuerySelect};
        Ok(payment::Entity::find()
            .filter(payment::Column::ProfileStatus.eq("pending"))
            .filter(payment::Column::State.eq("AUTHORIZED"))
            .order_by_asc(payment::Column::UpdateTimeMs)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| m.reference)
            .collect())
    }

    /// Whether the payment's profile is still to be fetched.
    pub async fn profile_pending(&self, reference: &str) -> Result<bool, StoreError> {
        Ok(payment::Entity::find_by_id(reference.to_owned())
            .one(&self.db)
            .await?
            .is_some_and(|m| m.profile_status.as_deref() == Some("pending")))
    }

    /// Erases a customer's personal data: the customer row, and the phone number and profile
    /// subject on their payments, in the payments' event snapshots and in settled journal
    /// entries. Returns whether the customer existed.
    pub async fn delete_customer(&self, key: &str) -> Result<bool, StoreError> {
        let w = self.begin_write().await?;
        let db = &w.txn;
        let existed = customer::Entity::delete_by_id(key.to_owned())
            .exec(db)
            .await?
            .rows_affected
            > 0;
        // Only payments that still hold personal data need erasing.
        let references: Vec<String> = payment::Entity::find()
            .filter(payment::Column::CustomerKey.eq(key))
            .all(db)
            .await?
            .into_iter()
            .filter(|m| m.phone_number.is_some() || m.profile_sub.is_some())
            .map(|m| m.reference)
            .collect();
        for reference in &references {
            payment::Entity::update_many()
                .col_expr(
                    payment::Column::PhoneNumber,
                    sea_orm::sea_query::Expr::value(Option::<String>::None),
                )
                .col_expr(
                    payment::Column::ProfileSub,
                    sea_orm::sea_query::Expr::value(Option::<String>::None),
                )
                .filter(payment::Column::Reference.eq(reference.as_str()))
                .exec(db)
                .await?;
            scrub_events(db, reference).await?;
            scrub_operations(db, reference).await?;
        }
        w.txn.commit().await?;
        Ok(existed || !references.is_empty())
    }
}

fn scrub_snapshot(json: &str) -> Option<String> {
    let mut p: Payment = serde_json::from_str(json).ok()?;
    p.phone_number = None;
    p.profile_sub = None;
    serde_json::to_string(&p).ok()
}

async fn scrub_events<C: ConnectionTrait>(db: &C, reference: &str) -> Result<(), StoreError> {
    let rows = event::Entity::find()
        .filter(event::Column::Reference.eq(reference))
        .all(db)
        .await?;
    for row in rows {
        let Some(snapshot) = row.payment.as_deref().and_then(scrub_snapshot) else {
            continue;
        };
        event::Entity::update(event::ActiveModel {
            sequence: Set(row.sequence),
            payment: Set(Some(snapshot)),
            ..Default::default()
        })
        .exec(db)
        .await?;
    }
    Ok(())
}

/// Settled journal entries keep their outcome without personal data; a pending create keeps
/// its request (it may still have to be re-sent unchanged).
async fn scrub_operations<C: ConnectionTrait>(db: &C, reference: &str) -> Result<(), StoreError> {
    let rows = operation::Entity::find()
        .filter(operation::Column::Reference.eq(reference))
        .filter(operation::Column::Status.ne("pending"))
        .all(db)
        .await?;
    for row in rows {
        let outcome = row
            .outcome
            .as_deref()
            .map(|o| scrub_snapshot(o).unwrap_or_else(|| o.to_owned()));
        let mut request: serde_json::Value = serde_json::from_str(&row.request).unwrap_or_default();
        if let Some(customer) = request.get_mut("customer") {
            *customer = serde_json::Value::Null;
        }
        operation::Entity::update(operation::ActiveModel {
            id: Set(row.id),
            outcome: Set(outcome),
            request: Set(request.to_string()),
            ..Default::default()
        })
        .exec(db)
        .await?;
    }
    Ok(())
}

/// Records (or replaces) a customer's shared phone number.
pub(super) async fn upsert<C: ConnectionTrait>(
    db: &C,
    customer: &CustomerProfile,
) -> Result<(), StoreError> {
    let model = customer::ActiveModel {
        customer_key: Set(customer.customer_key.clone()),
        phone_number: Set(customer.phone_number.expose().to_owned()),
        profile_sub: Set(customer.profile_sub.clone()),
        shared_time_ms: Set(customer.shared_time.timestamp_millis()),
    };
    customer::Entity::insert(model)
        .on_conflict(
            OnConflict::column(customer::Column::CustomerKey)
                .update_columns([
                    customer::Column::PhoneNumber,
                    customer::Column::ProfileSub,
                    customer::Column::SharedTimeMs,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Sets a payment's profile status (and failure reason).
pub(super) async fn set_profile_status<C: ConnectionTrait>(
    db: &C,
    reference: &str,
    status: &str,
    failure: Option<&str>,
) -> Result<(), StoreError> {
    payment::Entity::update_many()
        .col_expr(
            payment::Column::ProfileStatus,
            sea_orm::sea_query::Expr::value(status),
        )
        .col_expr(
            payment::Column::Failure,
            sea_orm::sea_query::Expr::value(failure.map(str::to_owned)),
        )
        .filter(payment::Column::Reference.eq(reference))
        .exec(db)
        .await?;
    Ok(())
}
