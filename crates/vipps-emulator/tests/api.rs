//! Black-box tests of the Vipps emulator over HTTP, as a Vipps client sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use vipps_emulator::{Emulator, EmulatorConfig, Fault, RunningEmulator};

const MSN: &str = "123456";

struct Harness {
    running: RunningEmulator,
    http: reqwest::Client,
    token: String,
}

impl Harness {
    async fn start() -> Self {
        Self::with_config(EmulatorConfig::default()).await
    }

    async fn with_config(config: EmulatorConfig) -> Self {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    fn emulator(&self) -> &Emulator {
        self.running.emulator()
    }

    async fn fetch_token(&self) -> String {
        let response = self.token_request().send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    fn token_request(&self) -> RequestBuilder {
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
    fn api(&self, method: Method, path: &str) -> RequestBuilder {
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

    async fn create(&self, body: &Value, key: &str) -> Response {
        self.api(Method::POST, "/epayment/v1/payments")
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn create_ok(&self, reference: &str, value: i64) {
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

    async fn approve(&self, reference: &str) -> Response {
        self.api(
            Method::POST,
            &format!("/epayment/v1/test/payments/{reference}/approve"),
        )
        .send()
        .await
        .unwrap()
    }

    async fn authorized(&self, reference: &str, value: i64) {
        self.create_ok(reference, value).await;
        assert_eq!(self.approve(reference).await.status(), StatusCode::OK);
    }

    async fn modify(
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

    async fn get(&self, reference: &str) -> Value {
        let response = self
            .api(Method::GET, &format!("/epayment/v1/payments/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn events(&self, reference: &str) -> Vec<Value> {
        let path = format!("/epayment/v1/payments/{reference}/events");
        let response = self.api(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    fn effects(&self, reference: &str, operation: &str) -> Vec<Value> {
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

fn web_payment(reference: &str, value: i64) -> Value {
    json!({
        "amount": {"currency": "NOK", "value": value},
        "paymentMethod": {"type": "WALLET"},
        "reference": reference,
        "userFlow": "WEB_REDIRECT",
        "returnUrl": "https://example.com/return?order=1",
        "paymentDescription": "Test purchase"
    })
}

fn amounts(aggregate: &Value) -> [i64; 4] {
    [
        "authorizedAmount",
        "cancelledAmount",
        "capturedAmount",
        "refundedAmount",
    ]
    .map(|k| aggregate[k]["value"].as_i64().unwrap())
}

/// Asserts an RFC 7807 answer with the given status and title; returns the body.
async fn assert_problem(response: Response, status: StatusCode, title: &str) -> Value {
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

#[tokio::test]
async fn access_token_values_are_all_strings() {
    let h = Harness::start().await;
    let response = h.token_request().send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let object = body.as_object().unwrap();
    for key in [
        "token_type",
        "expires_in",
        "ext_expires_in",
        "expires_on",
        "not_before",
        "resource",
        "access_token",
    ] {
        assert!(
            object.get(key).is_some_and(Value::is_string),
            "{key} must be a string: {body}"
        );
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "3600");
    let on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    let before: i64 = body["not_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(on - before, 3600);
    assert!(body["access_token"].as_str().unwrap().len() > 300);
    assert_ne!(body["access_token"], json!(h.token));

    for missing in ["client_id", "client_secret", "Ocp-Apim-Subscription-Key"] {
        let mut request = h.http.post(h.url("/accesstoken/get"));
        for (name, value) in [
            ("client_id", "id"),
            ("client_secret", "secret"),
            ("Ocp-Apim-Subscription-Key", "key"),
        ] {
            if name != missing {
                request = request.header(name, value);
            }
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "without {missing}"
        );
    }
    let stats = h.emulator().stats();
    assert_eq!(stats["tokensIssued"], 2);
    assert_eq!(stats["requests"]["token"], 5);
}

#[tokio::test]
async fn missing_or_bad_headers_are_refused() {
    let h = Harness::start().await;
    h.create_ok("headers-0001", 1000).await;
    let path = h.url("/epayment/v1/payments/headers-0001");
    let key = "0123456789abcdef0123456789abcdef";

    let no_auth = h
        .http
        .get(&path)
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", MSN);
    assert_eq!(
        no_auth.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let lower_bearer = h
        .http
        .get(&path)
        .header("Authorization", format!("bearer {}", h.token))
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", MSN);
    assert_eq!(
        lower_bearer.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let made_up = h
        .http
        .get(&path)
        .bearer_auth("not-a-token")
        .header("Ocp-Apim-Subscription-Key", key);
    assert_eq!(
        made_up
            .header("Merchant-Serial-Number", MSN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let no_key = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Merchant-Serial-Number", MSN);
    assert_eq!(
        no_key.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let no_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key);
    assert_problem(
        no_msn.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Missing required parameter",
    )
    .await;
    let bad_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", "12ab");
    assert_problem(
        bad_msn.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Invalid Merchant-Serial-Number",
    )
    .await;

    let no_idempotency = h
        .api(Method::POST, "/epayment/v1/payments")
        .json(&web_payment("headers-0002", 1000));
    assert_problem(
        no_idempotency.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Missing required parameter",
    )
    .await;
    let long_key = h
        .create(&web_payment("headers-0002", 1000), &"k".repeat(51))
        .await;
    assert_problem(long_key, StatusCode::BAD_REQUEST, "Invalid Idempotency-Key").await;
    let no_capture_key = h
        .api(Method::POST, "/epayment/v1/payments/headers-0001/capture")
        .json(&json!({"modificationAmount": {"currency": "NOK", "value": 100}}));
    assert_problem(
        no_capture_key.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Missing required parameter",
    )
    .await;
    assert!(h.emulator().payment_view("headers-0002").is_none());
}

#[tokio::test]
async fn create_answers_per_user_flow() {
    let h = Harness::start().await;
    let flows = [
        (
            "flow-web-01",
            json!({"userFlow": "WEB_REDIRECT", "returnUrl": "https://example.com/r"}),
            Some("https://landing.vipps.no?token="),
        ),
        (
            "flow-native-1",
            json!({"userFlow": "NATIVE_REDIRECT", "returnUrl": "myshop://paid"}),
            Some("vipps://"),
        ),
        (
            "flow-qr-0001",
            json!({"userFlow": "QR"}),
            Some("https://qr-image.vipps.no/v1?token="),
        ),
        (
            "flow-qr-target",
            json!({"userFlow": "QR", "qrFormat": {"format": "TEXT/TARGETURL"}}),
            Some("https://landing.vipps.no?token="),
        ),
        (
            "flow-push-001",
            json!({"userFlow": "PUSH_MESSAGE", "customer": {"phoneNumber": "4791234567"}}),
            None,
        ),
    ];
    for (reference, flow, prefix) in flows {
        let mut body = json!({
            "amount": {"currency": "NOK", "value": 49900},
            "paymentMethod": {"type": "WALLET"},
            "reference": reference,
            "metadata": {"orderId": "42"}
        });
        for (k, v) in flow.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = h.create(&body, &format!("key-{reference}")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["content-type"], "application/json");
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["reference"], reference);
        match prefix {
            Some(prefix) => assert!(
                created["redirectUrl"].as_str().unwrap().starts_with(prefix),
                "{created}"
            ),
            None => assert!(created.get("redirectUrl").is_none(), "{created}"),
        }
        let payment = h.get(reference).await;
        assert_eq!(payment["state"], "CREATED");
        assert_eq!(
            payment["amount"],
            json!({"currency": "NOK", "value": 49900})
        );
        assert_eq!(amounts(&payment["aggregate"]), [0, 0, 0, 0]);
        assert_eq!(payment["paymentMethod"]["type"], "WALLET");
        assert_eq!(payment["profile"], json!({}));
        assert_eq!(payment["metadata"], json!({"orderId": "42"}));
        assert_eq!(payment["pspReference"].as_str().unwrap().len(), 10);
        assert_eq!(
            payment["redirectUrl"],
            created.get("redirectUrl").cloned().unwrap_or(Value::Null)
        );
    }
    let missing = h
        .api(Method::GET, "/epayment/v1/payments/does-not-exist")
        .send()
        .await
        .unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND, "Reference not found").await;
}

#[tokio::test]
async fn create_validation_table() {
    let h = Harness::start().await;
    let base = web_payment("valid-ref-01", 1000);
    let edit = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let remove = |key: &str| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let push = |customer: Value| {
        let mut body = edit("userFlow", json!("PUSH_MESSAGE"));
        body["customer"] = customer;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            edit("reference", json!(248679167965815592_u64)),
            "Invalid reference",
        ),
        (edit("reference", json!("short")), "Invalid reference"),
        (
            edit("reference", json!("x".repeat(51))),
            "Invalid reference",
        ),
        (
            edit("reference", json!("spaces not ok")),
            "Invalid reference",
        ),
        (remove("amount"), "Missing required parameter"),
        (remove("userFlow"), "Missing required parameter"),
        (remove("paymentMethod"), "Missing required parameter"),
        (remove("returnUrl"), "Missing required parameter"),
        (
            edit("amount", json!({"currency": "NOK", "value": 99})),
            "Amount too small",
        ),
        (
            edit("amount", json!({"currency": "NOK", "value": 1000.5})),
            "Amount invalid",
        ),
        (
            edit("amount", json!({"currency": "NOK", "value": "1000"})),
            "Amount invalid",
        ),
        (
            edit("amount", json!({"currency": "USD", "value": 1000})),
            "Amount invalid",
        ),
        (
            edit("amount", json!({"currency": "NOK", "value": 65_000_001})),
            "Amount invalid",
        ),
        (
            edit("paymentMethod", json!({"type": "CASH"})),
            "Invalid payment method",
        ),
        (edit("userFlow", json!("EMAIL")), "Invalid user flow"),
        (
            edit("returnUrl", json!("http://example.com/redirect")),
            "Invalid URL",
        ),
        (
            edit("profile", json!({"scope": "phoneNumber shoeSize"})),
            "Invalid scope",
        ),
        (
            edit("paymentDescription", json!("ab")),
            "Invalid payment description",
        ),
        (
            edit("paymentDescription", json!("x".repeat(101))),
            "Invalid payment description",
        ),
        (
            edit(
                "metadata",
                json!({"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"}),
            ),
            "Invalid metadata",
        ),
        (
            edit("metadata", json!({"k": "v".repeat(501)})),
            "Invalid metadata",
        ),
        (
            edit(
                "receipt",
                json!({"orderLines": [], "bottomLine": {"currency": "NOK"}}),
            ),
            "Invalid receipt",
        ),
        (
            edit(
                "receipt",
                json!({"orderLines": [{"name": "x", "id": "1", "totalAmount": 1, "totalAmountExcludingTax": 1, "totalTaxAmount": 0}], "bottomLine": {}}),
            ),
            "Invalid receipt",
        ),
        (push(Value::Null), "Missing required parameter"),
        (
            push(json!({"phoneNumber": "91234567"})),
            "Invalid phone number",
        ),
        (
            push(json!({"phoneNumber": 4791234567_u64})),
            "Invalid phone number",
        ),
        (
            push(json!({"phoneNumber": "4791234567", "personalQr": "https://qr.vipps.no/x"})),
            "Invalid customer",
        ),
        (
            {
                let mut card = edit("paymentMethod", json!({"type": "CARD"}));
                card["userFlow"] = json!("QR");
                card
            },
            "Invalid payment method",
        ),
    ];
    for (i, (body, title)) in cases.into_iter().enumerate() {
        let response = h.create(&body, &format!("validation-{i}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, title).await;
        assert!(problem["detail"].is_string(), "{problem}");
    }

    // The vendor's seed example as written: trailing commas make it invalid JSON.
    let seed = r#"{"amount":{"value":300000,"currency":"NOK"},"paymentMethod":{"type":"WALLET"},
        "receipt":{"orderLines":[{"name":"A","id":"1","totalAmount":1,"totalAmountExcludingTax":1,"totalTaxAmount":0,},],
        "bottomLine":{"currency":"NOK",}},"reference":248679167965815592292,"userFlow":"PUSH_MESSAGE"}"#;
    let malformed = h
        .api(Method::POST, "/epayment/v1/payments")
        .header("Idempotency-Key", "seed")
        .header("Content-Type", "application/json")
        .body(seed)
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST, "Invalid request body").await;
    let not_json = h
        .api(Method::POST, "/epayment/v1/payments")
        .header("Idempotency-Key", "plain")
        .header("Content-Type", "text/plain")
        .body(base.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.emulator().stats()["requests"]["create"], 30);
    assert!(h.emulator().payment_view("valid-ref-01").is_none());
}

#[tokio::test]
async fn approve_then_partial_captures_and_over_capture() {
    let h = Harness::start().await;
    h.create_ok("capture-0001", 10_000).await;
    let early = h
        .modify("capture-0001", "capture", Some(100), "cap-early")
        .await;
    assert_problem(
        early,
        StatusCode::BAD_REQUEST,
        "Cannot capture before reservation",
    )
    .await;

    let approve = h.approve("capture-0001").await;
    assert_eq!(approve.status(), StatusCode::OK);
    assert!(approve.bytes().await.unwrap().is_empty());
    let payment = h.get("capture-0001").await;
    assert_eq!(payment["state"], "AUTHORIZED");
    assert_eq!(amounts(&payment["aggregate"]), [10_000, 0, 0, 0]);
    assert_problem(
        h.approve("capture-0001").await,
        StatusCode::BAD_REQUEST,
        "Approve failed",
    )
    .await;

    let first = h
        .modify("capture-0001", "capture", Some(4_000), "cap-1")
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["content-type"], "application/json");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["state"], "AUTHORIZED");
    assert_eq!(first["reference"], "capture-0001");
    assert_eq!(first["amount"]["value"], 10_000);
    assert_eq!(amounts(&first["aggregate"]), [10_000, 0, 4_000, 0]);

    let second: Value = h
        .modify("capture-0001", "capture", Some(5_000), "cap-2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(amounts(&second["aggregate"]), [10_000, 0, 9_000, 0]);
    let too_much = h
        .modify("capture-0001", "capture", Some(1_001), "cap-3")
        .await;
    assert_problem(too_much, StatusCode::BAD_REQUEST, "Capture amount too high").await;
    let dkk = h
        .api(Method::POST, "/epayment/v1/payments/capture-0001/capture")
        .header("Idempotency-Key", "cap-dkk")
        .json(&json!({"modificationAmount": {"currency": "DKK", "value": 100}}))
        .send()
        .await
        .unwrap();
    assert_problem(dkk, StatusCode::BAD_REQUEST, "Amount invalid").await;

    // Each modification answer carries the pspReference of the event it appended.
    let events = h.events("capture-0001").await;
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CREATED", "AUTHORIZED", "CAPTURED", "CAPTURED"]);
    assert_eq!(events[2]["pspReference"], first["pspReference"]);
    assert_eq!(events[3]["pspReference"], second["pspReference"]);
    assert_ne!(first["pspReference"], second["pspReference"]);
    let keys: Vec<Value> = events.iter().map(|e| e["idempotencyKey"].clone()).collect();
    assert_eq!(
        keys,
        [
            json!("create-capture-0001"),
            Value::Null,
            json!("cap-1"),
            json!("cap-2")
        ]
    );
    assert_eq!(
        events[2]["amount"],
        json!({"currency": "NOK", "value": 4000})
    );
    assert!(events
        .iter()
        .all(|e| e["success"] == true && e["reference"] == "capture-0001"));
    assert!(chrono::DateTime::parse_from_rfc3339(events[0]["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        h.get("capture-0001").await["pspReference"],
        second["pspReference"]
    );
    assert_eq!(h.effects("capture-0001", "capture").len(), 2);
}

#[tokio::test]
async fn cancel_before_and_after_authorization() {
    let h = Harness::start().await;
    h.create_ok("cancel-before", 5_000).await;
    let cancelled = h.modify("cancel-before", "cancel", None, "cancel-1").await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["state"], "TERMINATED");
    assert_eq!(amounts(&cancelled["aggregate"]), [0, 5_000, 0, 0]);
    let terminated = h.events("cancel-before").await;
    assert_eq!(terminated.last().unwrap()["name"], "TERMINATED");
    assert_eq!(
        terminated.last().unwrap()["pspReference"],
        cancelled["pspReference"]
    );
    assert_problem(
        h.approve("cancel-before").await,
        StatusCode::BAD_REQUEST,
        "Approve failed",
    )
    .await;

    h.authorized("cancel-after", 5_000).await;
    assert_eq!(
        h.modify("cancel-after", "capture", Some(2_000), "cap-1")
            .await
            .status(),
        StatusCode::OK
    );
    let response = h
        .api(Method::POST, "/epayment/v1/payments/cancel-after/cancel")
        .header("Idempotency-Key", "cancel-2")
        .json(&json!({"cancelTransactionOnly": false}))
        .send()
        .await
        .unwrap();
    let released: Value = response.json().await.unwrap();
    assert_eq!(released["state"], "AUTHORIZED");
    assert_eq!(amounts(&released["aggregate"]), [5_000, 3_000, 2_000, 0]);
    let last = h.events("cancel-after").await.pop().unwrap();
    assert_eq!(
        (last["name"].clone(), last["amount"]["value"].clone()),
        (json!("CANCELLED"), json!(3_000))
    );
    let late = h.modify("cancel-after", "capture", Some(1), "cap-2").await;
    assert_problem(
        late,
        StatusCode::BAD_REQUEST,
        "Cannot capture a cancelled payment",
    )
    .await;

    h.authorized("cancel-full", 5_000).await;
    assert_eq!(
        h.modify("cancel-full", "capture", Some(5_000), "cap-1")
            .await
            .status(),
        StatusCode::OK
    );
    let refused = h.modify("cancel-full", "cancel", None, "cancel-3").await;
    assert_problem(
        refused,
        StatusCode::BAD_REQUEST,
        "Cannot cancel a captured payment",
    )
    .await;
}

#[tokio::test]
async fn refunds_are_bounded_by_captured_amount() {
    let h = Harness::start().await;
    h.authorized("refund-0001", 10_000).await;
    let none_captured = h.modify("refund-0001", "refund", Some(100), "ref-0").await;
    assert_problem(
        none_captured,
        StatusCode::BAD_REQUEST,
        "Not enough refundable",
    )
    .await;
    assert_eq!(
        h.modify("refund-0001", "capture", Some(6_000), "cap-1")
            .await
            .status(),
        StatusCode::OK
    );
    let refunded: Value = h
        .modify("refund-0001", "refund", Some(2_500), "ref-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(amounts(&refunded["aggregate"]), [10_000, 0, 6_000, 2_500]);
    let too_much = h
        .modify("refund-0001", "refund", Some(3_501), "ref-2")
        .await;
    assert_problem(too_much, StatusCode::BAD_REQUEST, "Not enough refundable").await;
    assert_eq!(
        h.modify("refund-0001", "refund", Some(3_500), "ref-3")
            .await
            .status(),
        StatusCode::OK
    );
    let last = h.events("refund-0001").await.pop().unwrap();
    assert_eq!(
        (last["name"].clone(), last["idempotencyKey"].clone()),
        (json!("REFUNDED"), json!("ref-3"))
    );
    assert_eq!(h.effects("refund-0001", "refund").len(), 2);
}

#[tokio::test]
async fn idempotent_replays_have_one_effect() {
    let h = Harness::start().await;
    let body = web_payment("idem-00001", 10_000);
    let created = h.create(&body, "create-key").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let replayed = h.create(&body, "create-key").await;
    assert_eq!(replayed.status(), StatusCode::CREATED);
    assert_eq!(replayed.json::<Value>().await.unwrap(), created);
    let other_key = h.create(&body, "create-key-2").await;
    let problem = assert_problem(
        other_key,
        StatusCode::CONFLICT,
        "Idempotency error: Reference idem-00001 already exists",
    )
    .await;
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .ends_with("reference-already-exists"));
    let changed = h
        .create(&web_payment("idem-00001", 20_000), "create-key")
        .await;
    assert_eq!(changed.status(), StatusCode::CONFLICT);
    assert_eq!(h.effects("idem-00001", "create").len(), 1);

    assert_eq!(h.approve("idem-00001").await.status(), StatusCode::OK);
    let first: Value = h
        .modify("idem-00001", "capture", Some(3_000), "cap-a")
        .await
        .json()
        .await
        .unwrap();
    let again = h
        .modify("idem-00001", "capture", Some(3_000), "cap-a")
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "a replay is the first answer, unchanged"
    );
    let conflict = h
        .modify("idem-00001", "capture", Some(4_000), "cap-a")
        .await;
    assert_problem(
        conflict,
        StatusCode::CONFLICT,
        "Capture idempotency conflict",
    )
    .await;

    let captures = h.effects("idem-00001", "capture");
    assert_eq!(
        captures,
        [
            json!({"operation": "capture", "idempotencyKey": "cap-a", "amount": {"currency": "NOK", "value": 3000}})
        ]
    );
    assert_eq!(
        amounts(&h.get("idem-00001").await["aggregate"]),
        [10_000, 0, 3_000, 0]
    );
    let names: Vec<Value> = h
        .events("idem-00001")
        .await
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("CREATED"), json!("AUTHORIZED"), json!("CAPTURED")]
    );

    // The same key on another operation or reference is independent.
    assert_eq!(
        h.modify("idem-00001", "refund", Some(1_000), "cap-a")
            .await
            .status(),
        StatusCode::OK
    );
    let cancel_1: Value = h
        .modify("idem-00001", "cancel", None, "cancel-a")
        .await
        .json()
        .await
        .unwrap();
    let cancel_2: Value = h
        .modify("idem-00001", "cancel", None, "cancel-a")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancel_1, cancel_2);
    assert_eq!(h.effects("idem-00001", "cancel").len(), 1);
    assert_eq!(h.emulator().stats()["requests"]["capture"], 3);
}

#[tokio::test]
async fn faults_errors_rate_limits_and_lost_responses() {
    let h = Harness::start().await;
    h.authorized("faults-0001", 10_000).await;

    // Two 500s, then the third identical call succeeds.
    let rule = json!({"match": "capture", "method": "POST", "count": 2, "status": 500});
    assert_eq!(
        h.control(Method::POST, "/emulator/faults", Some(rule))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    for _ in 0..2 {
        let failed = h
            .modify("faults-0001", "capture", Some(1_000), "cap-1")
            .await;
        assert_problem(failed, StatusCode::INTERNAL_SERVER_ERROR, "Injected fault").await;
    }
    assert_eq!(
        h.modify("faults-0001", "capture", Some(1_000), "cap-1")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(h.effects("faults-0001", "capture").len(), 1);

    // 429 with Retry-After, on any path.
    h.emulator().inject_fault(Fault {
        status: Some(429),
        retry_after_seconds: Some(7),
        ..Fault::default()
    });
    let limited = h
        .api(Method::GET, "/epayment/v1/payments/faults-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(h.get("faults-0001").await["state"], "AUTHORIZED");

    // Lost response: the capture happens, the client sees 502, the retry replays.
    h.emulator().inject_fault(Fault {
        path_contains: Some("/capture".into()),
        status: Some(502),
        after_effect: true,
        ..Fault::default()
    });
    let lost = h
        .modify("faults-0001", "capture", Some(2_000), "cap-2")
        .await;
    assert_eq!(lost.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        h.effects("faults-0001", "capture").len(),
        2,
        "the effect was applied despite the error"
    );
    let retried: Value = h
        .modify("faults-0001", "capture", Some(2_000), "cap-2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(amounts(&retried["aggregate"]), [10_000, 0, 3_000, 0]);
    assert_eq!(
        h.effects("faults-0001", "capture").len(),
        2,
        "the retry added no effect"
    );

    // A garbage body with a success status; and a delay-only rule.
    h.emulator().inject_fault(Fault {
        body: Some("{\"reference\":\"fau".into()),
        ..Fault::default()
    });
    let truncated = h
        .api(Method::GET, "/epayment/v1/payments/faults-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(truncated.status(), StatusCode::OK);
    assert!(truncated.json::<Value>().await.is_err());
    h.emulator().inject_fault(Fault {
        delay_ms: Some(50),
        ..Fault::default()
    });
    assert_eq!(h.get("faults-0001").await["state"], "AUTHORIZED");

    // Control paths are never faulted; clearing removes pending rules.
    h.emulator().inject_fault(Fault {
        status: Some(503),
        count: 5,
        ..Fault::default()
    });
    let pending: Value = h
        .control(Method::GET, "/emulator/faults", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["faults"][0]["count"], 5);
    assert_eq!(
        h.control(Method::DELETE, "/emulator/faults", None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.get("faults-0001").await["state"], "AUTHORIZED");
    let bad_rule = h
        .control(
            Method::POST,
            "/emulator/faults",
            Some(json!({"status": 999})),
        )
        .await;
    assert_problem(bad_rule, StatusCode::BAD_REQUEST, "Invalid fault").await;

    let stats = h.emulator().stats();
    assert_eq!(
        stats["requests"]["capture"], 5,
        "faulted calls are counted too: {stats}"
    );
}

#[tokio::test]
async fn revoked_tokens_get_401_until_refreshed() {
    let mut h = Harness::start().await;
    h.create_ok("revoke-0001", 1_000).await;
    let revoked = h
        .control(Method::POST, "/emulator/tokens/revoke", None)
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = h
        .api(Method::GET, "/epayment/v1/payments/revoke-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    h.token = h.fetch_token().await;
    assert_eq!(h.get("revoke-0001").await["state"], "CREATED");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let config = EmulatorConfig {
        token_ttl: Duration::ZERO,
        ..EmulatorConfig::default()
    };
    let h = Harness::with_config(config).await;
    let response = h
        .api(Method::GET, "/epayment/v1/payments/anything-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reject_expire_and_profile_sub() {
    let h = Harness::start().await;
    h.create_ok("reject-0001", 1_000).await;
    let rejected = h
        .control(Method::POST, "/emulator/payments/reject-0001/reject", None)
        .await;
    assert_eq!(rejected.status(), StatusCode::OK);
    assert_eq!(h.get("reject-0001").await["state"], "ABORTED");
    let again = h
        .control(Method::POST, "/emulator/payments/reject-0001/expire", None)
        .await;
    assert_problem(again, StatusCode::CONFLICT, "Invalid state transition").await;
    let capture = h.modify("reject-0001", "capture", Some(100), "cap").await;
    assert_problem(
        capture,
        StatusCode::BAD_REQUEST,
        "Cannot capture before reservation",
    )
    .await;

    h.create_ok("expire-0001", 1_000).await;
    assert_eq!(
        h.control(Method::POST, "/emulator/payments/expire-0001/expire", None)
            .await
            .status(),
        StatusCode::OK
    );
    let names: Vec<Value> = h
        .events("expire-0001")
        .await
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, [json!("CREATED"), json!("EXPIRED")]);
    assert_problem(
        h.approve("expire-0001").await,
        StatusCode::BAD_REQUEST,
        "Approve failed",
    )
    .await;
    let unknown = h
        .control(Method::POST, "/emulator/payments/unknown-0001/reject", None)
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // profile.sub appears after approval when a scope was requested, stable per phone.
    let mut scoped = web_payment("scope-0001", 1_000);
    scoped["profile"] = json!({"scope": "name phoneNumber"});
    assert_eq!(
        h.create(&scoped, "scope-1").await.status(),
        StatusCode::CREATED
    );
    scoped["reference"] = json!("scope-0002");
    assert_eq!(
        h.create(&scoped, "scope-2").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(h.get("scope-0001").await["profile"], json!({}));
    let approve = h
        .api(
            Method::POST,
            "/epayment/v1/test/payments/scope-0001/approve",
        )
        .json(&json!({"customer": {"phoneNumber": "4798765432"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), StatusCode::OK);
    let approve = h
        .api(
            Method::POST,
            "/epayment/v1/test/payments/scope-0002/approve",
        )
        .json(&json!({"customer": {"phoneNumber": "4798765432"}, "token": "wrong-token"}))
        .send()
        .await
        .unwrap();
    assert_problem(approve, StatusCode::BAD_REQUEST, "Approve failed").await;
    let view: Value = h
        .control(Method::GET, "/emulator/payments/scope-0002", None)
        .await
        .json()
        .await
        .unwrap();
    let token = view["redirectUrl"]
        .as_str()
        .unwrap()
        .split("token=")
        .nth(1)
        .unwrap()
        .to_string();
    let approve = h
        .api(
            Method::POST,
            "/epayment/v1/test/payments/scope-0002/approve",
        )
        .json(&json!({"customer": {"phoneNumber": "4798765432"}, "token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), StatusCode::OK);
    let sub = h.get("scope-0001").await["profile"]["sub"].clone();
    assert!(uuid::Uuid::parse_str(sub.as_str().unwrap()).is_ok());
    assert_eq!(h.get("scope-0002").await["profile"]["sub"], sub);
    assert_eq!(
        h.emulator().payment_view("scope-0001").unwrap()["customerPhoneNumber"],
        "4798765432"
    );

    h.authorized("default-phone", 1_000).await;
    assert_eq!(
        h.emulator().payment_view("default-phone").unwrap()["customerPhoneNumber"],
        "4712345678"
    );
    assert!(h.get("default-phone").await["profile"].get("sub").is_none());
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let h = Harness::start().await;
    let url = h.url("/emulator/stats");
    assert_eq!(
        h.http.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let Harness { running, .. } = h;
    running.shutdown().await;
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
}

// ---------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------

mod receiver {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::Router;
    use serde_json::Value;

    /// One request the receiver saw, with the status it answered.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub status: u16,
        pub path_and_query: String,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
        pub json: Value,
    }

    /// A tiny webhook endpoint that records everything and fails on demand.
    #[derive(Clone, Default)]
    pub struct Receiver {
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Answer 500 to this many next requests.
        pub fail_next: Arc<AtomicU32>,
        /// Answer 500 to every event of these references.
        pub failing: Arc<Mutex<HashSet<String>>>,
    }

    impl Receiver {
        pub async fn start() -> (Self, String) {
            let receiver = Self::default();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = Router::new().fallback(receive).with_state(receiver.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            (receiver, format!("http://{addr}/hooks/vipps?shop=1"))
        }

        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        /// Successfully delivered payloads in arrival order.
        pub fn delivered(&self) -> Vec<Value> {
            self.seen()
                .into_iter()
                .filter(|s| s.status == 200)
                .map(|s| s.json)
                .collect()
        }

        /// `NAME` of each delivered event of one payment, in arrival order.
        pub fn names_for(&self, reference: &str) -> Vec<String> {
            self.delivered()
                .into_iter()
                .filter(|e| e["reference"] == reference)
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        }
    }

    async fn receive(
        State(receiver): State<Receiver>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reference = json["reference"].as_str().unwrap_or_default().to_string();
        let fail_once = receiver
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let fail = fail_once || receiver.failing.lock().unwrap().contains(&reference);
        let status = if fail {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        receiver.seen.lock().unwrap().push(Seen {
            status: status.as_u16(),
            path_and_query,
            headers,
            body: body.to_vec(),
            json,
        });
        status
    }
}

use receiver::Receiver;

/// Polls until `done` holds; fails the test after a generous bound instead of sleeping blindly.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

const ALL_EPAYMENT_EVENTS: [&str; 8] = [
    "epayments.payment.created.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "epayments.payment.terminated.v1",
    "epayments.payment.captured.v1",
    "epayments.payment.refunded.v1",
    "epayments.payment.cancelled.v1",
];

async fn fast_webhooks() -> Harness {
    Harness::with_config(EmulatorConfig {
        webhook_retry_initial: Duration::from_millis(20),
        ..EmulatorConfig::default()
    })
    .await
}

impl Harness {
    async fn register(&self, url: &str, events: &[&str]) -> Response {
        self.api(Method::POST, "/webhooks/v1/webhooks")
            .json(&json!({"url": url, "events": events}))
            .send()
            .await
            .unwrap()
    }

    /// Registers for every ePayment event; returns the secret.
    async fn subscribe_all(&self, url: &str) -> String {
        let response = self.register(url, &ALL_EPAYMENT_EVENTS).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["secret"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn webhook_registrations_register_list_delete() {
    let h = Harness::start().await;
    let created = h
        .register(
            "https://example.com/hook",
            &["epayments.payment.captured.v1"],
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(created["secret"].as_str().unwrap())
        .unwrap();
    assert_eq!(secret.len(), 64);

    let listed: Value = h
        .api(Method::GET, "/webhooks/v1/webhooks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed,
        json!({"webhooks": [{"id": id, "url": "https://example.com/hook", "events": ["epayments.payment.captured.v1"]}]})
    );

    let extra = h
        .api(Method::POST, "/webhooks/v1/webhooks")
        .json(&json!({"url": "https://example.com/x", "events": ["epayments.payment.captured.v1"], "secret": "mine"}))
        .send()
        .await
        .unwrap();
    assert_problem(extra, StatusCode::BAD_REQUEST, "Invalid request body").await;
    let unknown = h
        .register("https://example.com/x", &["epayments.payment.shipped.v1"])
        .await;
    assert_problem(unknown, StatusCode::BAD_REQUEST, "Invalid events").await;
    let bad_url = h
        .register("not a url", &["epayments.payment.captured.v1"])
        .await;
    assert_problem(bad_url, StatusCode::BAD_REQUEST, "Invalid URL").await;
    for i in 1..25 {
        let url = format!("https://example.com/hook{i}");
        assert_eq!(
            h.register(&url, &["epayments.payment.captured.v1"])
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let over = h
        .register(
            "https://example.com/too-many",
            &["epayments.payment.captured.v1"],
        )
        .await;
    assert_problem(over, StatusCode::BAD_REQUEST, "Too many webhooks").await;
    let unauthenticated = h
        .http
        .get(h.url("/webhooks/v1/webhooks"))
        .header("Ocp-Apim-Subscription-Key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let path = format!("/webhooks/v1/webhooks/{id}");
    let deleted = h.api(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        h.api(Method::DELETE, &path).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "Webhook not found",
    )
    .await;
    let listed: Value = h
        .api(Method::GET, "/webhooks/v1/webhooks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 24);
    assert!(listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["id"] != id));
    assert_eq!(h.emulator().stats()["requests"]["webhooks"], 34);
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_after_a_500() {
    let h = fast_webhooks().await;
    let (receiver, url) = Receiver::start().await;
    let secret = h.subscribe_all(&url).await;
    // Another registration that only wants captures must not get the rest.
    let (captures_only, captures_url) = Receiver::start().await;
    assert_eq!(
        h.register(&captures_url, &["epayments.payment.captured.v1"])
            .await
            .status(),
        StatusCode::CREATED
    );

    receiver
        .fail_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    h.authorized("hook-signed-1", 10_000).await;
    let captured: Value = h
        .modify("hook-signed-1", "capture", Some(10_000), "cap-1")
        .await
        .json()
        .await
        .unwrap();
    wait_until("three events are delivered", || {
        receiver.names_for("hook-signed-1").len() == 3
    })
    .await;
    wait_until("the capture-only hook got its event", || {
        captures_only.delivered().len() == 1
    })
    .await;

    assert_eq!(
        receiver.names_for("hook-signed-1"),
        ["CREATED", "AUTHORIZED", "CAPTURED"]
    );
    assert_eq!(captures_only.delivered()[0]["name"], "CAPTURED");
    let seen = receiver.seen();
    assert_eq!(seen[0].status, 500, "the first attempt was refused");
    assert_eq!(seen[1].status, 200);
    assert_eq!(
        seen[0].body, seen[1].body,
        "the retry resends the same event"
    );

    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    for delivery in &seen {
        let header = |name: &str| delivery.headers[name].to_str().unwrap().to_string();
        assert_eq!(delivery.path_and_query, "/hooks/vipps?shop=1");
        assert_eq!(header("host"), addr);
        assert_eq!(header("content-type"), "application/json");
        let date = header("x-ms-date");
        assert!(
            date.ends_with(" GMT") && chrono::DateTime::parse_from_rfc2822(&date).is_ok(),
            "{date}"
        );
        let verified = vipps_signature::verify(
            &secret,
            &delivery.path_and_query,
            &header("host"),
            &date,
            &header("x-ms-content-sha256"),
            &header("authorization"),
            &delivery.body,
        );
        assert_eq!(verified, Ok(()));
        let wrong_secret = vipps_signature::verify(
            "another-secret",
            &delivery.path_and_query,
            &header("host"),
            &date,
            &header("x-ms-content-sha256"),
            &header("authorization"),
            &delivery.body,
        );
        assert!(wrong_secret.is_err());
    }

    // The payload mirrors the event log, plus the MSN.
    let events = h.events("hook-signed-1").await;
    let delivered = receiver.delivered();
    for (payload, event) in delivered.iter().zip(&events) {
        let mut expected = event.clone();
        expected["msn"] = json!(MSN);
        assert_eq!(payload, &expected);
    }
    assert_eq!(delivered[2]["pspReference"], captured["pspReference"]);
    assert_eq!(delivered[2]["idempotencyKey"], "cap-1");
    let stats = h.emulator().stats()["webhooks"].clone();
    assert_eq!(stats["delivered"], 4, "{stats}");
    assert_eq!(stats["failed"], 1, "{stats}");
}

#[tokio::test]
async fn a_failing_webhook_blocks_only_its_own_payment() {
    let h = fast_webhooks().await;
    let (receiver, url) = Receiver::start().await;
    h.subscribe_all(&url).await;
    receiver
        .failing
        .lock()
        .unwrap()
        .insert("hook-blocked".to_string());

    h.authorized("hook-blocked", 1_000).await;
    h.create_ok("hook-free-01", 1_000).await;
    wait_until("the other payment is delivered", || {
        receiver.names_for("hook-free-01") == ["CREATED"]
    })
    .await;
    wait_until("the blocked payment was tried twice", || {
        receiver
            .seen()
            .iter()
            .filter(|s| s.json["reference"] == "hook-blocked")
            .count()
            >= 2
    })
    .await;
    // Behind the failing CREATED, AUTHORIZED has not even been attempted.
    assert!(receiver
        .seen()
        .iter()
        .all(|s| s.json["name"] != "AUTHORIZED"));

    receiver.failing.lock().unwrap().clear();
    wait_until("the blocked payment drains", || {
        receiver.names_for("hook-blocked").len() == 2
    })
    .await;
    assert_eq!(
        receiver.names_for("hook-blocked"),
        ["CREATED", "AUTHORIZED"]
    );
}

#[tokio::test]
async fn webhook_fault_knobs_drop_duplicate_reorder() {
    let h = fast_webhooks().await;
    let (receiver, url) = Receiver::start().await;
    h.subscribe_all(&url).await;

    // drop: CREATED is never sent; AUTHORIZED (same lane, so strictly later) is.
    let knobs = json!({"drop": 1});
    assert_eq!(
        h.control(Method::POST, "/emulator/webhook-faults", Some(knobs))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    h.authorized("hook-knobs-01", 5_000).await;
    wait_until("AUTHORIZED arrives", || {
        receiver.names_for("hook-knobs-01") == ["AUTHORIZED"]
    })
    .await;
    assert_eq!(receiver.seen().len(), 1, "the dropped event was never sent");

    // duplicate: the capture is delivered twice, identically.
    h.emulator()
        .set_webhook_faults(vipps_emulator::WebhookFaults {
            duplicate: 1,
            ..Default::default()
        });
    assert_eq!(
        h.modify("hook-knobs-01", "capture", Some(1_000), "cap-1")
            .await
            .status(),
        StatusCode::OK
    );
    wait_until("the duplicate arrives", || {
        receiver.names_for("hook-knobs-01").len() == 3
    })
    .await;
    let seen = receiver.seen();
    assert_eq!(seen[1].body, seen[2].body);

    // reorder: queue AUTHORIZED and CAPTURED behind a failing CREATED, then let
    // it through with one reorder pending: AUTHORIZED is held back past CAPTURED.
    receiver
        .failing
        .lock()
        .unwrap()
        .insert("hook-knobs-02".to_string());
    h.authorized("hook-knobs-02", 5_000).await;
    assert_eq!(
        h.modify("hook-knobs-02", "capture", Some(1_000), "cap-2")
            .await
            .status(),
        StatusCode::OK
    );
    wait_until("CREATED was tried", || {
        receiver
            .seen()
            .iter()
            .any(|s| s.json["reference"] == "hook-knobs-02")
    })
    .await;
    h.emulator()
        .set_webhook_faults(vipps_emulator::WebhookFaults {
            reorder: 1,
            ..Default::default()
        });
    receiver.failing.lock().unwrap().clear();
    wait_until("all three arrive", || {
        receiver.names_for("hook-knobs-02").len() == 3
    })
    .await;
    assert_eq!(
        receiver.names_for("hook-knobs-02"),
        ["CREATED", "CAPTURED", "AUTHORIZED"]
    );

    let stats = h.emulator().stats()["webhooks"].clone();
    assert_eq!(
        (stats["dropped"].clone(), stats["duplicated"].clone()),
        (json!(1), json!(1)),
        "{stats}"
    );
    assert_eq!(stats["reordered"], 1, "{stats}");
    assert_eq!(
        h.control(Method::DELETE, "/emulator/webhook-faults", None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let bad = h
        .control(
            Method::POST,
            "/emulator/webhook-faults",
            Some(json!({"lose": 1})),
        )
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST, "Invalid webhook faults").await;
}

// ---------------------------------------------------------------------------
// Userinfo
// ---------------------------------------------------------------------------

impl Harness {
    /// Creates a WEB_REDIRECT payment asking for `scope`.
    async fn create_scoped(&self, reference: &str, scope: &str) {
        let mut body = web_payment(reference, 1_000);
        body["profile"] = json!({ "scope": scope });
        let response = self.create(&body, &format!("create-{reference}")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn approve_as(&self, reference: &str, phone: &str) {
        let response = self
            .api(
                Method::POST,
                &format!("/epayment/v1/test/payments/{reference}/approve"),
            )
            .json(&json!({"customer": {"phoneNumber": phone}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn userinfo(&self, sub: &str) -> Response {
        self.api(Method::GET, &format!("/vipps-userinfo-api/userinfo/{sub}"))
            .send()
            .await
            .unwrap()
    }

    async fn sub_of(&self, reference: &str) -> String {
        self.get(reference).await["profile"]["sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{reference} has no profile.sub"))
            .to_string()
    }
}

/// Asserts a `UserinfoError` (whose `status` is a string); returns the body.
async fn assert_userinfo_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], json!(status.as_u16().to_string()), "{body}");
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "{key} in {body}");
    }
    body
}

#[tokio::test]
async fn userinfo_answers_the_consented_fields_for_the_approving_user() {
    let h = Harness::start().await;
    h.create_scoped("user-0001", "name phoneNumber email address birthDate")
        .await;
    h.approve_as("user-0001", "4791111111").await;
    let sub = h.sub_of("user-0001").await;
    assert_eq!(
        h.emulator().payment_view("user-0001").unwrap()["sub"],
        json!(sub)
    );

    let response = h.userinfo(&sub).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["sub"], json!(sub));
    assert_eq!(info["phone_number"], "4791111111");
    let given = info["given_name"].as_str().unwrap();
    let family = info["family_name"].as_str().unwrap();
    assert_eq!(info["name"], format!("{given} {family}"));
    assert!(info["email"].as_str().unwrap().contains('@'));
    assert_eq!(info["email_verified"], true);
    assert!(
        chrono::NaiveDate::parse_from_str(info["birthdate"].as_str().unwrap(), "%Y-%m-%d").is_ok()
    );
    for key in [
        "street_address",
        "postal_code",
        "region",
        "country",
        "formatted",
    ] {
        assert!(info["address"][key].is_string(), "{key} in {info}");
    }
    assert!(info.get("nin").is_none(), "{info}");

    // Same number, same sales unit: same sub, and the same made-up profile.
    h.create_scoped("user-0002", "phoneNumber").await;
    h.approve_as("user-0002", "4791111111").await;
    assert_eq!(h.sub_of("user-0002").await, sub);
    let again: Value = h.userinfo(&sub).await.json().await.unwrap();
    assert_eq!(again["name"], info["name"]);

    // The customer of a PUSH_MESSAGE payment approves when no body names one.
    let mut push = web_payment("user-push-01", 1_000);
    push["userFlow"] = json!("PUSH_MESSAGE");
    push["customer"] = json!({"phoneNumber": "4792222222"});
    push["profile"] = json!({"scope": "phoneNumber"});
    assert_eq!(
        h.create(&push, "user-push").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(h.approve("user-push-01").await.status(), StatusCode::OK);
    let push_sub = h.sub_of("user-push-01").await;
    assert_ne!(push_sub, sub);
    let push_info: Value = h.userinfo(&push_sub).await.json().await.unwrap();
    assert_eq!(
        push_info,
        json!({"sub": push_sub, "phone_number": "4792222222"})
    );

    // Without a scope there is no sub, and so nothing to ask Userinfo for.
    h.create_ok("user-noscope", 1_000).await;
    h.approve_as("user-noscope", "4793333333").await;
    assert_eq!(h.get("user-noscope").await["profile"], json!({}));

    // The default phone number approves when nobody else is named.
    h.create_scoped("user-default", "phoneNumber").await;
    assert_eq!(h.approve("user-default").await.status(), StatusCode::OK);
    let default_sub = h.sub_of("user-default").await;
    let default_info: Value = h.userinfo(&default_sub).await.json().await.unwrap();
    assert_eq!(default_info["phone_number"], "4712345678");
    assert_eq!(
        h.emulator().user_view(&default_sub).unwrap()["phoneNumber"],
        "4712345678"
    );
    assert_eq!(h.emulator().stats()["requests"]["userinfo"], 4);
}

#[tokio::test]
async fn userinfo_refusals() {
    let h = Harness::start().await;
    h.create_scoped("refuse-0001", "name").await;
    h.approve_as("refuse-0001", "4794444444").await;
    let sub = h.sub_of("refuse-0001").await;
    let path = h.url(&format!("/vipps-userinfo-api/userinfo/{sub}"));
    let key = "0123456789abcdef0123456789abcdef";

    let unknown = h.userinfo("c06c4afe-d9e1-4c5d-939a-177d752a0944").await;
    assert_userinfo_error(unknown, StatusCode::NOT_FOUND).await;

    let no_token = h.http.get(&path).header("Ocp-Apim-Subscription-Key", key);
    assert_eq!(
        no_token.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let no_key = h.http.get(&path).bearer_auth(&h.token);
    assert_eq!(
        no_key.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The MSN header is optional, but a sub is not for another sales unit's keys.
    let no_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key);
    assert_eq!(no_msn.send().await.unwrap().status(), StatusCode::OK);
    let other_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", "654321");
    assert_userinfo_error(other_msn.send().await.unwrap(), StatusCode::FORBIDDEN).await;

    // Injected faults reach Userinfo too.
    h.emulator().inject_fault(Fault {
        path_contains: Some("userinfo".into()),
        status: Some(503),
        ..Fault::default()
    });
    assert_eq!(
        h.userinfo(&sub).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.userinfo(&sub).await.status(), StatusCode::OK);

    // Consent older than 168 hours is refused.
    let backdate_path = format!("/emulator/users/{sub}/backdate-consent");
    let backdate = |hours: u32| {
        h.control(
            Method::POST,
            &backdate_path,
            Some(json!({ "hours": hours })),
        )
    };
    assert_eq!(backdate(167).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.userinfo(&sub).await.status(), StatusCode::OK);
    assert_eq!(backdate(169).await.status(), StatusCode::NO_CONTENT);
    let expired = assert_userinfo_error(h.userinfo(&sub).await, StatusCode::FORBIDDEN).await;
    assert!(
        expired["detail"].as_str().unwrap().contains("168"),
        "{expired}"
    );
    // A new consent (another scoped approval) makes it fetchable again.
    h.create_scoped("refuse-0002", "email").await;
    h.approve_as("refuse-0002", "4794444444").await;
    let info: Value = h.userinfo(&sub).await.json().await.unwrap();
    assert!(
        info["name"].is_string() && info["email"].is_string(),
        "{info}"
    );
    assert!(!h
        .emulator()
        .backdate_consent("no-such-sub", Duration::from_secs(3600)));
    let view: Value = h
        .control(Method::GET, &format!("/emulator/users/{sub}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["scopes"], json!(["email", "name"]));
    assert_eq!(view["msn"], MSN);
    assert_eq!(
        h.control(Method::GET, "/emulator/users/nobody", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.emulator().stats()["requests"]["userinfo"], 10);
}

#[tokio::test]
async fn profile_sub_can_arrive_late() {
    let h = Harness::start().await;
    h.create_scoped("lag-0001", "phoneNumber").await;
    h.authorized("lag-plain", 1_000).await;
    let lag = h
        .control(
            Method::POST,
            "/emulator/profile-lag",
            Some(json!({"getsWithoutSub": 2})),
        )
        .await;
    assert_eq!(lag.status(), StatusCode::NO_CONTENT);
    // Not used up by payments without a sub, nor before approval.
    assert_eq!(h.get("lag-plain").await["profile"], json!({}));
    assert_eq!(h.get("lag-0001").await["profile"], json!({}));
    h.approve_as("lag-0001", "4795555555").await;
    assert_eq!(h.get("lag-0001").await["profile"], json!({}));
    assert_eq!(h.get("lag-0001").await["state"], "AUTHORIZED");
    let sub = h.sub_of("lag-0001").await;
    assert_eq!(h.sub_of("lag-0001").await, sub);

    h.emulator().set_profile_lag(1);
    assert_eq!(h.get("lag-0001").await["profile"], json!({}));
    assert_eq!(h.sub_of("lag-0001").await, sub);
    let bad = h
        .control(
            Method::POST,
            "/emulator/profile-lag",
            Some(json!({"gets": 1})),
        )
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST, "Invalid profile lag").await;
}

// ---------------------------------------------------------------------------
// QR merchant redirect
// ---------------------------------------------------------------------------

const QR_PATH: &str = "/qr/v1/merchant-redirect";

impl Harness {
    fn qr(&self, method: Method, path: &str, accept: &str) -> RequestBuilder {
        self.api(method, path).header("Accept", accept)
    }

    async fn qr_create(&self, body: &Value, accept: &str) -> Response {
        self.qr(Method::POST, QR_PATH, accept)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The raw QR content of a code (`Accept: text/targetUrl`).
    async fn qr_content(&self, id: &str) -> String {
        let response = self
            .qr(Method::GET, &format!("{QR_PATH}/{id}"), "text/targetUrl")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["url"].as_str().unwrap().to_string()
    }

    /// A GET that does not follow redirects: returns status and `Location`.
    async fn scan(&self, path_or_url: &str) -> (StatusCode, Option<String>) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            self.url(path_or_url)
        };
        let response = client.get(url).send().await.unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (response.status(), location)
    }
}

/// Asserts a `QrErrorResponse`; returns the body.
async fn assert_qr_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "{key} in {body}");
    }
    body
}

fn invalid_param_names(problem: &Value) -> Vec<String> {
    problem["invalidParams"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalidParams in {problem}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn qr_merchant_redirect_create_per_accept_and_validation() {
    let h = Harness::start().await;
    let base = h.running.base_url();
    let cases = [
        (
            "stand-svg",
            "image/svg+xml",
            format!("{base}/emulator/qr-images/"),
        ),
        (
            "stand-any",
            "image/*",
            format!("{base}/emulator/qr-images/"),
        ),
        (
            "stand-png",
            "image/png",
            format!("{base}/emulator/qr-images/"),
        ),
        (
            "stand-text",
            "text/targetUrl",
            "https://qr.vipps.no/28/2/01/031/".to_string(),
        ),
    ];
    for (id, accept, prefix) in &cases {
        let body = json!({"id": id, "redirectUrl": "https://example.com/taxi/34?stand=1"});
        let response = h.qr_create(&body, accept).await;
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["id"], json!(id));
        assert_eq!(
            created["redirectUrl"],
            "https://example.com/taxi/34?stand=1"
        );
        assert_eq!(created["expiresIn"], -1);
        let url = created["url"].as_str().unwrap();
        assert!(url.starts_with(prefix.as_str()), "{accept}: {url}");
        match *accept {
            "image/png" => assert!(url.contains(".png?size=800"), "{url}"),
            "text/targetUrl" => {}
            _ => assert!(url.contains(".svg"), "{url}"),
        }
    }
    let with_ttl = h
        .qr_create(
            &json!({"id": "poster 1 æøå", "redirectUrl": "https://example.com", "ttl": 600}),
            "image/png",
        )
        .await;
    assert_eq!(with_ttl.status(), StatusCode::OK);
    let with_ttl: Value = with_ttl.json().await.unwrap();
    let left = with_ttl["expiresIn"].as_i64().unwrap();
    assert!((590..=600).contains(&left), "{with_ttl}");

    let duplicate = h
        .qr_create(
            &json!({"id": "stand-svg", "redirectUrl": "https://example.com/other"}),
            "image/png",
        )
        .await;
    let conflict = assert_qr_error(duplicate, StatusCode::CONFLICT).await;
    assert_eq!(conflict["id"], "stand-svg");

    let invalid = [
        (
            json!({"id": "a/b", "redirectUrl": "https://example.com"}),
            "Id",
        ),
        (
            json!({"id": "", "redirectUrl": "https://example.com"}),
            "Id",
        ),
        (
            json!({"id": "x".repeat(129), "redirectUrl": "https://example.com"}),
            "Id",
        ),
        (json!({"redirectUrl": "https://example.com"}), "Id"),
        (
            json!({"id": "stand-9", "redirectUrl": "http://example.com"}),
            "RedirectUrl",
        ),
        (
            json!({"id": "stand-9", "redirectUrl": "https://example.com/a,b"}),
            "RedirectUrl",
        ),
        (json!({"id": "stand-9"}), "RedirectUrl"),
        (
            json!({"id": "stand-9", "redirectUrl": "https://example.com", "ttl": 10}),
            "Ttl",
        ),
        (
            json!({"id": "stand-9", "redirectUrl": "https://example.com", "ttl": 2_147_483_648_i64}),
            "Ttl",
        ),
    ];
    for (body, field) in invalid {
        let response = h.qr_create(&body, "image/png").await;
        let problem = assert_qr_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(invalid_param_names(&problem), [field], "{body}");
    }
    let both = h
        .qr_create(
            &json!({"id": "a/b", "redirectUrl": "http://x"}),
            "image/png",
        )
        .await;
    let problem = assert_qr_error(both, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["Id", "RedirectUrl"]);

    // Accept is required, and must be one of the four.
    let body = json!({"id": "stand-9", "redirectUrl": "https://example.com"});
    let no_accept = h.qr_create(&body, "").await;
    let problem = assert_qr_error(no_accept, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["Accept"]);
    for accept in ["application/json", "*/*", "image/jpeg"] {
        let response = h.qr_create(&body, accept).await;
        assert_qr_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let listed_without_accept = h.qr(Method::GET, QR_PATH, "").send().await.unwrap();
    assert_qr_error(listed_without_accept, StatusCode::BAD_REQUEST).await;
    let not_json = h
        .qr(Method::POST, QR_PATH, "image/png")
        .header("Content-Type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_qr_error(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let bad_size = h
        .qr(Method::POST, QR_PATH, "image/png")
        .header("Size", "99")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_qr_error(bad_size, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["Size"]);
    let no_token = h
        .http
        .post(h.url(QR_PATH))
        .header("Accept", "image/png")
        .header("Ocp-Apim-Subscription-Key", "key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert!(h.emulator().qr_redirect_url("stand-9").is_none());
    assert_eq!(h.emulator().stats()["requests"]["qr"], 24);
}

#[tokio::test]
async fn qr_merchant_redirect_list_get_update_delete_and_scan() {
    let h = Harness::start().await;
    for id in ["taxi-1", "taxi-2"] {
        let body = json!({"id": id, "redirectUrl": format!("https://example.com/{id}")});
        assert_eq!(h.qr_create(&body, "image/*").await.status(), StatusCode::OK);
    }
    // Another sales unit has its own ids.
    let other = h
        .http
        .post(h.url(QR_PATH))
        .bearer_auth(&h.token)
        .header(
            "Ocp-Apim-Subscription-Key",
            "0123456789abcdef0123456789abcdef",
        )
        .header("Merchant-Serial-Number", "654321")
        .header("Accept", "text/targetUrl")
        .json(&json!({"id": "taxi-1", "redirectUrl": "https://other.example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);

    let listed: Value = h
        .qr(Method::GET, QR_PATH, "text/targetUrl")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["taxi-1", "taxi-2"]);
    assert!(listed[0]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://qr.vipps.no/"));

    let missing = h
        .qr(Method::GET, &format!("{QR_PATH}/taxi-404"), "image/png")
        .send()
        .await
        .unwrap();
    assert_qr_error(missing, StatusCode::NOT_FOUND).await;

    // Re-pointing changes where a scan lands, not what the sticker holds.
    let content = h.qr_content("taxi-1").await;
    assert_ne!(content, "https://example.com/taxi-1");
    assert_eq!(
        h.scan("/emulator/qr/taxi-1/resolve?msn=123456").await,
        (StatusCode::FOUND, Some("https://example.com/taxi-1".into()))
    );
    let updated = h
        .qr(Method::PUT, &format!("{QR_PATH}/taxi-1"), "text/targetUrl")
        .json(&json!({"redirectUrl": "https://example.com/ride/77"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["redirectUrl"], "https://example.com/ride/77");
    assert_eq!(updated["url"], json!(content));
    assert_eq!(h.qr_content("taxi-1").await, content);
    assert_eq!(
        h.scan("/emulator/qr/taxi-1/resolve?msn=123456").await,
        (
            StatusCode::FOUND,
            Some("https://example.com/ride/77".into())
        )
    );
    // The printed content's own path redirects the same way.
    let token = content.rsplit('/').next().unwrap();
    assert_eq!(
        h.scan(&format!("/emulator/qr-scan/{token}")).await,
        (
            StatusCode::FOUND,
            Some("https://example.com/ride/77".into())
        )
    );
    assert_eq!(
        h.emulator().qr_redirect_url("taxi-2").as_deref(),
        Some("https://example.com/taxi-2")
    );
    let bad_update = h
        .qr(Method::PUT, &format!("{QR_PATH}/taxi-1"), "image/png")
        .json(&json!({"redirectUrl": "http://example.com"}))
        .send()
        .await
        .unwrap();
    let problem = assert_qr_error(bad_update, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["RedirectUrl"]);
    let update_missing = h
        .qr(Method::PUT, &format!("{QR_PATH}/taxi-404"), "image/png")
        .json(&json!({"redirectUrl": "https://example.com"}))
        .send()
        .await
        .unwrap();
    assert_qr_error(update_missing, StatusCode::NOT_FOUND).await;

    let deleted = h
        .api(Method::DELETE, &format!("{QR_PATH}/taxi-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = h
        .qr(Method::GET, &format!("{QR_PATH}/taxi-1"), "image/png")
        .send()
        .await
        .unwrap();
    assert_qr_error(gone, StatusCode::NOT_FOUND).await;
    let twice = h
        .api(Method::DELETE, &format!("{QR_PATH}/taxi-1"))
        .send()
        .await
        .unwrap();
    assert_qr_error(twice, StatusCode::NOT_FOUND).await;
    assert_eq!(
        h.scan(&format!("/emulator/qr-scan/{token}")).await.0,
        StatusCode::NOT_FOUND
    );
    // The other sales unit's taxi-1 is untouched; the id may be reused, but as a new print.
    assert_eq!(
        h.scan("/emulator/qr/taxi-1/resolve").await,
        (StatusCode::FOUND, Some("https://other.example.com".into()))
    );
    let body = json!({"id": "taxi-1", "redirectUrl": "https://example.com/again"});
    assert_eq!(
        h.qr_create(&body, "image/png").await.status(),
        StatusCode::OK
    );
    assert_ne!(h.qr_content("taxi-1").await, content);
    assert_eq!(h.emulator().stats()["requests"]["qr"], 15);
}

#[tokio::test]
async fn qr_images_are_served_and_scan_to_the_content() {
    let h = Harness::start().await;
    let body = json!({"id": "sticker-1", "redirectUrl": "https://example.com/taxi"});
    assert_eq!(
        h.qr_create(&body, "text/targetUrl").await.status(),
        StatusCode::OK
    );
    let content = h.qr_content("sticker-1").await;

    let png_link: Value = h
        .qr(Method::GET, &format!("{QR_PATH}/sticker-1"), "image/png")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let png_response = h
        .http
        .get(png_link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(png_response.status(), StatusCode::OK);
    assert_eq!(png_response.headers()["content-type"], "image/png");
    let png_bytes = png_response.bytes().await.unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (width, height, grey) = decode_png(&png_bytes);
    assert_eq!((width, height), (800, 800));
    assert_eq!(scan_qr(width, height, &grey), content);

    // The Size header shapes the PNG.
    let small_link: Value = h
        .qr(Method::GET, &format!("{QR_PATH}/sticker-1"), "image/png")
        .header("Size", "200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let small = h
        .http
        .get(small_link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (width, height, grey) = decode_png(&small);
    assert_eq!((width, height), (200, 200));
    assert_eq!(scan_qr(width, height, &grey), content);

    let svg_link: Value = h
        .qr(
            Method::GET,
            &format!("{QR_PATH}/sticker-1"),
            "image/svg+xml",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let svg_response = h
        .http
        .get(svg_link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(svg_response.status(), StatusCode::OK);
    assert_eq!(svg_response.headers()["content-type"], "image/svg+xml");
    let svg = svg_response.text().await.unwrap();
    // The root element is <svg>, after an optional XML declaration.
    let document = svg.trim_start();
    let root = match document.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").unwrap().1.trim_start(),
        None => document,
    };
    assert!(root.starts_with("<svg "), "{svg}");
    assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    assert!(svg.trim_end().ends_with("</svg>"));

    let image_url = png_link["url"].as_str().unwrap().to_string();
    let too_big = image_url.replace("size=800", "size=5000");
    assert_eq!(
        h.http.get(too_big).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.control(Method::GET, "/emulator/qr-images/nope.png", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Deleting the code kills its images too.
    let deleted = h
        .api(Method::DELETE, &format!("{QR_PATH}/sticker-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        h.http.get(image_url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

/// 8-bit greyscale pixels of a PNG.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let decoded = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(decoded.color(), image::ColorType::L8, "8-bit greyscale");
    let grey = decoded.to_luma8();
    (grey.width() as usize, grey.height() as usize, grey.into_raw())
}

/// What a phone camera would read from the picture.
fn scan_qr(width: usize, height: usize, grey: &[u8]) -> String {
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| grey[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

// ---------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------

/// A taxi ride: distance and waiting time, a tip, NOK.
fn taxi_receipt() -> Value {
    json!({
        "orderLines": [
            {
                "name": "Ride Oslo S - Gardermoen",
                "id": "ride-km",
                "totalAmount": 45000,
                "totalAmountExcludingTax": 40179,
                "totalTaxAmount": 4821,
                "taxPercentage": 12,
                "unitInfo": {"unitPrice": 1200, "quantity": "37.5", "quantityUnit": "KM"},
                "discount": 0,
                "isReturn": false,
                "isShipping": false
            },
            {
                "name": "Waiting time",
                "id": "ride-wait",
                "totalAmount": 5000,
                "totalAmountExcludingTax": 4464,
                "totalTaxAmount": 536,
                "taxPercentage": 12,
                "unitInfo": {"unitPrice": null, "quantity": "10", "quantityUnit": "MINUTE"}
            }
        ],
        "bottomLine": {
            "currency": "NOK",
            "tipAmount": 2000,
            "posId": "taxi-34",
            "receiptNumber": "0001-77"
        }
    })
}

#[tokio::test]
async fn receipts_are_validated_and_stored() {
    let h = Harness::start().await;
    let mut payment = web_payment("receipt-0001", 52_000);
    payment["receipt"] = taxi_receipt();
    let response = h.create(&payment, "receipt-ok").await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let view: Value = h
        .control(Method::GET, "/emulator/payments/receipt-0001", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["receipt"], taxi_receipt());
    h.create_ok("receipt-none", 1_000).await;
    assert!(h
        .emulator()
        .payment_view("receipt-none")
        .unwrap()
        .get("receipt")
        .is_none());

    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (|r| r["orderLines"] = json!([]), "receipt.orderLines"),
        (
            |r| {
                r.as_object_mut().unwrap().remove("orderLines");
            },
            "receipt.orderLines",
        ),
        (
            |r| {
                r["orderLines"][0].as_object_mut().unwrap().remove("name");
            },
            "receipt.orderLines[0].name",
        ),
        (
            |r| {
                r["orderLines"][1].as_object_mut().unwrap().remove("id");
            },
            "receipt.orderLines[1].id",
        ),
        (
            |r| {
                r["orderLines"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("totalAmountExcludingTax");
            },
            "receipt.orderLines[0].totalAmountExcludingTax",
        ),
        (
            |r| {
                r["orderLines"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("taxPercentage");
            },
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            |r| r["orderLines"][0]["taxPercentage"] = json!(101),
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            |r| r["orderLines"][0]["taxPercentage"] = json!(12.5),
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            |r| r["orderLines"][0]["totalAmount"] = json!(-100),
            "receipt.orderLines[0].totalAmount",
        ),
        (
            |r| r["orderLines"][0]["totalTaxAmount"] = json!("4821"),
            "receipt.orderLines[0].totalTaxAmount",
        ),
        (
            |r| r["orderLines"][0]["discount"] = json!(-1),
            "receipt.orderLines[0].discount",
        ),
        (
            |r| r["orderLines"][0]["isReturn"] = json!("no"),
            "receipt.orderLines[0].isReturn",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!(37.5),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!("37,5"),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!("1.123456789"),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!("12345678901"),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantityUnit"] = json!("MILE"),
            "receipt.orderLines[0].unitInfo.quantityUnit",
        ),
        (
            |r| {
                r["orderLines"][0]["unitInfo"]
                    .as_object_mut()
                    .unwrap()
                    .remove("unitPrice");
            },
            "receipt.orderLines[0].unitInfo.unitPrice",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["unitPrice"] = json!(-5),
            "receipt.orderLines[0].unitInfo.unitPrice",
        ),
        (
            |r| {
                r.as_object_mut().unwrap().remove("bottomLine");
            },
            "receipt.bottomLine",
        ),
        (
            |r| {
                r["bottomLine"].as_object_mut().unwrap().remove("currency");
            },
            "receipt.bottomLine.currency",
        ),
        (
            |r| r["bottomLine"]["currency"] = json!("SEK"),
            "receipt.bottomLine.currency",
        ),
        (
            |r| r["bottomLine"]["currency"] = json!("DKK"),
            "receipt.bottomLine.currency",
        ),
        (
            |r| r["bottomLine"]["tipAmount"] = json!(-1),
            "receipt.bottomLine.tipAmount",
        ),
        (
            |r| r["bottomLine"]["receiptNumber"] = json!(1),
            "receipt.bottomLine.receiptNumber",
        ),
        (
            |r| r["bottomLine"]["posId"] = json!(34),
            "receipt.bottomLine.posId",
        ),
    ];
    for (i, (edit, field)) in cases.into_iter().enumerate() {
        let mut receipt = taxi_receipt();
        edit(&mut receipt);
        let mut body = web_payment(&format!("receipt-bad-{i:02}"), 52_000);
        body["receipt"] = receipt;
        let response = h.create(&body, &format!("receipt-bad-{i}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, "Invalid receipt").await;
        let names: Vec<&str> = problem["extraDetails"]
            .as_array()
            .unwrap_or_else(|| panic!("no extraDetails in {problem}"))
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [field], "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "{problem}"
        );
        assert!(problem["extraDetails"][0]["reason"].is_string());
    }
    // Several mistakes are all listed.
    let mut receipt = taxi_receipt();
    receipt["orderLines"][0]["taxPercentage"] = json!(-1);
    receipt["bottomLine"]["tipAmount"] = json!(-1);
    let mut body = web_payment("receipt-bad-many", 52_000);
    body["receipt"] = receipt;
    let problem = assert_problem(
        h.create(&body, "receipt-many").await,
        StatusCode::BAD_REQUEST,
        "Invalid receipt",
    )
    .await;
    assert_eq!(
        problem["extraDetails"].as_array().unwrap().len(),
        2,
        "{problem}"
    );
    assert!(h.emulator().payment_view("receipt-bad-00").is_none());
}

// ---------------------------------------------------------------------------
// Convenience approve
// ---------------------------------------------------------------------------

#[tokio::test]
async fn convenience_approve_needs_no_token() {
    let h = Harness::start().await;
    let mut push = web_payment("easy-0001", 1_000);
    push["userFlow"] = json!("PUSH_MESSAGE");
    push["customer"] = json!({"phoneNumber": "4796666666"});
    assert_eq!(
        h.create(&push, "easy-1").await.status(),
        StatusCode::CREATED
    );
    let approved = h
        .control(Method::POST, "/emulator/payments/easy-0001/approve", None)
        .await;
    assert_eq!(approved.status(), StatusCode::OK);
    let view: Value = approved.json().await.unwrap();
    assert_eq!(view["state"], "AUTHORIZED");
    assert_eq!(view["customerPhoneNumber"], "4796666666");
    assert_eq!(h.get("easy-0001").await["state"], "AUTHORIZED");
    let again = h
        .control(Method::POST, "/emulator/payments/easy-0001/approve", None)
        .await;
    assert_problem(again, StatusCode::BAD_REQUEST, "Approve failed").await;

    // As curl -d sends it (form content type), naming the approver; scope gives a sub.
    h.create_scoped("easy-0002", "phoneNumber").await;
    let approved = h
        .http
        .post(h.url("/emulator/payments/easy-0002/approve"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"phoneNumber": "4797777777"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    let view: Value = approved.json().await.unwrap();
    assert_eq!(view["customerPhoneNumber"], "4797777777");
    let sub = h.sub_of("easy-0002").await;
    assert_eq!(view["sub"], json!(sub));
    let info: Value = h.userinfo(&sub).await.json().await.unwrap();
    assert_eq!(info["phone_number"], "4797777777");

    h.create_ok("easy-0003", 1_000).await;
    let bad_phone = h
        .control(
            Method::POST,
            "/emulator/payments/easy-0003/approve",
            Some(json!({"phoneNumber": "91234567"})),
        )
        .await;
    assert_problem(bad_phone, StatusCode::BAD_REQUEST, "Invalid phone number").await;
    let unknown = h
        .control(Method::POST, "/emulator/payments/easy-9999/approve", None)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "Reference not found").await;

    // In process, for tests that drive paygate.
    assert!(h
        .emulator()
        .approve_payment("easy-0003", Some("123"))
        .unwrap_err()
        .starts_with("Invalid phone number"));
    let view = h.emulator().approve_payment("easy-0003", None).unwrap();
    assert_eq!(view["customerPhoneNumber"], "4712345678");
    assert!(h
        .emulator()
        .approve_payment("easy-0003", None)
        .unwrap_err()
        .starts_with("Approve failed"));
    // The control API is not the Vipps API: nothing counted as a force-approve.
    assert_eq!(h.emulator().stats()["requests"]["approve"], 0);
}
