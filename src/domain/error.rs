//! The one error type of paygate's service layer. Each boundary maps it exhaustively
//! (gRPC: `grpc::status`).

/// One bad field in a request: which field, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why a request was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PaygateError {
    /// The request itself is wrong; nothing was changed.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named payment or customer does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The payment's state forbids the operation, or an idempotency key was reused for other parameters.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Vipps kept answering 429, or a limit of paygate's own was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A stream cursor older than what retention kept.
    #[error("{0}")]
    OutOfRange(String),
    /// Vipps or the database cannot be reached; the caller may retry with the same idempotency key.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an upstream answer paygate cannot make sense of.
    #[error("{0}")]
    Internal(String),
}

impl PaygateError {
    /// A single bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}
