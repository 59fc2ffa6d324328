//! GetCustomer and DeleteCustomer.

use super::Payments;
use crate::domain::{CustomerKey, CustomerProfile, PaygateError};

impl Payments {
    pub async fn customer(&self, key: &CustomerKey) -> Result<CustomerProfile, PaygateError> {
        self.store()
            .get_customer(key.as_str())
            .await?
            .ok_or_else(|| PaygateError::NotFound(format!("no stored data for customer {key:?}")))
    }

    /// Erases the customer's personal data everywhere paygate keeps it.
    pub async fn delete_customer(&self, key: &CustomerKey) -> Result<(), PaygateError> {
        if self.store().delete_customer(key.as_str()).await? {
            tracing::info!("customer data erased");
            Ok(())
        } else {
            Err(PaygateError::NotFound(format!(
                "no stored data for customer {key:?}"
            )))
        }
    }
}
