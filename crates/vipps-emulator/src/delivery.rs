//! Signed webhook delivery with Vipps' ordering and retry semantics.
//!
//! Every (registration, payment) pair is a *lane*: a FIFO queue served by at
//! most one task. A failing delivery is retried with exponential backoff and
//! blocks the rest of its lane, which is how Vipps holds back a payment's later
//! events behind a failing one; different payments never wait on each other.
//! A lane's task exits only when its queue is empty, and the queue and the
//! "is a task running" flag (presence in the map) change under one lock, so an
//! event queued while the emulator runs is never stranded.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lock;
use super::model::PaymentEvent;
use super::webhooks::Registry;
use vipps_signature as signature;

/// Backoff never grows beyond this, however many attempts are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a reordered delivery waits for a later event of its payment to overtake it.
const REORDER_HOLD: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivery fault knobs; the JSON shape of `POST /emulator/webhook-faults`.
/// Setting them replaces any earlier knobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct WebhookFaults {
    /// The next n deliveries are silently never sent.
    pub drop: u32,
    /// The next n deliveries are sent twice.
    pub duplicate: u32,
    /// Delay each of the next `count` deliveries by this long.
    pub delay_ms: Option<u64>,
    /// How many deliveries `delay_ms` applies to (default 1).
    pub count: Option<u32>,
    /// The next n deliveries are held back and sent after the payment's following event.
    pub reorder: u32,
}

/// Remaining fault budget.
#[derive(Debug, Default)]
struct FaultBudget {
    drop: u32,
    duplicate: u32,
    delay: Option<Duration>,
    delay_count: u32,
    reorder: u32,
}

/// What to do to one delivery.
#[derive(Debug, Default)]
struct Plan {
    drop: bool,
    duplicate: bool,
    delay: Option<Duration>,
}

impl FaultBudget {
    fn from_knobs(knobs: &WebhookFaults) -> Self {
        Self {
            drop: knobs.drop,
            duplicate: knobs.duplicate,
            delay: knobs.delay_ms.map(Duration::from_millis),
            delay_count: if knobs.delay_ms.is_some() {
                knobs.count.unwrap_or(1)
            } else {
                0
            },
            reorder: knobs.reorder,
        }
    }

    fn plan(&mut self) -> Plan {
        let mut plan = Plan::default();
        if take_one(&mut self.drop) {
            plan.drop = true;
            return plan;
        }
        plan.duplicate = take_one(&mut self.duplicate);
        if take_one(&mut self.delay_count) {
            plan.delay = self.delay;
        }
        plan
    }
}

fn take_one(counter: &mut u32) -> bool {
    let had = *counter > 0;
    *counter = counter.saturating_sub(1);
    had
}

#[derive(Debug, Default)]
struct DeliveryStats {
    attempted: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

impl DeliveryStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LaneKey {
    registration: Uuid,
    msn: String,
    reference: String,
}

/// One queued webhook: the registration is looked up again at send time, so a
/// deleted registration stops receiving.
#[derive(Debug, Clone)]
struct Job {
    registration: Uuid,
    /// Serialised once per event; `Bytes` clones share the buffer.
    body: Bytes,
}

#[derive(Debug)]
struct Lane {
    queue: VecDeque<Job>,
    /// Wakes a worker that holds a reordered delivery when a later event arrives.
    wake: Arc<Notify>,
}

/// The webhook payload: the event-log entry plus the MSN.
#[derive(Serialize)]
struct Payload<'a> {
    msn: &'a str,
    #[serde(flatten)]
    event: &'a PaymentEvent,
}

pub struct Dispatcher {
    registry: Mutex<Registry>,
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    faults: Mutex<FaultBudget>,
    stats: DeliveryStats,
    /// `None` only if the HTTP client could not be built; deliveries then fail and are retried.
    client: Option<reqwest::Client>,
    retry_initial: Duration,
    max_attempts: u32,
    stop: CancellationToken,
}

