//! Payment references and idempotency keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FieldViolation;

/// A merchant reference: `^[a-zA-Z0-9-]{8,50}$`, unique per merchant, case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference(String);

impl Reference {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let len = value.chars().count();
        if !(8..=50).contains(&len) {
            return Err(FieldViolation::new(
                field,
                format!("must be 8 to 50 characters, got {len}"),
            ));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(FieldViolation::new(
                field,
                "may only contain letters a-z, A-Z, digits and '-' (^[a-zA-Z0-9-]{8,50}$)",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// A fresh reference for a caller that did not bring one: `pg-` and 32 hex digits.
    pub fn generate() -> Self {
        Self(format!("pg-{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Idempotency-Key as Vipps accepts it: 1 to 50 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        if value.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if value.len() > 50 {
            return Err(FieldViolation::new(field, "must be at most 50 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldViolation::new(
                field,
                "may only contain printable ASCII characters without spaces",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Reference> for IdempotencyKey {
    /// A reference is always a valid key (8–50 of [a-zA-Z0-9-]).
    fn from(reference: &Reference) -> Self {
        Self(reference.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_rules() {
        assert!(Reference::parse("reference", "acme-shop-123-order123abc").is_ok());
        assert!(Reference::parse("reference", "12345678").is_ok());
        assert!(Reference::parse("reference", "1234567").is_err());
        assert!(Reference::parse("reference", &"a".repeat(50)).is_ok());
        assert!(Reference::parse("reference", &"a".repeat(51)).is_err());
        assert!(Reference::parse("reference", "abc_defgh").is_err());
        assert!(Reference::parse("reference", "abcdefgh'; DROP TABLE").is_err());
        assert!(Reference::parse("reference", "æøåæøåæøå").is_err());
        let generated = Reference::generate();
        assert!(Reference::parse("reference", generated.as_str()).is_ok());
    }

    #[test]
    fn idempotency_key_rules() {
        assert!(IdempotencyKey::parse("k", "capture-1").is_ok());
        assert!(IdempotencyKey::parse("k", "").is_err());
        assert!(IdempotencyKey::parse("k", &"k".repeat(51)).is_err());
        assert!(IdempotencyKey::parse("k", "has space").is_err());
    }
}
