//! Vipps webhooks: registration at start-up, and the sidecar endpoint that verifies, records and
//! acknowledges them (raw body → verify → parse → commit → 2xx).

mod handler;
mod registration;
pub mod signature;
mod verifier;

pub use handler::{receive, WebhookIngest, WebhookStats};
pub use registration::{ensure_registered, EPAYMENT_EVENTS};
pub use verifier::{Verifier, VerifyError};
