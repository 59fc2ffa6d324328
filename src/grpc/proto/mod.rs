//! Generated protobuf and tonic types for `paygate.v1`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("paygate.v1");

mod shared_response;
pub use shared_response::{stream_payment_events_response, StreamPaymentEventsResponse};

/// The encoded descriptor set, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("paygate_descriptor");
