//! A stateful Vipps MobilePay emulator speaking the same HTTP API as Vipps.
//!
//! Used in-process by `paygate serve` when no Vipps URL is configured (cargo feature `emulator`),
//! as the standalone `vipps-emulator` binary, and by integration tests, which use
//! the control API (`/emulator/...`) to inject faults and to prove that client
//! retries caused exactly one upstream effect. It is written from the spec
//! (REFERENCE.md), independently of paygate's own client, so that it can catch
//! client bugs rather than mirror them.

mod auth;
mod control;
mod delivery;
mod epayment;
mod faults;
mod idempotency;
mod model;
mod problem;
mod qr;
mod qr_image;
mod state;
mod stats;
mod userinfo;
mod validate;
mod webhooks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use delivery::WebhookFaults;
pub use faults::Fault;

use auth::TokenStore;
use delivery::Dispatcher;
use faults::FaultQueue;
use idempotency::IdempotencyStore;
use model::PaymentEvent;
use problem::Problem;
use qr::QrStore;
use state::PaymentStore;
use stats::Stats;
use userinfo::UserStore;

/// How the emulator behaves; the defaults mimic the Vipps test environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Lifetime of issued access tokens (Vipps test: one hour).
    pub token_ttl: Duration,
    /// First webhook retry delay; doubles per failed attempt.
    pub webhook_retry_initial: Duration,
    /// Delivery attempts per webhook before it is given up.
    pub webhook_retry_max_attempts: u32,
    /// The approving user's phone when force-approve names no customer.
    pub default_phone_number: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(3600),
            webhook_retry_initial: Duration::from_secs(1),
            webhook_retry_max_attempts: 20,
            default_phone_number: "4712345678".to_string(),
        }
    }
}

/// Handle to one emulator instance; clones share the same state.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmulatorConfig,
    /// Payments and idempotency answers share one lock so that "check key,
    /// apply effect, remember answer" is atomic under concurrent retries.
    world: Mutex<World>,
    tokens: Mutex<TokenStore>,
    faults: Mutex<FaultQueue>,
    stats: Stats,
    /// Webhook registrations and their delivery queues.
    webhooks: Arc<Dispatcher>,
    /// Merchant redirect QR codes.
    qr: Mutex<QrStore>,
    /// How many more GET payment answers omit `profile.sub` (it arrives late at Vipps).
    profile_lag: AtomicU32,
}

struct World {
    payments: PaymentStore,
    idempotency: IdempotencyStore,
    /// Users who approved payments, and what they consented to share.
    users: UserStore,
}

