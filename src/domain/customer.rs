//! A known customer: the phone number they agreed to share, under the caller's own key.

use chrono::{DateTime, Utc};

use super::PhoneNumber;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    pub customer_key: String,
    pub phone_number: PhoneNumber,
    pub profile_sub: Option<String>,
    pub shared_time: DateTime<Utc>,
}
