//! Operator and developer commands that talk to a running paygate over gRPC.

pub mod client;
pub mod demo;
pub mod events;
mod format;
pub mod payments;
pub mod qr;
