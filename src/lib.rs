//! paygate: a gRPC payment gateway for the Vipps MobilePay ePayment API.
#![forbid(unsafe_code)]

pub mod emulator;
pub mod vipps;
pub mod domain;
pub mod store;
pub mod events;
pub mod payments;
pub mod grpc;
pub mod app;
pub mod config;
pub mod http;
pub mod telemetry;
