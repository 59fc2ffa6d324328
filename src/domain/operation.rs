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
}

/// SHA-256 hex of the canonical JSON of a request's parameters.
pub fn fingerprint(params: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(params.to_string().as_bytes()))
}
