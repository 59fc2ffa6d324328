//! The one test harness: starts the real paygate wiring (`Application::build`) on port 0 with
//! a fresh database per test (a SQLite file, or a new PostgreSQL database when
//! TEST_DATABASE_URL is set), either against its in-process emulator or against an emulator the
//! test started (behind a fault proxy), and talks to it over gRPC and HTTP like a caller.

use std::{collections::HashMap, net::SocketAddr};

use paygate::{
    app::Application,
    config::Config,
    grpc::proto::{self, payment_service_client::PaymentServiceClient},
};
use serde_json::Value;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use vipps_emulator::{Emulator, EmulatorConfig, Fault, RunningEmulator};

mod common;
pub mod proxy;
mod raw;

pub use common::*;
pub use raw::*;

pub struct TestApp {
    pub client: PaymentServiceClient<Channel>,
    pub emulator: Emulator,
    /// The emulator's own URL (never through a proxy): the tests play the customer there.
    pub emulator_url: String,
    pub http_url: String,
    pub grpc_addr: SocketAddr,
    pub database_url: String,
    /// The URL webhooks are signed for (what paygate's verifier expects).
    pub webhook_url: url::Url,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// `url` with its host and port replaced by `addr` (a database behind a proxy).
pub fn via(url: &str, addr: SocketAddr) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&addr.ip().to_string())).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.to_string()
}

/// Where a PostgreSQL URL points.
pub fn socket_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", url.port().unwrap_or(5432))
        .parse()
        .unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database(&dir).await;
    spawn_on(dir, database_url, extra).await
}

