//! Chaos tests: hostile input and faults from outside (a TCP fault proxy in front of Vipps and
//! PostgreSQL, a locked SQLite file, webhook deliveries duplicated, reordered and delayed).
//! Every test is bounded in time and asserts outcomes, never timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod hostile;
mod outside;
mod proxy;
