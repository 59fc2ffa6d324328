//! HTTP client for the Vipps MobilePay APIs paygate calls.
pub mod models;
