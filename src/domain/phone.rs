//! Phone numbers are personal data: they print masked.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FieldViolation;

/// An MSISDN with country code, digits only: `^\d{10,15}$`, e.g. `4791234567`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let digits_only = value.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || !(10..=15).contains(&value.len()) {
            return Err(FieldViolation::new(
                field,
                "must be 10 to 15 digits including the country code, e.g. \"4791234567\"",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The full number, for Vipps and the caller. Never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Country code and the last two digits only, e.g. `47******67`: safe for logs.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        let head = &self.0[..2.min(n)];
        let tail = &self.0[n.saturating_sub(2)..];
        format!("{head}{}{tail}", "*".repeat(n.saturating_sub(4)))
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let p = PhoneNumber::parse("phone", "4791234567").unwrap();
        assert_eq!(p.masked(), "47******67");
        assert_eq!(format!("{p:?}"), "PhoneNumber(47******67)");
        assert_eq!(format!("{p}"), "47******67");
        assert!(PhoneNumber::parse("phone", "91234567").is_err());
        assert!(PhoneNumber::parse("phone", "+4791234567").is_err());
        assert!(PhoneNumber::parse("phone", "4791234567123456").is_err());
    }
}
