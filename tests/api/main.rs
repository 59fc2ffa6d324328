//! paygate's integration tests, one binary: the real wiring started on port 0 against the
//! emulator (`helpers`), driven over gRPC and HTTP like a caller.
//!
//! - behaviour: lifecycle, idempotency, validation, webhooks, streams, taxi flow, operations,
//!   reconciler, faults injected at the emulator;
//! - faults from outside (`outside`): a TCP fault proxy in front of Vipps and PostgreSQL, a
//!   locked SQLite file, webhook deliveries duplicated, reordered and delayed;
//! - hostile input (`hostile`, and property tests in `fuzz`);
//! - crash recovery of the real binary, SIGKILLed at chosen points (`crash`);
//! - a randomized run under faults with invariants (`soak`, ignored by default; CI runs it).
//!
//! Every test is bounded in time and asserts outcomes, never timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod faults;
mod fuzz;
mod hardening;
mod helpers;
mod hostile;
mod idempotency;
mod lifecycle;
mod ops;
mod outside;
mod privacy;
mod reconcile;
mod soak;
mod streams;
mod taxi;
mod tools;
mod upstream;
mod validation;
mod webhooks;
