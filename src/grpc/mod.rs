//! The gRPC edge: the only place where protobuf types meet domain types.

mod convert;
mod payment_service;
pub mod proto;
mod status;
mod validate;

pub use payment_service::{PaymentApi, StreamSettings};
