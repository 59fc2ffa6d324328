//! Phone-number sharing: once a payment that asked for a profile scope is AUTHORIZED, fetch
//! `profile.sub` (it can lag behind the state), then the Userinfo API, well within Vipps'
//! 168-hour limit, and keep the phone number on the payment and the customer.
//!
//! The work is durable: a payment waits with profile status `pending` until it is done, so a
//! crash or a Vipps outage only delays it. A worker reacts to AUTHORIZED events as they are
//! logged and sweeps for leftovers periodically.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Payments;
use crate::{
    domain::{EventName, EventSource, NewEvent, PaygateError, PhoneNumber, ProfileOutcome},
    store::PaymentChange,
    vipps::mapping,
};

/// How often leftovers (e.g. after a Userinfo outage) are retried.
const SWEEP: Duration = Duration::from_secs(15);
/// GET payment attempts while `profile.sub` has not appeared yet.
const SUB_ATTEMPTS: u32 = 8;

impl Payments {
    /// Runs until `stop`: shares profiles of payments as they become AUTHORIZED.
    pub async fn run_profile_worker(self, stop: CancellationToken) {
        let feed = self.event_log().feed().clone();
        let mut latest = feed.watch();
        let mut cursor = feed.latest();
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = sweep.tick() => self.share_pending().await,
                changed = latest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Only AUTHORIZED events can make a profile fetchable: look for them in
                    // memory instead of querying the database on every event.
                    let mut authorized = Vec::new();
                    match feed.read_after(cursor, usize::MAX) {
                        Some(events) => {
                            for e in &events {
                                if e.event.event.name == EventName::Authorized {
                                    authorized.push(e.event.event.reference.clone());
                                }
                            }
                            if let Some(last) = events.last() {
                                cursor = last.event.sequence;
                            }
                        }
                        None => {
                            cursor = feed.latest();
                            self.share_pending().await;
                        }
                    }
                    for reference in authorized {
                        self.share_if_pending(&reference).await;
                    }
                }
            }
        }
    }

    async fn share_pending(&self) {
        match self.store().pending_profiles(100).await {
            Ok(references) => {
                for reference in references {
                    self.share_if_pending(&reference).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list pending profiles"),
        }
    }

    async fn share_if_pending(&self, reference: &str) {
        match self.store().profile_pending(reference).await {
            Ok(true) => {
                if let Err(e) = self.share_profile(reference).await {
                    tracing::warn!(reference, error = %e, "profile not fetched yet; will retry");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(reference, error = %e, "cannot read profile status"),
        }
    }

    /// Fetches and records one payment's shared profile. A transient failure returns an error
    /// and leaves the payment pending; a definite one is recorded on the payment.
    pub async fn share_profile(&self, reference: &str) -> Result<(), PaygateError> {
        let payment = self.store().get_payment(reference).await?.ok_or_else(|| {
            PaygateError::NotFound(format!("no payment with reference {reference}"))
        })?;
        let sub = match payment.profile_sub.clone() {
            Some(sub) => Some(sub),
            None => self.wait_for_sub(reference).await?,
        };
        let outcome = match sub {
            None => ProfileOutcome::Failed("profile.sub did not appear after authorization".into()),
            Some(sub) => match self.vipps.get_userinfo(&sub).await {
                Ok(info) => match info
                    .phone_number
                    .as_deref()
                    .map(|p| PhoneNumber::parse("phone_number", p))
                {
                    Some(Ok(phone_number)) => ProfileOutcome::Shared { phone_number, sub },
                    Some(Err(_)) => {
                        ProfileOutcome::Failed("Userinfo returned an invalid phone number".into())
                    }
                    None => ProfileOutcome::Failed("the customer shared no phone number".into()),
                },
                Err(e) if e.is_final_refusal() => {
                    ProfileOutcome::Failed(format!("Userinfo refused: {}", mapping::error(&e)))
                }
                Err(e) => return Err(mapping::error(&e)),
            },
        };
        let shared = matches!(outcome, ProfileOutcome::Shared { .. });
        let events = if shared {
            vec![NewEvent {
                reference: reference.to_owned(),
                psp_reference: String::new(),
                name: EventName::ProfileShared,
                amount: payment.amount,
                timestamp: Utc::now(),
                idempotency_key: None,
                success: true,
                source: EventSource::Paygate,
            }]
        } else {
            Vec::new()
        };
        if let ProfileOutcome::Failed(why) = &outcome {
            tracing::warn!(reference, why = %why, "profile sharing failed");
        }
        self.log
            .commit(PaymentChange {
                reference: reference.to_owned(),
                events,
                profile: Some(outcome),
                ..PaymentChange::default()
            })
            .await?;
        if shared {
            tracing::info!(reference, "customer shared their phone number");
        }
        Ok(())
    }

    /// `profile.sub` is filled in asynchronously after authorization: poll briefly.
    async fn wait_for_sub(&self, reference: &str) -> Result<Option<String>, PaygateError> {
        let mut delay = Duration::from_millis(100);
        for _ in 0..SUB_ATTEMPTS {
            let remote = self
                .vipps
                .get_payment(reference)
                .await
                .map_err(|e| mapping::error(&e))?;
            if let Some(sub) = remote.profile.and_then(|p| p.sub).filter(|s| !s.is_empty()) {
                return Ok(Some(sub));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Ok(None)
    }
}
