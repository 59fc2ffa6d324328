//! When to try again: exponential backoff with full jitter, `Retry-After`, and a per-call
//! budget of attempts and total time.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::config::RetryPolicy;

/// The retry state of one call. Created when the call starts, so waiting for a token and every
/// attempt count against the same `max_elapsed`.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    policy: &'a RetryPolicy,
    start: Instant,
    /// Attempts that failed transiently so far.
    failures: u32,
}

impl<'a> Budget<'a> {
    pub(crate) fn start(policy: &'a RetryPolicy) -> Self {
        Self {
            policy,
            start: Instant::now(),
            failures: 0,
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.policy.max_elapsed.saturating_sub(self.elapsed())
    }

    /// The timeout of the next attempt: never past the end of the budget, so a call returns
    /// within `max_elapsed` even when the upstream hangs.
    pub(crate) fn attempt_timeout(&self, request_timeout: Duration) -> Duration {
        request_timeout.min(self.remaining())
    }

    /// Records a transient failure and says how long to wait before the next attempt, or
    /// `None` when attempts or time are used up. A `Retry-After` is honoured as given; if it
    /// reaches past the budget we stop now rather than retry early into another 429.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.failures += 1;
        if self.failures >= self.policy.max_attempts {
            return None;
        }
        let delay = retry_after.unwrap_or_else(|| self.jittered_backoff());
        (delay < self.remaining()).then_some(delay)
    }

    /// Full jitter (uniform in `0..=bound`, bound doubling per failure up to `max_backoff`):
    /// spreads the retries of many clients hit by the same outage.
    fn jittered_backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(20);
        let bound = self
            .policy
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.policy.max_backoff);
        let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        // A day is far beyond any budget; the cap only keeps the arithmetic sane.
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn policy(max_attempts: u32, max_elapsed_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_elapsed: Duration::from_millis(max_elapsed_ms),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            max_attempts,
        }
    }

    #[test]
    fn backoff_is_bounded_and_attempts_are_counted() {
        let p = policy(6, 60_000);
        let mut b = Budget::start(&p);
        let bounds = [100, 200, 400, 400, 400];
        for bound in bounds {
            let d = b.next_delay(None).unwrap();
            assert!(d <= Duration::from_millis(bound), "{d:?} > {bound} ms");
        }
        assert_eq!(b.next_delay(None), None, "6th failure ends the call");
    }

    #[test]
    fn retry_after_is_honoured_within_budget_only() {
        let p = policy(6, 5_000);
        let mut b = Budget::start(&p);
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(b.next_delay(Some(Duration::from_secs(30))), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(parse_retry_after(" 1 ", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
