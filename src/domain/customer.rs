//! A known customer: the phone number they agreed to share, under the caller's own key.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FieldViolation, PhoneNumber};

/// The caller's own name for a customer (a rider id, an account number): 1 to 128 characters
/// without control characters. paygate stores the shared phone number under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerKey(String);

impl CustomerKey {
    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        let len = value.chars().count();
        if len == 0 || len > 128 || value.chars().any(char::is_control) {
            return Err(FieldViolation::new(
                "customer_key",
                "must be 1 to 128 characters without control characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    pub customer_key: String,
    pub phone_number: PhoneNumber,
    pub profile_sub: Option<String>,
    pub shared_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::CustomerKey;

    #[test]
    fn customer_key_rules() {
        assert!(CustomerKey::parse("rider-42").is_ok());
        assert!(CustomerKey::parse("").is_err());
        assert!(CustomerKey::parse(&"k".repeat(128)).is_ok());
        assert!(CustomerKey::parse(&"k".repeat(129)).is_err());
        assert!(CustomerKey::parse("a\u{0}b").is_err());
    }
}
