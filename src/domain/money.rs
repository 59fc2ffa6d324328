//! Money in integer minor units. There are no floats anywhere in paygate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Currencies the ePayment API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "NOK")]
    Nok,
    #[serde(rename = "DKK")]
    Dkk,
    #[serde(rename = "EUR")]
    Eur,
}

impl Currency {
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "NOK" => Some(Self::Nok),
            "DKK" => Some(Self::Dkk),
            "EUR" => Some(Self::Eur),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Nok => "NOK",
            Self::Dkk => "DKK",
            Self::Eur => "EUR",
        }
    }

    /// The smallest payment Vipps accepts, in minor units (NOK 1.00; DKK and EUR one minor unit).
    pub fn minimum_payment(self) -> i64 {
        match self {
            Self::Nok => 100,
            Self::Dkk | Self::Eur => 1,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub currency: Currency,
    pub value: i64,
}

impl Money {
    /// The largest amount the ePayment API accepts (spec: 65 000 000 minor units).
    pub const MAX_VALUE: i64 = 65_000_000;

    pub fn new(currency: Currency, value: i64) -> Self {
        Self { currency, value }
    }

    /// Parses a caller's amount for a payment or a modification: known currency, 1..=MAX_VALUE.
    /// `field` names the request field in the error.
    pub fn parse(field: &str, currency: &str, value: i64) -> Result<Self, super::FieldViolation> {
        let currency = Currency::parse(currency).ok_or_else(|| {
            super::FieldViolation::new(
                format!("{field}.currency"),
                format!("must be NOK, DKK or EUR, got {currency:?}"),
            )
        })?;
        if value <= 0 {
            return Err(super::FieldViolation::new(
                format!("{field}.value"),
                "must be a positive number of minor units",
            ));
        }
        if value > Self::MAX_VALUE {
            return Err(super::FieldViolation::new(
                format!("{field}.value"),
                format!("must be at most {} minor units", Self::MAX_VALUE),
            ));
        }
        Ok(Self { currency, value })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.currency, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            Money::parse("amount", "NOK", 35000).unwrap(),
            Money::new(Currency::Nok, 35000)
        );
        assert_eq!(
            Money::parse("amount", "SEK", 1).unwrap_err().field,
            "amount.currency"
        );
        assert_eq!(
            Money::parse("amount", "NOK", 0).unwrap_err().field,
            "amount.value"
        );
        assert_eq!(
            Money::parse("amount", "NOK", -5).unwrap_err().field,
            "amount.value"
        );
        assert!(Money::parse("amount", "EUR", Money::MAX_VALUE + 1).is_err());
    }
}
