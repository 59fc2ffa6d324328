//! The gRPC edge: the only place where protobuf types meet domain types.

mod audit;
pub(crate) mod codec;
mod convert;
mod customer_service;
mod merchant_qr_service;
mod payment_service;
pub mod proto;
mod server;
mod status;
mod validate;

use customer_service::CustomerApi;
use merchant_qr_service::MerchantQrApi;
use payment_service::PaymentApi;
pub(crate) use payment_service::StreamSettings;
pub(crate) use server::{serve, Services};
