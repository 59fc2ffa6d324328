//! The payment lifecycle: create, refresh, capture, cancel and refund, exactly once.
//!
//! Every money-moving call follows one pattern (see `journal`): journal the operation with its
//! idempotency key and a fingerprint of its parameters *before* calling Vipps; call Vipps with
//! that key; commit the outcome, the payment's new state and the event in one transaction.
//! A retry with the same key replays the stored outcome, or re-sends the journalled request
//! unchanged when the first outcome is unknown.

mod create;
mod customers;
mod journal;
mod modify;
mod profile;
mod reconcile;
mod refresh;

use crate::{events::EventLog, store::Store, vipps::VippsClient};

/// The payment service.
#[derive(Clone)]
pub struct Payments {
    log: EventLog,
    vipps: VippsClient,
    /// How long a sender holds an operation: longer than any Vipps call can take.
    send_lease: std::time::Duration,
}

impl Payments {
    pub fn new(log: EventLog, vipps: VippsClient) -> Self {
        let send_lease = vipps.longest_call() + std::time::Duration::from_secs(5);
        Self {
            log,
            vipps,
            send_lease,
        }
    }

    /// When a send that starts now gives up its claim at the latest (ms since the epoch).
    fn lease_until_ms(&self) -> i64 {
        let lease = i64::try_from(self.send_lease.as_millis()).unwrap_or(i64::MAX / 2);
        chrono::Utc::now().timestamp_millis() + lease
    }

    fn store(&self) -> &Store {
        self.log.store()
    }

    pub fn event_log(&self) -> &EventLog {
        &self.log
    }
}
