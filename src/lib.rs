//! paygate: a gRPC payment gateway for the Vipps MobilePay ePayment API.
#![forbid(unsafe_code)]

pub mod emulator;
pub mod vipps;
