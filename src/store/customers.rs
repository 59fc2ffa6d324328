//! Known customers and profile sharing; erasure of personal data.

use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
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
            // Written as the partial index's own condition (`payments_profile_pending`), not a
            // bound value: PostgreSQL's generic plan could not use the index for `= $1`.
            .filter(Expr::cust("profile_status = 'pending'"))
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

    /// Erases personal data wherever paygate keeps it: the customer rows, the phone number and
    /// Vipps `sub` of the matching payments, their event snapshots and journal entries (request
    /// bodies and outcomes). Pending profile work of those payments is cancelled, so a late
    /// Userinfo answer cannot bring the data back.
    pub async fn erase(&self, target: &Erasure) -> Result<Erased, StoreError> {
        let w = self.begin_write().await?;
        let db = &w.txn;
        let customers = match target {
            Erasure::Customer(key) => customer::Entity::delete_by_id(key.clone()).exec(db).await?,
            Erasure::PhoneNumber(number) => {
                customer::Entity::delete_many()
                    .filter(customer::Column::PhoneNumber.eq(number.as_str()))
                    .exec(db)
                    .await?
            }
        }
        .rows_affected;
        let payments = match target {
            Erasure::Customer(key) => payment::Column::CustomerKey.eq(key.as_str()),
            Erasure::PhoneNumber(number) => payment::Column::PhoneNumber.eq(number.as_str()),
        };
        let rows = payment::Entity::find().filter(payments).all(db).await?;
        let mut erased = Erased {
            customers,
            ..Erased::default()
        };
        for row in &rows {
            if row.phone_number.is_some() || row.profile_sub.is_some() {
                erased.payments += 1;
            }
            payment::Entity::update_many()
                .col_expr(
                    payment::Column::PhoneNumber,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    payment::Column::ProfileSub,
                    Expr::value(Option::<String>::None),
                )
                .filter(payment::Column::Reference.eq(row.reference.as_str()))
                .exec(db)
                .await?;
            if row.profile_status.as_deref() == Some("pending") {
                set_profile_status(db, &row.reference, "erased", None).await?;
            }
            erased.events +=
                scrub_events(db, event::Column::Reference.eq(row.reference.as_str())).await?;
            scrub_operations(db, operation::Column::Reference.eq(row.reference.as_str())).await?;
        }
        // A number may also sit in snapshots and journal entries of payments whose row no longer
        // holds it (a later event, a changed number): search the text for it.
        if let Erasure::PhoneNumber(number) = target {
            let pattern = format!("%{number}%");
            erased.events +=
                scrub_events(db, event::Column::Payment.like(pattern.as_str())).await?;
            scrub_operations(
                db,
                operation::Column::Request
                    .like(pattern.as_str())
                    .or(operation::Column::Outcome.like(pattern.as_str())),
            )
            .await?;
        }
        w.txn.commit().await?;
        Ok(erased)
    }
}

/// Whose personal data to erase.
#[derive(Debug, Clone)]
pub enum Erasure {
    /// A customer key: the customer row and every payment made under it.
    Customer(String),
    /// A phone number (digits): every payment, snapshot, journal entry and customer holding it.
    PhoneNumber(String),
}

/// What an erasure changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub customers: u64,
    pub payments: u64,
    pub events: u64,
}

fn scrub_snapshot(json: &str) -> Option<String> {
    let mut p: Payment = serde_json::from_str(json).ok()?;
    if p.phone_number.is_none() && p.profile_sub.is_none() {
        return None;
    }
    p.phone_number = None;
    p.profile_sub = None;
    serde_json::to_string(&p).ok()
}

/// Removes phone number and `sub` from the snapshots of the matching events; returns how many
/// held any.
async fn scrub_events<C: ConnectionTrait>(
    db: &C,
    matching: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, StoreError> {
    let rows = event::Entity::find().filter(matching).all(db).await?;
    let mut scrubbed = 0;
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
        scrubbed += 1;
    }
    Ok(scrubbed)
}

/// Journal entries keep their outcome and request without personal data. A pending create
/// loses its customer's number too: re-sent, Vipps refuses it instead of pushing an erased
/// person.
async fn scrub_operations<C: ConnectionTrait>(
    db: &C,
    matching: sea_orm::sea_query::SimpleExpr,
) -> Result<(), StoreError> {
    let rows = operation::Entity::find().filter(matching).all(db).await?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use crate::test_support;

    /// Erased data must not stay readable in SQLite's free pages.
    #[tokio::test]
    async fn sqlite_overwrites_deleted_content() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = test_support::fresh_store(&dir).await;
        if !url.starts_with("sqlite") {
            return;
        }
        let row = store
            .db
            .query_one(Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "PRAGMA secure_delete",
            ))
            .await
            .unwrap()
            .unwrap();
        let on: i64 = row.try_get_by_index(0).unwrap();
        assert_eq!(on, 1);
        store.close().await;
    }
}
