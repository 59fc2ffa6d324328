//! The audit trail: one structured log line (target `audit`) per money-moving or data-erasing
//! call, saying who called what on which payment, with which idempotency key, and how it ended.
//! Never a token, never a full phone number (the journal also keeps the caller's name).

use tonic::Status;

use crate::auth::Caller;

/// What an audited call acted on.
pub struct Audited<'a> {
    pub rpc: &'static str,
    /// The payment reference, or for erasures the customer key / masked phone number.
    pub subject: &'a str,
    pub idempotency_key: &'a str,
}

/// Writes the audit line for a finished call.
pub fn record<T>(caller: &Caller, call: &Audited<'_>, result: &Result<T, Status>) {
    let outcome = match result {
        Ok(_) => "ok".to_owned(),
        Err(status) => format!("{:?}", status.code()),
    };
    tracing::info!(
        target: "audit",
        caller = %caller.name,
        rpc = call.rpc,
        subject = call.subject,
        idempotency_key = call.idempotency_key,
        outcome,
        "audit"
    );
}