/// An emulator the test runs itself (paygate reaches it through a proxy).
pub async fn start_emulator() -> RunningEmulator {
    Emulator::new(EmulatorConfig::default())
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// paygate against "real" Vipps at `vipps_url` (the test's emulator behind a proxy).
pub async fn spawn_remote(
    emulator: &RunningEmulator,
    vipps_url: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database(&dir).await;
    let mut values = vec![
        ("VIPPS_BASE_URL", vipps_url),
        ("VIPPS_CLIENT_ID", "chaos-client"),
        ("VIPPS_CLIENT_SECRET", "chaos-secret"),
        ("VIPPS_SUBSCRIPTION_KEY", "chaos-subscription"),
        ("VIPPS_MSN", "123456"),
        ("PAYGATE_ALLOW_UNAUTHENTICATED", "true"),
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_WEBHOOK_PUBLIC_URL", "http://127.0.0.1:1/unused"),
        ("VIPPS_RETRY_BUDGET_MS", "2000"),
        ("VIPPS_TIMEOUT_MS", "700"),
    ];
    values.extend_from_slice(extra);
    spawn_with_emulator(
        dir,
        database_url,
        &values,
        Some((emulator.emulator().clone(), emulator.base_url())),
    )
    .await
}

/// paygate (with its in-process emulator) on an existing database: a restart.
pub async fn spawn_on(
    dir: tempfile::TempDir,
    database_url: String,
    extra: &[(&str, &str)],
) -> TestApp {
    spawn_with_emulator(dir, database_url, extra, None).await
}

async fn spawn_with_emulator(
    dir: tempfile::TempDir,
    database_url: String,
    extra: &[(&str, &str)],
    external: Option<(Emulator, String)>,
) -> TestApp {
    let mut values: HashMap<String, String> = [
        ("PAYGATE_GRPC_ADDR", "127.0.0.1:0"),
        ("PAYGATE_HTTP_ADDR", "127.0.0.1:0"),
        ("PAYGATE_EMULATOR_ADDR", "127.0.0.1:0"),
        ("VIPPS_RETRY_BUDGET_MS", "3000"),
        ("VIPPS_TIMEOUT_MS", "2000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    values.insert("DATABASE_URL".into(), database_url.clone());
    for (k, v) in extra {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_values(&values).expect("valid test config");
    let public = config.webhooks.public_url.clone();
    let app = Application::build(config).await.expect("app builds");
    let grpc_addr = app.grpc_addr();
    let http_url = format!("http://{}", app.http_addr());
    let (emulator, emulator_url) = match (app.emulator(), external) {
        (Some(running), _) => (running.emulator().clone(), running.base_url()),
        (None, Some(external)) => external,
        (None, None) => panic!("remote mode needs the test's emulator"),
    };
    let webhook_url =
        public.unwrap_or_else(|| url::Url::parse(&format!("{http_url}/webhooks/vipps")).unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let client = PaymentServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connect gRPC");
    TestApp {
        client,
        emulator,
        emulator_url,
        http_url,
        grpc_addr,
        database_url,
        webhook_url,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl TestApp {
    /// Stops the app and waits for it to finish.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap())
    }

    /// The customer approves in the app (in the emulator, in-process: works whatever sits
    /// between paygate and the emulator).
    pub async fn approve(&self, reference: &str) {
        self.emulator
            .approve_payment(reference, None)
            .expect("emulator approves");
    }

    /// The money-moving effects the emulator applied for a payment.
    pub fn effects(&self, reference: &str, operation: &str) -> Vec<Value> {
        let view = self
            .emulator
            .payment_view(reference)
            .expect("emulator knows the payment");
        view["effects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == operation)
            .cloned()
            .collect()
    }

    /// Every money-moving effect at the emulator happened once per idempotency key.
    pub fn assert_effects_once(&self, reference: &str) {
        let view = self.emulator.payment_view(reference).unwrap();
        let effects = view["effects"].as_array().unwrap();
        let mut seen = std::collections::HashSet::new();
        for e in effects {
            let id = (e["operation"].to_string(), e["idempotencyKey"].to_string());
            assert!(
                seen.insert(id),
                "effect applied twice upstream: {e} in {effects:?}"
            );
        }
    }

    /// Requests the emulator received for one operation kind (faulted ones included).
    pub fn requests(&self, operation: &str) -> u64 {
        self.emulator.stats()["requests"][operation]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn fault(&self, fault: Value) {
        self.emulator
            .inject_fault(serde_json::from_value::<Fault>(fault).expect("fault json"));
    }

    pub async fn create(
        &mut self,
        req: proto::CreatePaymentRequestRequest,
    ) -> Result<proto::Payment, tonic::Status> {
        self.client
            .create_payment_request(req)
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub async fn create_push(&mut self, value: i64) -> proto::Payment {
        self.create(push_request(value)).await.unwrap()
    }

    /// Creates and approves a payment of `value` NOK minor units.
    pub async fn authorized(&mut self, value: i64) -> String {
        let reference = self.create_push(value).await.reference;
        self.approve(&reference).await;
        let payment = self.get(&reference).await;
        assert_eq!(payment.state(), proto::PaymentState::Authorized);
        reference
    }

    pub async fn get(&mut self, reference: &str) -> proto::Payment {
        self.try_get(reference).await.unwrap()
    }

    pub async fn try_get(&mut self, reference: &str) -> Result<proto::Payment, tonic::Status> {
        self.client
            .get_payment(proto::GetPaymentRequest {
                reference: reference.into(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub async fn capture(
        &mut self,
        reference: &str,
        value: Option<i64>,
        key: &str,
    ) -> Result<proto::Payment, tonic::Status> {
        self.client
            .capture_payment(proto::CapturePaymentRequest {
                reference: reference.into(),
                amount: value.map(nok),
                idempotency_key: key.into(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub async fn refund(
        &mut self,
        reference: &str,
        value: Option<i64>,
        key: &str,
    ) -> Result<proto::Payment, tonic::Status> {
        self.client
            .refund_payment(proto::RefundPaymentRequest {
                reference: reference.into(),
                amount: value.map(nok),
                idempotency_key: key.into(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub async fn try_events(
        &mut self,
        reference: &str,
    ) -> Result<Vec<proto::PaymentEvent>, tonic::Status> {
        self.client
            .list_payment_events(proto::ListPaymentEventsRequest {
                reference: reference.into(),
            })
            .await
            .map(|r| r.into_inner().events)
    }

    /// The recorded events (none: NOT_FOUND is an empty list).
    pub async fn events(&mut self, reference: &str) -> Vec<proto::PaymentEvent> {
        match self.try_events(reference).await {
            Ok(events) => events,
            Err(e) if e.code() == tonic::Code::NotFound => Vec::new(),
            Err(e) => panic!("ListPaymentEvents({reference}): {e:?}"),
        }
    }

    /// ListPaymentEvents holds each event once, in sequence order.
    pub async fn assert_events_once(&mut self, reference: &str) -> Vec<proto::PaymentEvent> {
        let events = self.events(reference).await;
        assert_each_event_once(&events);
        events
    }

    /// A webhook request signed with `secret` at time `date`, for the URL paygate verifies.
    pub fn webhook_request_signed(
        &self,
        secret: &str,
        body: impl AsRef<[u8]>,
        date: &str,
    ) -> reqwest::RequestBuilder {
        let body = body.as_ref();
        let signed = self.sign(secret, body, date);
        self.http
            .post(format!("{}/webhooks/vipps", self.http_url))
            .header("x-ms-date", date)
            .header("x-ms-content-sha256", signed.content_hash)
            .header("Authorization", signed.authorization)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
    }

    /// A webhook request signed with the test secret, dated now (to send later or elsewhere).
    pub fn webhook_request(&self, body: impl AsRef<[u8]>) -> reqwest::RequestBuilder {
        self.webhook_request_signed(WEBHOOK_SECRET, body, &http_date(chrono::Utc::now()))
    }

    /// Posts a webhook signed with `secret` at time `date`, for the URL paygate verifies.
    pub async fn post_webhook_signed(
        &self,
        secret: &str,
        body: impl AsRef<[u8]>,
        date: &str,
    ) -> reqwest::StatusCode {
        self.webhook_request_signed(secret, body, date)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.http_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn sign(&self, secret: &str, body: &[u8], date: &str) -> vipps_signature::SignedHeaders {
        let url = &self.webhook_url;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_owned(),
        };
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        vipps_signature::sign(secret, &path, &host, date, body)
    }

    /// Posts a webhook signed with the test secret, dated now.
    pub async fn post_webhook(&self, body: impl AsRef<[u8]>) -> reqwest::StatusCode {
        self.post_webhook_signed(WEBHOOK_SECRET, body, &http_date(chrono::Utc::now()))
            .await
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET /readyz` answers 200.
    pub async fn ready(&self) -> bool {
        self.http
            .get(format!("{}/readyz", self.http_url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Opens StreamPaymentEvents.
    pub async fn subscribe(
        &mut self,
        after: Option<u64>,
        references: &[&str],
    ) -> tonic::Streaming<proto::StreamPaymentEventsResponse> {
        self.client
            .stream_payment_events(proto::StreamPaymentEventsRequest {
                references: references.iter().map(|r| (*r).to_owned()).collect(),
                names: vec![],
                after_sequence: after,
            })
            .await
            .unwrap()
            .into_inner()
    }
}

impl TestApp {
    /// Sends the shutdown signal without waiting (SIGTERM, as far as the app can tell).
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// The customer rejects (`reject`) or lets the payment expire (`expire`).
    pub async fn customer(&self, reference: &str, action: &str) {
        let status = self
            .http
            .post(format!(
                "{}/emulator/payments/{reference}/{action}",
                self.emulator_url
            ))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{action} answered {status}");
    }

    pub async fn cancel(
        &mut self,
        reference: &str,
        key: &str,
    ) -> Result<proto::Payment, tonic::Status> {
        self.client
            .cancel_payment(proto::CancelPaymentRequest {
                reference: reference.into(),
                idempotency_key: key.into(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }
}

/// Each event once, and sequences strictly increasing. An event's identity is its name; a
/// capture or refund adds its idempotency key (or, without one, its pspReference); a failed
/// event adds its pspReference.
pub fn assert_each_event_once(events: &[proto::PaymentEvent]) {
    use proto::PaymentEventName as N;
    let mut seen = std::collections::HashSet::new();
    for e in events {
        let key = match e.name() {
            _ if !e.success => format!("failed:{}", e.psp_reference),
            N::Captured | N::Refunded if !e.idempotency_key.is_empty() => {
                format!("k:{}", e.idempotency_key)
            }
            N::Captured | N::Refunded => format!("p:{}", e.psp_reference),
            _ => String::new(),
        };
        assert!(
            seen.insert((e.name, e.success, key)),
            "event recorded twice: {e:?} in {events:#?}"
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequences not increasing: {events:#?}"
    );
}
