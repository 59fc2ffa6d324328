//! Integration tests: the real wiring over gRPC against the in-process emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod helpers;
mod idempotency;
mod lifecycle;
mod ops;
mod reconcile;
mod soak;
mod streams;
mod taxi;
mod validation;
mod webhooks;
