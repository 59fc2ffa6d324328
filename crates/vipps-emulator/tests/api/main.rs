//! Black-box tests of the Vipps emulator over HTTP, as a Vipps client sees it: one module per
//! Vipps API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)

mod access_token;
mod control;
mod epayment;
mod harness;
mod qr;
mod receipts;
mod userinfo;
mod webhooks;