impl Emulator {
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                world: Mutex::new(World {
                    payments: PaymentStore::default(),
                    idempotency: IdempotencyStore::default(),
                    users: UserStore::default(),
                }),
                tokens: Mutex::new(TokenStore::default()),
                faults: Mutex::new(FaultQueue::default()),
                stats: Stats::default(),
                webhooks: Arc::new(Dispatcher::new(
                    config.webhook_retry_initial,
                    config.webhook_retry_max_attempts,
                )),
                qr: Mutex::new(QrStore::default()),
                profile_lag: AtomicU32::new(0),
                config,
            }),
        }
    }

    /// All routes: the Vipps APIs (with request counting and fault injection)
    /// and the unauthenticated `/emulator` control API.
    pub fn router(&self) -> Router {
        let vipps = Router::new()
            .route("/accesstoken/get", post(auth::access_token))
            // The docs' curl examples use this spelling.
            .route("/accessToken/get", post(auth::access_token))
            .route("/epayment/v1/payments", post(epayment::create_payment))
            .route(
                "/epayment/v1/payments/{reference}",
                get(epayment::get_payment),
            )
            .route(
                "/epayment/v1/payments/{reference}/events",
                get(epayment::get_events),
            )
            .route(
                "/epayment/v1/payments/{reference}/capture",
                post(epayment::capture),
            )
            .route(
                "/epayment/v1/payments/{reference}/refund",
                post(epayment::refund),
            )
            .route(
                "/epayment/v1/payments/{reference}/cancel",
                post(epayment::cancel),
            )
            .route(
                "/epayment/v1/test/payments/{reference}/approve",
                post(epayment::force_approve),
            )
            .route(
                "/webhooks/v1/webhooks",
                post(webhooks::register).get(webhooks::list),
            )
            .route("/webhooks/v1/webhooks/{id}", delete(webhooks::delete))
            .route(
                "/vipps-userinfo-api/userinfo/{sub}",
                get(userinfo::get_userinfo),
            )
            .route("/qr/v1/merchant-redirect", post(qr::create).get(qr::list))
            .route(
                "/qr/v1/merchant-redirect/{id}",
                get(qr::get).put(qr::update).delete(qr::delete),
            )
            .layer(from_fn_with_state(self.clone(), faults::inject))
            .layer(from_fn_with_state(self.clone(), stats::count_requests));
        vipps
            .merge(control::routes())
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// Binds `addr` and serves in a background task; returns once listening.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<RunningEmulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let router = self.router();
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(signal.cancelled_owned())
                .await
        });
        tracing::info!(%addr, "Vipps emulator listening");
        Ok(RunningEmulator {
            addr,
            emulator: self,
            stop,
            task: Some(task),
        })
    }

    /// Queues a fault rule (same semantics as `POST /emulator/faults`). A rule
    /// with `count` 0 is ignored; an impossible status answers 500.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Replaces the webhook delivery fault knobs (same as `POST /emulator/webhook-faults`).
    pub fn set_webhook_faults(&self, faults: WebhookFaults) {
        self.inner.webhooks.set_faults(&faults);
    }

    pub fn clear_webhook_faults(&self) {
        self.inner.webhooks.set_faults(&WebhookFaults::default());
    }

    /// Makes every issued token invalid, so clients must fetch a new one.
    pub fn revoke_tokens(&self) {
        lock(&self.inner.tokens).revoke_all();
    }

    /// The `GET /emulator/payments/{reference}` JSON; with the same reference
    /// under several MSNs, the newest payment.
    pub fn payment_view(&self, reference: &str) -> Option<Value> {
        self.world()
            .payments
            .find(reference, None)
            .map(control::view)
    }

    /// The user approves, as `POST /emulator/payments/{reference}/approve` does:
    /// with this phone, else the create request's customer, else the configured
    /// default. Returns the internal view, or the refusal as "title: detail".
    pub fn approve_payment(
        &self,
        reference: &str,
        phone_number: Option<&str>,
    ) -> Result<Value, String> {
        let refusal = |problem: Problem| format!("{}: {}", problem.title, problem.detail);
        let phone_number = phone_number
            .map(|p| validate::phone_number(&Value::from(p)))
            .transpose()
            .map_err(refusal)?;
        let mut world = self.world();
        let msn = world
            .payments
            .find(reference, None)
            .map(|p| p.msn.clone())
            .ok_or_else(|| format!("Reference not found: {reference}"))?;
        epayment::approve(self, &mut world, &msn, reference, phone_number, None)
            .map(control::view)
            .map_err(refusal)
    }

    /// The next `gets` GET payment answers for a payment with a `sub` leave
    /// `profile.sub` out, as Vipps does while it is still being filled in
    /// (same as `POST /emulator/profile-lag`). 0 turns it off.
    pub fn set_profile_lag(&self, gets: u32) {
        self.inner.profile_lag.store(gets, Ordering::SeqCst);
    }

    /// Makes the user's latest consent `age` old (Userinfo refuses consents
    /// older than 168 hours). False for an unknown sub or one without consent.
    pub fn backdate_consent(&self, sub: &str, age: Duration) -> bool {
        let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        self.world().users.backdate_consent(sub, age)
    }

    /// The `GET /emulator/users/{sub}` JSON: phone, MSN, consent and full profile.
    pub fn user_view(&self, sub: &str) -> Option<Value> {
        self.world().users.get(sub).map(userinfo::view)
    }

    /// Where scanning the merchant redirect QR `id` leads now (the newest with
    /// that id when several MSNs use it); `None` once deleted or expired.
    pub fn qr_redirect_url(&self, id: &str) -> Option<String> {
        self.qr_store()
            .find(id, None)
            .map(|code| code.redirect_url.clone())
    }

    /// The `GET /emulator/stats` JSON.
    pub fn stats(&self) -> Value {
        let mut stats = self.inner.stats.to_json();
        stats["webhooks"] = self.inner.webhooks.stats_json();
        stats
    }

    fn config(&self) -> &EmulatorConfig {
        &self.inner.config
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.inner.world)
    }

    fn qr_store(&self) -> MutexGuard<'_, QrStore> {
        lock(&self.inner.qr)
    }

    /// Whether this GET payment answer should leave `profile.sub` out; uses up one.
    fn take_profile_lag(&self) -> bool {
        self.inner
            .profile_lag
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn stats_counters(&self) -> &Stats {
        &self.inner.stats
    }

    fn issue_token(&self) -> String {
        self.inner.stats.token_issued();
        lock(&self.inner.tokens).issue(self.inner.config.token_ttl)
    }

    fn token_is_valid(&self, token: &str) -> bool {
        lock(&self.inner.tokens).is_valid(token)
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        lock(&self.inner.faults).take(method, path)
    }

    fn pending_faults(&self) -> Vec<Fault> {
        lock(&self.inner.faults).pending()
    }

    /// Hands a new event to webhook delivery. Called while the world lock is
    /// held, so events of one payment are queued in the order they happened.
    fn publish(&self, msn: &str, event: &PaymentEvent) {
        tracing::debug!(msn, reference = %event.reference, name = ?event.name, "emulator event");
        self.inner.webhooks.enqueue(msn, event);
    }

    fn webhook_registry(&self) -> MutexGuard<'_, webhooks::Registry> {
        self.inner.webhooks.registry()
    }
}

/// An emulator serving on a socket.
pub struct RunningEmulator {
    addr: SocketAddr,
    emulator: Emulator,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the base URL to configure a Vipps client with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Handle for in-process inspection and fault injection.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting connections and waits (bounded) for in-flight requests.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        self.emulator.inner.webhooks.stop();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "emulator server stopped with an error")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "emulator server task failed"),
                Err(_) => {
                    tracing::warn!("emulator did not drain within 5 s; aborting");
                    abort.abort();
                }
            }
        }
    }
}

impl Drop for RunningEmulator {
    /// Dropping without `shutdown` still stops the listener.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Standalone command: serve until ctrl-c.
pub async fn run_standalone(addr: SocketAddr, config: EmulatorConfig) -> anyhow::Result<()> {
    let running = Emulator::new(config).start(addr).await?;
    println!("Vipps emulator listening on {}", running.base_url());
    tokio::signal::ctrl_c().await?;
    tracing::info!("ctrl-c received; stopping the emulator");
    running.shutdown().await;
    Ok(())
}

async fn not_found() -> Response {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "Not found",
        "No such endpoint in the Vipps emulator",
    )
    .into_response()
}

/// A poisoned lock only means another request panicked mid-update; the data is
/// plain bookkeeping, so keep serving rather than failing every later request.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
