//! paygate: a gRPC payment gateway for the Vipps MobilePay ePayment API.
//!
//! The library's API is what the `paygate` binary and the integration tests need: build and
//! run the service (`app`), its configuration (`config`), the protobuf contract
//! (`grpc::proto`) and logging (`telemetry`). Everything else is private; `README.md` (Layout)
//! describes the modules.
#![forbid(unsafe_code)]

pub mod app;
mod auth;
pub mod config;
mod crashpoint;
mod domain;
mod events;
pub mod grpc;
mod health;
mod http;
mod payments;
mod qr;
mod store;
pub mod telemetry;
mod vipps;
mod webhooks;

#[cfg(test)]
mod test_support;

pub use http::WEBHOOK_BODY_LIMIT;
