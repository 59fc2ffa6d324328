//! Operator and developer commands that talk to a running paygate over gRPC.

pub mod demo;
pub mod qr;
