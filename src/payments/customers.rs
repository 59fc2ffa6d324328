//! GetCustomer and DeleteCustomer.

use super::Payments;
use crate::{
    domain::{CustomerKey, CustomerProfile, PaygateError, PhoneNumber},
    store::{Erased, Erasure},
};

impl Payments {
    pub async fn customer(&self, key: &CustomerKey) -> Result<CustomerProfile, PaygateError> {
        self.store()
            .get_customer(key.as_str())
            .await?
            .ok_or_else(|| PaygateError::NotFound(format!("no stored data for customer {key:?}")))
    }

    /// Erases the customer's personal data everywhere paygate keeps it: the database (customer,
    /// payments, event snapshots, journal) and the in-memory window streams replay from.
    pub async fn delete_customer(&self, key: &CustomerKey) -> Result<Erased, PaygateError> {
        let erased = self
            .store()
            .erase(&Erasure::Customer(key.as_str().to_owned()))
            .await?;
        self.log
            .feed()
            .scrub(|p| p.customer_key.as_deref() == Some(key.as_str()));
        if erased == Erased::default() {
            return Err(PaygateError::NotFound(format!(
                "no stored data for customer {key:?}"
            )));
        }
        tracing::info!(
            payments = erased.payments,
            events = erased.events,
            "customer data erased"
        );
        Ok(erased)
    }

    /// Erases one phone number everywhere paygate keeps it (riders who paid without a
    /// customer key). Erasing a number paygate does not hold is not an error: it answers 0.
    pub async fn erase_phone_number(&self, number: &PhoneNumber) -> Result<Erased, PaygateError> {
        let erased = self
            .store()
            .erase(&Erasure::PhoneNumber(number.expose().to_owned()))
            .await?;
        self.log
            .feed()
            .scrub(|p| p.phone_number.as_ref() == Some(number));
        tracing::info!(
            payments = erased.payments,
            events = erased.events,
            "phone number erased"
        );
        Ok(erased)
    }
}
