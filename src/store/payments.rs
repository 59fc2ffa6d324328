//! Reading and writing payments.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, IntoActiveModel};

use super::{convert, entities::payment, Store, StoreError};
use crate::domain::Payment;

impl Store {
    /// The payment with this reference, if paygate has it.
    pub async fn get_payment(&self, reference: &str) -> Result<Option<Payment>, StoreError> {
        load(&self.db, reference)
            .await
            .map(|found| found.map(|(p, _)| p))
    }
}

/// The payment and its `confirmed` flag.
pub(super) async fn load<C: ConnectionTrait>(
    db: &C,
    reference: &str,
) -> Result<Option<(Payment, bool)>, StoreError> {
    match payment::Entity::find_by_id(reference.to_owned())
        .one(db)
        .await?
    {
        Some(model) => {
            let confirmed = model.confirmed;
            Ok(Some((convert::payment(model)?, confirmed)))
        }
        None => Ok(None),
    }
}

pub(super) async fn insert<C: ConnectionTrait>(db: &C, p: &Payment) -> Result<(), StoreError> {
    let model = convert::payment_model(p, false).into_active_model();
    payment::Entity::insert(model)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Every column a change can move. Not the customer key, set at the create and never changed
/// (out of the SET, its index entry is left alone), nor the columns with statements of their own
/// (profile status and failure, poll schedule).
pub(super) async fn update<C: ConnectionTrait>(
    db: &C,
    p: &Payment,
    confirmed: bool,
) -> Result<(), StoreError> {
    let m = convert::payment_model(p, confirmed);
    let active = payment::ActiveModel {
        reference: Set(m.reference),
        psp_reference: Set(m.psp_reference),
        state: Set(m.state),
        currency: Set(m.currency),
        amount: Set(m.amount),
        authorized: Set(m.authorized),
        captured: Set(m.captured),
        refunded: Set(m.refunded),
        cancelled: Set(m.cancelled),
        user_flow: Set(m.user_flow),
        redirect_url: Set(m.redirect_url),
        phone_number: Set(m.phone_number),
        profile_sub: Set(m.profile_sub),
        metadata: Set(m.metadata),
        confirmed: Set(m.confirmed),
        update_time_ms: Set(m.update_time_ms),
        ..Default::default()
    };
    payment::Entity::update(active).exec(db).await?;
    Ok(())
}

pub(super) async fn delete<C: ConnectionTrait>(db: &C, reference: &str) -> Result<(), StoreError> {
    payment::Entity::delete_by_id(reference.to_owned())
        .exec(db)
        .await?;
    Ok(())
}
