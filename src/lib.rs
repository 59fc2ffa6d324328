//! paygate: a gRPC payment gateway for the Vipps MobilePay ePayment API.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod emulator;
pub mod events;
pub mod grpc;
pub mod http;
pub mod payments;
pub mod store;
pub mod telemetry;
pub mod vipps;
pub mod webhooks;
