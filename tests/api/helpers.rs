//! Starts the real paygate wiring on port 0 against its in-process emulator, with a fresh
//! database per test: a SQLite file, or a new PostgreSQL database when TEST_DATABASE_URL is set.

use std::collections::HashMap;

use paygate::{
    app::Application,
    config::Config,
    grpc::proto::{self, payment_service_client::PaymentServiceClient},
};
use serde_json::Value;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use vipps_emulator::{Emulator, Fault};

#[path = "../common/mod.rs"]
mod common;
pub use common::*;

pub struct TestApp {
    pub client: PaymentServiceClient<Channel>,
    pub emulator: Emulator,
    pub emulator_url: String,
    #[allow(dead_code)] // the webhook tests post here
    pub http_url: String,
    #[allow(dead_code)]
    pub grpc_addr: std::net::SocketAddr,
    #[allow(dead_code)] // restart tests reuse it
    pub database_url: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database(&dir).await;
    spawn_on(dir, database_url, extra).await
}

pub async fn spawn_on(
    dir: tempfile::TempDir,
    database_url: String,
    extra: &[(&str, &str)],
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
    let app = Application::build(config).await.expect("app builds");
    let grpc_addr = app.grpc_addr();
    let http_url = format!("http://{}", app.http_addr());
    let running = app.emulator().expect("emulator mode");
    let emulator = running.emulator().clone();
    let emulator_url = running.base_url();
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
        http: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl TestApp {
    /// Sends the shutdown signal without waiting (SIGTERM, as far as the app can tell).
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the app and waits for it to finish.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap())
    }

    async fn token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/accesstoken/get", self.emulator_url))
            .header("client_id", "test")
            .header("client_secret", "test")
            .header("Ocp-Apim-Subscription-Key", "test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    /// The customer approves in the app (the emulator's test force-approve).
    pub async fn approve(&self, reference: &str) {
        let token = self.token().await;
        let status = self
            .http
            .post(format!(
                "{}/epayment/v1/test/payments/{reference}/approve",
                self.emulator_url
            ))
            .bearer_auth(token)
            .header("Ocp-Apim-Subscription-Key", "test")
            .header("Merchant-Serial-Number", "123456")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "approve answered {status}");
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

    pub async fn create_push(&mut self, value: i64) -> proto::Payment {
        self.client
            .create_payment_request(push_request(value))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap()
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
        self.client
            .get_payment(proto::GetPaymentRequest {
                reference: reference.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap()
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

    pub async fn events(&mut self, reference: &str) -> Vec<proto::PaymentEvent> {
        self.client
            .list_payment_events(proto::ListPaymentEventsRequest {
                reference: reference.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .events
    }
}

impl TestApp {
    /// Posts a webhook signed with `secret` for this app's sidecar URL at time `date`.
    pub async fn post_webhook_signed(
        &self,
        secret: &str,
        body: &str,
        date: &str,
    ) -> reqwest::StatusCode {
        let url = url::Url::parse(&format!("{}/webhooks/vipps", self.http_url)).unwrap();
        let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let signed = vipps_signature::sign(secret, url.path(), &host, date, body.as_bytes());
        self.http
            .post(url)
            .header("x-ms-date", date)
            .header("x-ms-content-sha256", signed.content_hash)
            .header("Authorization", signed.authorization)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Posts a webhook signed with the test secret, dated now.
    pub async fn post_webhook(&self, body: &str) -> reqwest::StatusCode {
        self.post_webhook_signed(WEBHOOK_SECRET, body, &http_date(chrono::Utc::now()))
            .await
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
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
