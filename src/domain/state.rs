//! The payment state machine (REFERENCE.md §1): CREATED moves once to one of four final states.

use serde::{Deserialize, Serialize};

/// The state of a payment at Vipps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentState {
    Created,
    Authorized,
    Aborted,
    Expired,
    Terminated,
}

impl PaymentState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATED" => Some(Self::Created),
            "AUTHORIZED" => Some(Self::Authorized),
            "ABORTED" => Some(Self::Aborted),
            "EXPIRED" => Some(Self::Expired),
            "TERMINATED" => Some(Self::Terminated),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Authorized => "AUTHORIZED",
            Self::Aborted => "ABORTED",
            Self::Expired => "EXPIRED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Final states never change again (AUTHORIZED included: captures and refunds are events).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Created)
    }

    /// Whether moving from `self` to `next` goes forward. A late or reordered event that would
    /// move a payment backwards (or sideways between final states) is ignored for the state.
    pub fn can_become(self, next: Self) -> bool {
        self == Self::Created && next != Self::Created
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentState::*;

    #[test]
    fn only_forward() {
        assert!(Created.can_become(Authorized));
        assert!(Created.can_become(Terminated));
        assert!(!Authorized.can_become(Created));
        assert!(!Authorized.can_become(Aborted));
        assert!(!Expired.can_become(Authorized));
        assert!(!Created.can_become(Created));
    }
}
