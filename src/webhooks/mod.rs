//! Vipps webhooks: registration at start-up, and the sidecar endpoint that verifies, records and
//! acknowledges them (raw body → verify → parse → commit → 2xx).

mod handler;
mod registration;
mod verifier;

pub use handler::{receive, WebhookIngest};
pub use registration::keep_registered;
pub use verifier::{Verifier, VerifyError};
