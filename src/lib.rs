//! paygate: a gRPC payment gateway for the Vipps MobilePay ePayment API.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod config;
pub mod crashpoint;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod health;
pub mod http;
pub mod payments;
pub mod qr;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod vipps;
pub mod webhooks;

#[cfg(test)]
mod test_support;
