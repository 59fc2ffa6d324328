//! Money-moving operations as journalled before paygate calls Vipps.

use serde::{Deserialize, Serialize};

/// What a journalled operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Create,
    Capture,
    Cancel,
    Refund,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Capture => "capture",
            Self::Cancel => "cancel",
            Self::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => Self::Create,
            "capture" => Self::Capture,
            "cancel" => Self::Cancel,
            "refund" => Self::Refund,
            _ => return None,
        })
    }
}

/// Where a journalled operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Recorded, upstream outcome not yet known: a retry re-sends it with the same key.
    Pending,
    /// Vipps carried it out; `outcome` holds the payment as it stood after it.
    Succeeded,
    /// Vipps refused it; `outcome` holds the refusal, replayed to retries.
    Rejected,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// An operation to journal.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub kind: OperationKind,
    pub reference: String,
    pub idempotency_key: String,
    /// SHA-256 (hex) of the caller's parameters.
    pub fingerprint: String,
    /// The exact upstream request, so a re-send is byte-for-byte the same call.
    pub request: serde_json::Value,
    /// The first send's lease: journalling claims it, so nobody else sends meanwhile.
    pub lease_until_ms: i64,
    /// Who asked for it (the audit trail).
    pub caller: String,
}

impl NewOperation {
    /// Create keys are global (a create may not name its reference); other keys are per payment.
    pub fn scope(&self) -> &str {
        match self.kind {
            OperationKind::Create => "",
            _ => &self.reference,
        }
    }
}

/// A journalled operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: i64,
    pub kind: OperationKind,
    pub reference: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub request: serde_json::Value,
    pub status: OperationStatus,
    pub outcome: Option<serde_json::Value>,
    /// How often it was sent (the re-send backoff grows with it).
    pub sends: u32,
}

/// How long a re-send of an operation sent `sends` times waits: immediately once (a caller's
/// retry after a lost answer), then growing. Never more than five sends in any minute, which is
/// Vipps' limit per reference for create, capture, cancel and refund.
pub fn resend_backoff(sends: u32) -> std::time::Duration {
    let secs = match sends {
        0 | 1 => 0,
        2 => 2,
        3 => 5,
        4 => 15,
        n => 60u64.saturating_mul(1 << (n - 5).min(3)),
    };
    std::time::Duration::from_secs(secs)
}

/// SHA-256 hex of the canonical JSON of a request's parameters.
pub fn fingerprint(params: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(params.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::resend_backoff;

    /// However fast each send fails, no 60 s window holds more than five sends of one
    /// operation (Vipps: 5 per minute per reference), and the first re-send may be immediate.
    #[test]
    fn resends_stay_within_five_per_minute() {
        assert_eq!(resend_backoff(1).as_secs(), 0);
        let mut at = vec![0u64];
        for sends in 1..40 {
            let last = at[at.len() - 1];
            at.push(last + resend_backoff(sends).as_secs());
        }
        for (i, start) in at.iter().enumerate() {
            let in_window = at[i..].iter().take_while(|t| **t < start + 60).count();
            assert!(
                in_window <= 5,
                "{in_window} sends within 60 s from {start}: {at:?}"
            );
        }
        assert!(
            resend_backoff(40).as_secs() <= 600,
            "never more than ten minutes apart"
        );
    }
}
