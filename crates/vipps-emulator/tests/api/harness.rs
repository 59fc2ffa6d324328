//! The emulator on a free port, a client with a token, and assertion helpers.

use std::net::SocketAddr;

pub use std::time::Duration;

pub use reqwest::{Method, RequestBuilder, Response, StatusCode};
pub use serde_json::{json, Value};
pub use vipps_emulator::{Emulator, EmulatorConfig, Fault, RunningEmulator};

pub const MSN: &str = "123456";

pub struct Harness {
    pub running: RunningEmulator,
    pub http: reqwest::Client,
    pub token: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_config(EmulatorConfig::default()).await
    }

    pub async fn with_config(config: EmulatorConfig) -> Self {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let running = Emulator::new(config).start(addr).await.unwrap();
        let http = reqwest::Client::new();
        let mut harness = Self {
            running,
            http,
            token: String::new(),
        };
        harness.token = harness.fetch_token().await;
        harness
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    pub fn emulator(&self) -> &Emulator {
        self.running.emulator()
    }

    pub async fn fetch_token(&self) -> String {
        let response = self.token_request().send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub fn token_request(&self) -> RequestBuilder {
        self.http
            .post(self.url("/accesstoken/get"))
            .header("client_id", "fb492b5e-7907-4d83-ba20-c7fb60ca35de")
            .header("client_secret", "Y8Kteew6GE2ZmeycEt6egg==")
            .header(
                "Ocp-Apim-Subscription-Key",
                "0123456789abcdef0123456789abcdef",
            )
            .header("Merchant-Serial-Number", MSN)
    }

    /// An authenticated ePayment request with all common headers.
    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header(
                "Ocp-Apim-Subscription-Key",
                "0123456789abcdef0123456789abcdef",
            )
            .header("Merchant-Serial-Number", MSN)
            .header("Vipps-System-Name", "paygate-tests")
    }

    pub async fn create(&self, body: &Value, key: &str) -> Response {
        self.api(Method::POST, "/epayment/v1/payments")
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_ok(&self, reference: &str, value: i64) {
        let response = self
            .create(
                &web_payment(reference, value),
                &format!("create-{reference}"),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
    }

    pub async fn approve(&self, reference: &str) -> Response {
        self.api(
            Method::POST,
            &format!("/epayment/v1/test/payments/{reference}/approve"),
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn authorized(&self, reference: &str, value: i64) {
        self.create_ok(reference, value).await;
        assert_eq!(self.approve(reference).await.status(), StatusCode::OK);
    }

    pub async fn modify(
        &self,
        reference: &str,
        operation: &str,
        value: Option<i64>,
        key: &str,
    ) -> Response {
        let mut request = self
            .api(
                Method::POST,
                &format!("/epayment/v1/payments/{reference}/{operation}"),
            )
            .header("Idempotency-Key", key);
        if let Some(value) = value {
            request =
                request.json(&json!({"modificationAmount": {"currency": "NOK", "value": value}}));
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, reference: &str) -> Value {
        let response = self
            .api(Method::GET, &format!("/epayment/v1/payments/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn events(&self, reference: &str) -> Vec<Value> {
        let path = format!("/epayment/v1/payments/{reference}/events");
        let response = self.api(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub fn effects(&self, reference: &str, operation: &str) -> Vec<Value> {
        let view = self.emulator().payment_view(reference).unwrap();
        view["effects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == operation)
            .cloned()
            .collect()
    }
}

pub fn web_payment(reference: &str, value: i64) -> Value {
    json!({
        "amount": {"currency": "NOK", "value": value},
        "paymentMethod": {"type": "WALLET"},
        "reference": reference,
        "userFlow": "WEB_REDIRECT",
        "returnUrl": "https://example.com/return?order=1",
        "paymentDescription": "Test purchase"
    })
}

pub fn amounts(aggregate: &Value) -> [i64; 4] {
    [
        "authorizedAmount",
        "cancelledAmount",
        "capturedAmount",
        "refundedAmount",
    ]
    .map(|k| aggregate[k]["value"].as_i64().unwrap())
}

/// Asserts an RFC 7807 answer with the given status and title; returns the body.
pub async fn assert_problem(response: Response, status: StatusCode, title: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["title"], title, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].as_str().unwrap().starts_with("https://"));
    assert!(body["traceId"].is_string());
    body
}
