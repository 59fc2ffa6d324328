//! HTTP client for the Vipps MobilePay APIs paygate calls: access-token cache, common headers,
//! retries with one Idempotency-Key per operation, and errors that say whether a money-moving
//! call may have taken effect.

// `VippsError::Rejected` carries the whole `Problem` inline (the shape callers match on), which
// puts the error just over clippy's 128-byte threshold. Calls are network-bound; the copy is noise.
#![allow(clippy::result_large_err)]
mod api;
mod client;
mod config;
mod error;
pub mod mapping;
pub mod models;
mod retry;
mod token;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests;

pub use client::VippsClient;
#[cfg(test)]
use config::RetryPolicy;
pub use config::VippsConfig;
pub use error::VippsError;
pub use models::QrFormat;
