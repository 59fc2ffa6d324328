//! Never rely on webhooks alone (Vipps' own advice): a background reconciler
//! - polls payments that are still CREATED, first ~5 s after creation and then every few
//!   seconds, backing off as they age (Vipps' polling guidance; well inside the 120 GET/min
//!   per payment limit), and records missing events from Vipps' event log (source: poll);
//! - re-sends journalled operations whose outcome is still unknown (a crash, or a caller that
//!   gave up after UNAVAILABLE), with the same Idempotency-Key, so they settle exactly once.
//!
//! Replicas share the work: a tick's due payments are claimed in one write (a compare-and-set
//! on each one's poll time) before they are polled, so two replicas never poll the same
//! payment at once.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::Payments;
use crate::{config, domain::Reference, store::DuePoll};

/// At most this many payments are polled per tick (per replica): Vipps is asked at most about
/// 50 times a second, and the tick's claims are one write.
const POLLS_PER_TICK: u64 = 50;

/// Polls of a tick's batch under way at once.
const POLLS_IN_FLIGHT: usize = 8;

/// When a due payment is polled next: its age's interval from now.
fn next_poll_ms(due: &DuePoll, now_ms: i64) -> i64 {
    let age = Duration::from_millis(u64::try_from(now_ms - due.create_time_ms).unwrap_or(0));
    now_ms + i64::try_from(interval_for(age).as_millis()).unwrap_or(300_000)
}

/// How long until a payment of this age is polled again.
fn interval_for(age: Duration) -> Duration {
    match age.as_secs() {
        0..60 => Duration::from_secs(2),
        60..600 => Duration::from_secs(5),
        600..3600 => Duration::from_secs(30),
        _ => Duration::from_secs(300),
    }
}

impl Payments {
    /// Runs until `stop`. Resolves unfinished operations at once (crash recovery), then polls.
    pub async fn run_reconciler(self, settings: config::Reconcile, stop: CancellationToken) {
        self.resolve_pending_operations(Duration::ZERO).await;
        let mut tick = tokio::time::interval(settings.tick);
        let mut last_resend = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.poll_due(settings.first_after).await;
            if last_resend.elapsed() >= settings.resend_after {
                self.resolve_pending_operations(settings.resend_after).await;
                last_resend = Instant::now();
            }
        }
    }

    /// Claims the due payments in one write, then polls the claimed ones.
    async fn poll_due(&self, first_after: Duration) {
        let min_age = i64::try_from(first_after.as_millis()).unwrap_or(i64::MAX);
        let due = match self.store().due_polls(min_age, POLLS_PER_TICK).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler cannot read its schedule");
                return;
            }
        };
        let now = chrono::Utc::now().timestamp_millis();
        let claims: Vec<_> = due
            .into_iter()
            .map(|due| {
                let next = next_poll_ms(&due, now);
                (due, next)
            })
            .collect();
        let claimed = match self.store().claim_polls(&claims).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim payments to poll");
                return;
            }
        };
        // A few at a time: the last of a batch is polled well inside its claim (2 s at the
        // shortest), so another replica does not take it over while it waits its turn.
        futures::stream::iter(claimed)
            .for_each_concurrent(POLLS_IN_FLIGHT, |reference| async move {
                self.poll_one(&reference).await;
            })
            .await;
    }

    async fn poll_one(&self, reference: &str) {
        let Ok(reference) = Reference::parse("reference", reference) else {
            return;
        };
        let result = match self.store().get_payment(reference.as_str()).await {
            Ok(Some(before)) => match self.refresh(&before).await {
                Ok(after) if after.state != before.state || after.aggregate != before.aggregate => {
                    "changed"
                }
                Ok(_) => "unchanged",
                Err(e) => {
                    tracing::debug!(reference = %reference, error = %e, "poll failed");
                    "error"
                }
            },
            Ok(None) => "gone",
            Err(_) => "error",
        };
        metrics::counter!("paygate_reconciliations_total", "result" => result).increment(1);
        if result == "changed" {
            tracing::info!(reference = %reference, "reconciler recorded events Vipps had not delivered");
        }
    }

    /// Re-sends every journalled operation whose outcome is unknown and that has been idle for
    /// `idle`, with its original Idempotency-Key and body.
    pub async fn resolve_pending_operations(&self, idle: Duration) {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let pending = match self.store().pending_operations(idle_ms, 100).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the operation journal");
                return;
            }
        };
        for op in pending {
            let (reference, kind) = (op.reference.clone(), op.kind);
            let outcome = self.resend(op).await.map(|_| ());
            let result = match &outcome {
                Ok(()) => "resolved",
                Err(
                    crate::domain::PaygateError::Unavailable(_)
                    | crate::domain::PaygateError::ResourceExhausted(_),
                ) => "still_unknown",
                Err(_) => "refused",
            };
            metrics::counter!("paygate_reconciliations_total", "result" => result).increment(1);
            tracing::info!(
                reference,
                operation = kind.as_str(),
                result,
                "re-sent an unfinished operation"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_backs_off_with_age() {
        assert_eq!(interval_for(Duration::from_secs(3)), Duration::from_secs(2));
        assert_eq!(
            interval_for(Duration::from_secs(120)),
            Duration::from_secs(5)
        );
        assert_eq!(
            interval_for(Duration::from_secs(1200)),
            Duration::from_secs(30)
        );
        assert_eq!(
            interval_for(Duration::from_secs(86_400)),
            Duration::from_secs(300)
        );
    }
}
