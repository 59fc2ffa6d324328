//! sea-orm models. They never leave `store`: repositories convert them to domain types.

pub mod customer;
pub mod event;
pub mod operation;
pub mod payment;
pub mod webhook_secret;