impl Dispatcher {
    pub fn new(retry_initial: Duration, max_attempts: u32) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // Vipps does not follow redirects for webhooks.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(
                |e| tracing::error!(error = %e, "emulator: cannot build the webhook HTTP client"),
            )
            .ok();
        Self {
            registry: Mutex::new(Registry::default()),
            lanes: Mutex::new(HashMap::new()),
            faults: Mutex::new(FaultBudget::default()),
            stats: DeliveryStats::default(),
            client,
            retry_initial,
            max_attempts: max_attempts.max(1),
            stop: CancellationToken::new(),
        }
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub fn set_faults(&self, knobs: &WebhookFaults) {
        *lock(&self.faults) = FaultBudget::from_knobs(knobs);
    }

    /// Stops all delivery tasks (on emulator shutdown).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn stats_json(&self) -> Value {
        let s = &self.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "attempted": n(&s.attempted),
            "delivered": n(&s.delivered),
            "failed": n(&s.failed),
            "abandoned": n(&s.abandoned),
            "dropped": n(&s.dropped),
            "duplicated": n(&s.duplicated),
            "reordered": n(&s.reordered),
        })
    }

    /// Queues an event for every subscribed registration. The caller holds the
    /// payment store lock, so one payment's events arrive here in order.
    pub fn enqueue(self: &Arc<Self>, msn: &str, event: &PaymentEvent) {
        let subscribers = self
            .registry()
            .subscribers(msn, event.name.webhook_event_type());
        if subscribers.is_empty() {
            return;
        }
        let body = match serde_json::to_vec(&Payload { msn, event }) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "emulator: cannot serialise a webhook payload");
                return;
            }
        };
        let mut lanes = lock(&self.lanes);
        for registration in subscribers {
            let job = Job {
                registration,
                body: body.clone(),
            };
            let key = LaneKey {
                registration,
                msn: msn.to_string(),
                reference: event.reference.clone(),
            };
            if let Some(lane) = lanes.get_mut(&key) {
                lane.queue.push_back(job);
                lane.wake.notify_one();
                continue;
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::error!("emulator: no tokio runtime; webhook not delivered");
                DeliveryStats::bump(&self.stats.abandoned);
                continue;
            };
            let wake = Arc::new(Notify::new());
            lanes.insert(
                key.clone(),
                Lane {
                    queue: VecDeque::from([job]),
                    wake: Arc::clone(&wake),
                },
            );
            runtime.spawn(Arc::clone(self).run_lane(key, wake));
        }
    }

    /// Serves one lane until its queue is empty.
    async fn run_lane(self: Arc<Self>, key: LaneKey, wake: Arc<Notify>) {
        let mut held: Option<Job> = None;
        while !self.stop.is_cancelled() {
            match self.next_job(&key, held.is_some()) {
                Some(job) => {
                    if held.is_none() && self.take_reorder() {
                        held = Some(job);
                        continue;
                    }
                    self.deliver(&job).await;
                    if let Some(overtaken) = held.take() {
                        self.deliver(&overtaken).await;
                    }
                }
                None => {
                    let Some(overtaken) = held.take() else { return };
                    // Wait (bounded) for a later event of this payment to overtake it.
                    tokio::select! {
                        () = wake.notified() => held = Some(overtaken),
                        () = tokio::time::sleep(REORDER_HOLD) => self.deliver(&overtaken).await,
                        () = self.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    fn take_reorder(&self) -> bool {
        let reorder = take_one(&mut lock(&self.faults).reorder);
        if reorder {
            DeliveryStats::bump(&self.stats.reordered);
        }
        reorder
    }

    /// The lane's next job. With an empty queue and nothing held back, the lane
    /// is removed in the same critical section, so the next enqueue starts a new task.
    fn next_job(&self, key: &LaneKey, holding: bool) -> Option<Job> {
        let mut lanes = lock(&self.lanes);
        let lane = lanes.get_mut(key)?;
        let job = lane.queue.pop_front();
        if job.is_none() && !holding {
            lanes.remove(key);
        }
        job
    }

    /// Delivers one webhook, retrying until a 2xx or the attempt limit.
    async fn deliver(&self, job: &Job) {
        let plan = lock(&self.faults).plan();
        if plan.drop {
            DeliveryStats::bump(&self.stats.dropped);
            return;
        }
        if let Some(delay) = plan.delay {
            if self.pause(delay).await {
                return;
            }
        }
        let mut backoff = self.retry_initial;
        for attempt in 1..=self.max_attempts {
            let Some((url, secret)) = self.target(job.registration) else {
                return;
            };
            if self.send(&url, &secret, &job.body).await {
                DeliveryStats::bump(&self.stats.delivered);
                if plan.duplicate {
                    DeliveryStats::bump(&self.stats.duplicated);
                    self.send(&url, &secret, &job.body).await;
                }
                return;
            }
            if attempt == self.max_attempts || self.pause(backoff).await {
                break;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        tracing::warn!(registration = %job.registration, "emulator: webhook given up after {} attempts", self.max_attempts);
        DeliveryStats::bump(&self.stats.abandoned);
    }

    /// Sleeps; returns true if the emulator is stopping instead.
    async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => false,
            () = self.stop.cancelled() => true,
        }
    }

    fn target(&self, registration: Uuid) -> Option<(url::Url, String)> {
        self.registry()
            .get(registration)
            .map(|r| (r.url.clone(), r.secret.clone()))
    }

    /// One signed POST; true on 2xx.
    async fn send(&self, url: &url::Url, secret: &str, body: &Bytes) -> bool {
        DeliveryStats::bump(&self.stats.attempted);
        let Some(client) = &self.client else {
            DeliveryStats::bump(&self.stats.failed);
            return false;
        };
        let host = authority(url);
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let signed = signature::sign(secret, &path_and_query, &host, &date, body);
        let result = client
            .post(url.clone())
            .header("x-ms-date", date)
            .header("x-ms-content-sha256", signed.content_hash)
            .header(header::AUTHORIZATION, signed.authorization)
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::debug!(%url, status = %response.status(), "emulator: webhook refused");
                DeliveryStats::bump(&self.stats.failed);
                false
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "emulator: webhook not delivered");
                DeliveryStats::bump(&self.stats.failed);
                false
            }
        }
    }
}

/// Host plus `:port` when the port is not the scheme's default, as the
/// vendor's samples (`Uri.Authority`, `url.host`) compute it.
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn authority_includes_non_default_port_only() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            authority(&url("https://example.com:8443/x?y=1")),
            "example.com:8443"
        );
        assert_eq!(authority(&url("https://example.com:443/x")), "example.com");
        assert_eq!(authority(&url("http://127.0.0.1:9000/")), "127.0.0.1:9000");
        assert_eq!(authority(&url("http://[::1]:9000/")), "[::1]:9000");
    }

    #[test]
    fn fault_budget_counts_down() {
        let mut budget = FaultBudget::from_knobs(&WebhookFaults {
            drop: 1,
            duplicate: 1,
            delay_ms: Some(5),
            count: Some(2),
            ..WebhookFaults::default()
        });
        let first = budget.plan();
        assert!(first.drop);
        let second = budget.plan();
        assert!(second.duplicate && second.delay == Some(Duration::from_millis(5)));
        let third = budget.plan();
        assert!(!third.duplicate && third.delay.is_some());
        let fourth = budget.plan();
        assert!(!fourth.drop && !fourth.duplicate && fourth.delay.is_none());
    }

    #[test]
    fn payload_is_event_plus_msn() {
        use crate::model::{Amount, Currency, EventName};
        let event = PaymentEvent {
            reference: "order-0001".into(),
            psp_reference: "1234567890".into(),
            name: EventName::Captured,
            amount: Amount {
                currency: Currency::Nok,
                value: 100,
            },
            timestamp: "2023-08-14T12:48:46.260Z".into(),
            idempotency_key: None,
            success: true,
        };
        let json = serde_json::to_value(Payload {
            msn: "123456",
            event: &event,
        })
        .unwrap();
        assert_eq!(
            json,
            json!({"msn": "123456", "reference": "order-0001", "pspReference": "1234567890", "name": "CAPTURED",
                   "amount": {"currency": "NOK", "value": 100}, "timestamp": "2023-08-14T12:48:46.260Z",
                   "idempotencyKey": null, "success": true})
        );
    }
}
