//! The gRPC edge: the only place where protobuf types meet domain types.

pub mod codec;
mod convert;
mod customer_service;
mod merchant_qr_service;
mod payment_service;
pub mod proto;
mod server;
mod status;
mod validate;

pub use customer_service::CustomerApi;
pub use merchant_qr_service::MerchantQrApi;
pub use payment_service::{PaymentApi, StreamSettings};
pub use server::{serve, Services};
