//! Client tests against a small axum mock of the Vipps APIs that records every request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use url::Url;

use super::models::*;
use super::*;
use crate::config::Secret;

const TOKEN_PATH: &str = "POST /accesstoken/get";

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    /// Raw (still percent-encoded) path.
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct MockState {
    requests: Mutex<Vec<Recorded>>,
    /// "METHOD /path" → replies in order; the last one repeats.
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    token_delay: Mutex<Duration>,
}

struct Mock {
    state: Arc<MockState>,
    url: Url,
}

impl Mock {
    async fn start() -> Mock {
        let state = Arc::new(MockState::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Mock { state, url }
    }

    fn script(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .insert(key.to_owned(), replies.into_iter().collect());
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/accesstoken/get")
            .collect()
    }

    fn api_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != "/accesstoken/get")
            .collect()
    }

    fn client(&self) -> VippsClient {
        self.client_with(fast_policy())
    }

    fn client_with(&self, retry: RetryPolicy) -> VippsClient {
        VippsClient::new(config(self.url.clone(), retry)).unwrap()
    }
}

async fn handle(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let key = format!("{method} {path}");
    let token_count = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            headers,
            body: body.to_vec(),
        });
        requests
            .iter()
            .filter(|r| r.path == "/accesstoken/get")
            .count()
    };
    let scripted = {
        let mut scripts = state.scripts.lock().unwrap();
        scripts.get_mut(&key).and_then(|q| {
            if q.len() > 1 {
                q.pop_front()
            } else {
                q.front().cloned()
            }
        })
    };
    let reply = match scripted {
        Some(r) => r,
        // Tokens differ per request (tok-1, tok-2, …), with every value a string as in the docs.
        None if key == TOKEN_PATH => {
            let delay = *state.token_delay.lock().unwrap();
            let mut r = reply(
                200,
                json!({
                    "token_type": "Bearer",
                    "expires_in": "3600",
                    "ext_expires_in": "0",
                    "expires_on": "4102444800",
                    "not_before": "1700000000",
                    "resource": "00000002-0000-0000-c000-000000000000",
                    "access_token": format!("tok-{token_count}"),
                })
                .to_string(),
            );
            r.delay = delay;
            r
        }
        None => reply(404, r#"{"title":"no script"}"#),
    };
    tokio::time::sleep(reply.delay).await;
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        resp.headers_mut().insert(name, value.parse().unwrap());
    }
    resp
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_elapsed: Duration::from_secs(3),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_attempts: 4,
    }
}

fn config(base_url: Url, retry: RetryPolicy) -> VippsConfig {
    let mut c = VippsConfig::new(
        base_url,
        "client-id-1",
        Secret::new("client-secret-XYZ"),
        Secret::new("subkey-0123456789abcdef"),
        "123456",
    );
    c.request_timeout = Duration::from_secs(2);
    c.retry = retry;
    c
}

fn amount(value: i64) -> Amount {
    Amount {
        currency: "NOK".into(),
        value,
    }
}

fn create_request(reference: &str) -> CreatePaymentRequest {
    CreatePaymentRequest {
        amount: amount(1000),
        payment_method: PaymentMethod {
            kind: "WALLET".into(),
        },
        reference: reference.into(),
        user_flow: "PUSH_MESSAGE".into(),
        customer: Some(Customer {
            phone_number: "4791234567".into(),
        }),
        return_url: None,
        payment_description: Some("Test".into()),
        profile: Some(ProfileRequest {
            scope: "phoneNumber".into(),
        }),
        receipt: None,
        metadata: None,
        customer_interaction: None,
    }
}

fn created(reference: &str) -> Reply {
    reply(201, json!({ "reference": reference }).to_string())
}

fn zero() -> Value {
    json!({"currency": "NOK", "value": 0})
}

fn payment_json(reference: &str, state: &str) -> String {
    json!({
        "aggregate": {"authorizedAmount": zero(), "cancelledAmount": zero(), "capturedAmount": zero(), "refundedAmount": zero()},
        "amount": {"currency": "NOK", "value": 1000},
        "state": state,
        "paymentMethod": {"type": "WALLET"},
        "profile": {},
        "pspReference": "psp-1",
        "reference": reference,
    })
    .to_string()
}

fn modification_json(reference: &str) -> String {
    json!({
        "amount": {"currency": "NOK", "value": 1000},
        "state": "AUTHORIZED",
        "aggregate": {"authorizedAmount": zero(), "cancelledAmount": zero(), "capturedAmount": zero(), "refundedAmount": zero()},
        "pspReference": "psp-2",
        "reference": reference,
    })
    .to_string()
}

fn assert_common_headers(r: &Recorded) {
    assert_eq!(
        r.header("ocp-apim-subscription-key"),
        Some("subkey-0123456789abcdef"),
        "{r:?}"
    );
    assert_eq!(r.header("merchant-serial-number"), Some("123456"));
    assert_eq!(r.header("vipps-system-name"), Some("paygate"));
    assert_eq!(
        r.header("vipps-system-version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

// --- headers and wire format ----------------------------------------------------------------

#[tokio::test]
async fn every_call_carries_the_required_headers() {
    let mock = Mock::start().await;
    let reference = "acme-shop-123-order1";
    mock.script("POST /epayment/v1/payments", [created(reference)]);
    let payment = format!("/epayment/v1/payments/{reference}");
    mock.script(
        &format!("GET {payment}"),
        [reply(200, payment_json(reference, "AUTHORIZED"))],
    );
    mock.script(&format!("GET {payment}/events"), [reply(200, "[]")]);
    for action in ["capture", "refund", "cancel"] {
        mock.script(
            &format!("POST {payment}/{action}"),
            [reply(200, modification_json(reference))],
        );
    }
    mock.script(
        "GET /webhooks/v1/webhooks",
        [reply(200, r#"{"webhooks":[]}"#)],
    );
    let c = mock.client();

    c.create_payment(&create_request(reference), "key-create")
        .await
        .unwrap();
    c.get_payment(reference).await.unwrap();
    c.get_payment_events(reference).await.unwrap();
    c.capture_payment(reference, &amount(1000), "key-capture")
        .await
        .unwrap();
    c.refund_payment(reference, &amount(500), "key-refund")
        .await
        .unwrap();
    c.cancel_payment(reference, "key-cancel").await.unwrap();
    c.list_webhooks().await.unwrap();

    let token = mock.token_requests();
    assert_eq!(token.len(), 1, "one token for all calls");
    let t = &token[0];
    assert_eq!(t.method, "POST");
    assert_common_headers(t);
    assert_eq!(t.header("client_id"), Some("client-id-1"));
    assert_eq!(t.header("client_secret"), Some("client-secret-XYZ"));
    assert_eq!(t.header("authorization"), None);
    assert_eq!(t.header("content-length"), Some("0"));
    assert!(t.body.is_empty());

    let api = mock.api_requests();
    assert_eq!(api.len(), 7);
    for r in &api {
        assert_common_headers(r);
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
        if r.body.is_empty() {
            assert_eq!(r.header("content-type"), None, "{r:?}");
        } else {
            assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
        }
    }
    let keys: Vec<_> = api.iter().map(|r| r.header("idempotency-key")).collect();
    assert_eq!(
        keys,
        [
            Some("key-create"),
            None,
            None,
            Some("key-capture"),
            Some("key-refund"),
            Some("key-cancel"),
            None
        ]
    );
    assert_eq!(api[3].path, format!("{payment}/capture"));
    assert_eq!(
        api[3].json(),
        json!({"modificationAmount": {"currency": "NOK", "value": 1000}})
    );
    assert_eq!(
        api[4].json(),
        json!({"modificationAmount": {"currency": "NOK", "value": 500}})
    );
    assert!(api[5].body.is_empty(), "cancel has no body in v1.4.1");
    assert_eq!(api[5].header("content-length"), Some("0"));
}

#[tokio::test]
async fn reference_and_phone_number_are_json_strings() {
    let mock = Mock::start().await;
    mock.script("POST /epayment/v1/payments", [created("12345678901")]);
    let resp = mock
        .client()
        .create_payment(&create_request("12345678901"), "k1")
        .await
        .unwrap();
    assert_eq!(resp.reference, "12345678901");
    let body = mock.api_requests()[0].json();
    assert_eq!(body["reference"], Value::String("12345678901".into()));
    assert_eq!(
        body["customer"]["phoneNumber"],
        Value::String("4791234567".into())
    );
    assert_eq!(body["paymentMethod"]["type"], "WALLET");
    assert_eq!(body["userFlow"], "PUSH_MESSAGE");
}

#[tokio::test]
async fn path_segments_are_percent_encoded() {
    let mock = Mock::start().await;
    mock.script(
        "GET /vipps-userinfo-api/userinfo/a%20b%2Fc%3F",
        [reply(
            200,
            r#"{"sub":"a b/c?","phone_number":"4791234567","email_verified":true}"#,
        )],
    );
    let info = mock.client().get_userinfo("a b/c?").await.unwrap();
    assert_eq!(info.sub, "a b/c?");
    assert_eq!(info.phone_number.as_deref(), Some("4791234567"));
    assert_eq!(info.email_verified, Some(true));
    let debug = format!("{info:?}");
    assert!(
        !debug.contains("4791234567") && debug.contains("***67"),
        "{debug}"
    );
}

#[tokio::test]
async fn qr_format_selects_accept_and_size() {
    let mock = Mock::start().await;
    let qr = r#"{"id":"billboard 1/ø","url":"https://qr.example/x.png","redirectUrl":"https://example.com/p","expiresIn":-1}"#;
    mock.script("POST /qr/v1/merchant-redirect", [reply(200, qr)]);
    mock.script(
        "GET /qr/v1/merchant-redirect",
        [reply(200, format!("[{qr}]"))],
    );
    let path = "/qr/v1/merchant-redirect/billboard%201%2F%C3%B8";
    mock.script(&format!("GET {path}"), [reply(200, qr)]);
    mock.script(&format!("PUT {path}"), [reply(200, qr)]);
    mock.script(&format!("DELETE {path}"), [reply(200, "")]);
    let c = mock.client();
    let id = "billboard 1/ø";

    let request = MerchantRedirectQrRequest {
        id: id.into(),
        redirect_url: "https://example.com/p".into(),
        ttl: Some(600),
    };
    let created = c
        .create_merchant_redirect_qr(&request, QrFormat::Png { size: Some(400) })
        .await
        .unwrap();
    assert_eq!(created.expires_in, -1);
    assert_eq!(
        c.list_merchant_redirect_qrs(QrFormat::Svg)
            .await
            .unwrap()
            .len(),
        1
    );
    c.get_merchant_redirect_qr(id, QrFormat::TargetUrl)
        .await
        .unwrap();
    c.update_merchant_redirect_qr(id, "https://example.com/q", QrFormat::Png { size: None })
        .await
        .unwrap();
    c.delete_merchant_redirect_qr(id).await.unwrap();

    let api = mock.api_requests();
    assert_eq!(
        api[0].json(),
        json!({"id": id, "redirectUrl": "https://example.com/p", "ttl": 600})
    );
    let accept: Vec<_> = api
        .iter()
        .map(|r| (r.header("accept"), r.header("size")))
        .collect();
    assert_eq!(
        accept[..4],
        [
            (Some("image/png"), Some("400")),
            (Some("image/svg+xml"), None),
            (Some("text/targetUrl"), None),
            (Some("image/png"), None),
        ]
    );
    assert_eq!(
        api[3].json(),
        json!({"redirectUrl": "https://example.com/q"})
    );
    assert_eq!(api[4].method, "DELETE");
    assert_eq!(api[4].path, path);
}

#[tokio::test]
async fn webhooks_api() {
    let mock = Mock::start().await;
    mock.script(
        "POST /webhooks/v1/webhooks",
        [reply(
            201,
            r#"{"id":"0b5d1e0c-1111-2222-3333-444455556666","secret":"s3cr3t"}"#,
        )],
    );
    mock.script("DELETE /webhooks/v1/webhooks/0b5d1e0c", [reply(204, "")]);
    let c = mock.client();
    let reg = c
        .register_webhook(&RegisterWebhookRequest {
            url: "https://example.com/hook".into(),
            events: vec!["epayments.payment.authorized.v1".into()],
        })
        .await
        .unwrap();
    assert_eq!(reg.secret, "s3cr3t");
    c.delete_webhook("0b5d1e0c").await.unwrap();
    let api = mock.api_requests();
    assert_eq!(
        api[0].json(),
        json!({"url": "https://example.com/hook", "events": ["epayments.payment.authorized.v1"]})
    );
}

// --- access token ----------------------------------------------------------------------------

#[tokio::test]
async fn token_is_cached_across_calls() {
    let mock = Mock::start().await;
    mock.script(
        "GET /epayment/v1/payments/ref-00001",
        [reply(200, payment_json("ref-00001", "CREATED"))],
    );
    let c = mock.client();
    c.get_payment("ref-00001").await.unwrap();
    c.clone().get_payment("ref-00001").await.unwrap();
    assert_eq!(mock.token_requests().len(), 1);
}

#[tokio::test]
async fn concurrent_calls_share_one_token_request() {
    let mock = Mock::start().await;
    *mock.state.token_delay.lock().unwrap() = Duration::from_millis(50);
    mock.script(
        "GET /epayment/v1/payments/ref-00001",
        [reply(200, payment_json("ref-00001", "CREATED"))],
    );
    let c = mock.client();
    let calls = (0..50).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.get_payment("ref-00001").await })
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap().unwrap();
    }
    assert_eq!(mock.token_requests().len(), 1);
    assert_eq!(mock.api_requests().len(), 50);
}

#[tokio::test]
async fn unauthorized_refreshes_the_token_once_and_retries() {
    let mock = Mock::start().await;
    mock.script(
        "GET /epayment/v1/payments/ref-00001",
        [
            reply(
                401,
                r#"{"statusCode":401,"message":"Access token expired"}"#,
            ),
            reply(200, payment_json("ref-00001", "AUTHORIZED")),
        ],
    );
    let c = mock.client();
    let p = c.get_payment("ref-00001").await.unwrap();
    assert_eq!(p.state, "AUTHORIZED");
    let api = mock.api_requests();
    assert_eq!(api.len(), 2);
    assert_eq!(api[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(api[1].header("authorization"), Some("Bearer tok-2"));
    assert_eq!(mock.token_requests().len(), 2);
}

#[tokio::test]
async fn persistent_unauthorized_is_rejected_after_one_refresh() {
    let mock = Mock::start().await;
    mock.script(
        "GET /epayment/v1/payments/ref-00001",
        [reply(
            401,
            r#"{"statusCode":401,"message":"Access denied"}"#,
        )],
    );
    let err = mock.client().get_payment("ref-00001").await.unwrap_err();
    assert!(
        matches!(&err, VippsError::Rejected { status: 401, problem } if problem.title == "Access denied"),
        "{err:?}"
    );
    assert_eq!(mock.api_requests().len(), 2);
    assert_eq!(mock.token_requests().len(), 2);
}

#[tokio::test]
async fn bad_credentials_give_auth_error_and_no_api_call() {
    let mock = Mock::start().await;
    mock.script(TOKEN_PATH, [reply(401, r#"{"error":"invalid_client"}"#)]);
    let err = mock
        .client()
        .capture_payment("ref-00001", &amount(100), "k1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VippsError::Auth {
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.outcome_unknown(), "nothing was sent");
    assert_eq!(
        mock.token_requests().len(),
        1,
        "401 from the token endpoint is not retried"
    );
    assert!(mock.api_requests().is_empty());
}

#[tokio::test]
async fn token_with_numeric_values_is_accepted() {
    let mock = Mock::start().await;
    mock.script(
        TOKEN_PATH,
        [reply(
            200,
            r#"{"access_token":"num-tok","expires_in":3600,"token_type":"Bearer"}"#,
        )],
    );
    mock.script(
        "GET /webhooks/v1/webhooks",
        [reply(200, r#"{"webhooks":[]}"#)],
    );
    mock.client().list_webhooks().await.unwrap();
    assert_eq!(
        mock.api_requests()[0].header("authorization"),
        Some("Bearer num-tok")
    );
}

// --- retries ---------------------------------------------------------------------------------

#[tokio::test]
async fn server_errors_are_retried_with_the_same_key_and_body() {
    let mock = Mock::start().await;
    mock.script(
        "POST /epayment/v1/payments",
        [
            reply(500, r#"{"title":"Internal error"}"#),
            reply(503, "upstream down"),
            created("acme-ref-0001"),
        ],
    );
    let c = mock.client();
    let resp = c
        .create_payment(&create_request("acme-ref-0001"), "idem-123")
        .await
        .unwrap();
    assert_eq!(resp.reference, "acme-ref-0001");
    let api = mock.api_requests();
    assert_eq!(api.len(), 3);
    for r in &api {
        assert_eq!(r.header("idempotency-key"), Some("idem-123"));
        assert_eq!(r.body, api[0].body);
    }
}

#[tokio::test]
async fn persistent_server_error_is_unavailable_after_max_attempts() {
    let mock = Mock::start().await;
    mock.script(
        "POST /epayment/v1/payments/ref-00001/capture",
        [reply(502, "bad gateway")],
    );
    let err = mock
        .client()
        .capture_payment("ref-00001", &amount(100), "k1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VippsError::Unavailable {
                status: Some(502),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.outcome_unknown());
    assert_eq!(mock.api_requests().len(), 4, "max_attempts");
}

#[tokio::test]
async fn persistent_server_error_stops_at_the_time_budget() {
    let mock = Mock::start().await;
    mock.script("GET /epayment/v1/payments/ref-00001", [reply(500, "")]);
    // A budget long enough that a loaded machine still gets the 500 answers (a budget cut
    // inside the first attempt would end in a timeout instead).
    let policy = RetryPolicy {
        max_elapsed: Duration::from_millis(1000),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(40),
        max_attempts: 1000,
    };
    let err = mock
        .client_with(policy)
        .get_payment("ref-00001")
        .await
        .unwrap_err();
    // The last attempt may be the 500 or, on a loaded machine, one the budget cut short:
    // either way the caller gets "unavailable, outcome unknown", never a final refusal.
    assert!(matches!(err, VippsError::Unavailable { .. }), "{err:?}");
    assert!(err.outcome_unknown());
    let attempts = mock.api_requests().len();
    assert!((2..1000).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mock = Mock::start().await;
    let mut limited = reply(429, r#"{"title":"Too many requests"}"#);
    limited.headers.push(("retry-after", "1".into()));
    mock.script(
        "GET /epayment/v1/payments/ref-00001",
        [limited, reply(200, payment_json("ref-00001", "CREATED"))],
    );
    let c = mock.client();
    c.get_payment("ref-00001").await.unwrap();
    assert_eq!(mock.api_requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_beyond_the_budget_is_returned() {
    let mock = Mock::start().await;
    let mut limited = reply(429, r#"{"title":"Too many requests"}"#);
    limited.headers.push(("retry-after", "60".into()));
    mock.script("POST /epayment/v1/payments/ref-00001/refund", [limited]);
    let err = mock
        .client()
        .refund_payment("ref-00001", &amount(100), "k1")
        .await
        .unwrap_err();
    match &err {
        VippsError::RateLimited {
            retry_after,
            problem,
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(60)));
            assert_eq!(
                problem.as_ref().map(|p| p.title.as_str()),
                Some("Too many requests")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.outcome_unknown());
    assert_eq!(mock.api_requests().len(), 1);
}

#[tokio::test]
async fn problem_json_is_rejected_without_retry() {
    let mock = Mock::start().await;
    let problem = json!({
        "type": "https://developer.vippsmobilepay.com/docs/APIs/epayment-api/errors",
        "title": "Bad Request",
        "detail": "Amount too small",
        "status": 400,
        "traceId": "trace-42",
    });
    let mut r = reply(400, problem.to_string());
    r.headers = vec![("content-type", "application/problem+json".into())];
    mock.script("POST /epayment/v1/payments", [r]);
    let c = mock.client();
    let err = c
        .create_payment(&create_request("ref-00001"), "k1")
        .await
        .unwrap_err();
    match &err {
        VippsError::Rejected { status, problem } => {
            assert_eq!(*status, 400);
            assert_eq!(problem.title, "Bad Request");
            assert_eq!(problem.detail.as_deref(), Some("Amount too small"));
            assert_eq!(problem.trace_id.as_deref(), Some("trace-42"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.outcome_unknown());
    assert_eq!(mock.api_requests().len(), 1);
}

#[tokio::test]
async fn userinfo_error_with_string_status() {
    let mock = Mock::start().await;
    mock.script(
        "GET /vipps-userinfo-api/userinfo/sub-1",
        [reply(404, r#"{"type":"x","title":"Not Found","status":"404","detail":"no such sub","instance":"inst-1"}"#)],
    );
    let err = mock.client().get_userinfo("sub-1").await.unwrap_err();
    let VippsError::Rejected { problem, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        (problem.status, problem.trace_id.as_deref()),
        (Some(404), Some("inst-1"))
    );
}

#[tokio::test]
async fn non_idempotent_post_is_not_retried_after_a_server_error() {
    let mock = Mock::start().await;
    mock.script("POST /webhooks/v1/webhooks", [reply(500, "")]);
    let err = mock
        .client()
        .register_webhook(&RegisterWebhookRequest {
            url: "https://example.com/hook".into(),
            events: vec![],
        })
        .await
        .unwrap_err();
    assert!(err.outcome_unknown());
    assert_eq!(mock.api_requests().len(), 1);
}

#[tokio::test]
async fn delete_whose_answer_was_lost_counts_as_done() {
    let mock = Mock::start().await;
    mock.script(
        "DELETE /webhooks/v1/webhooks/h1",
        [reply(503, ""), reply(404, r#"{"title":"Not Found"}"#)],
    );
    mock.client().delete_webhook("h1").await.unwrap();
    assert_eq!(mock.api_requests().len(), 2);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let mock = Mock::start().await;
    let mut slow = reply(200, payment_json("ref-00001", "CREATED"));
    slow.delay = Duration::from_millis(500);
    mock.script(
        "GET /epayment/v1/payments/ref-00001",
        [slow, reply(200, payment_json("ref-00001", "AUTHORIZED"))],
    );
    let mut config = config(mock.url.clone(), fast_policy());
    config.request_timeout = Duration::from_millis(100);
    let c = VippsClient::new(config).unwrap();
    assert_eq!(
        c.get_payment("ref-00001").await.unwrap().state,
        "AUTHORIZED"
    );
    assert_eq!(mock.api_requests().len(), 2);
}

// --- unreadable answers and dead upstreams ---------------------------------------------------

#[tokio::test]
async fn garbage_success_body_is_a_decode_error() {
    let mock = Mock::start().await;
    mock.script(
        "POST /epayment/v1/payments/ref-00001/cancel",
        [reply(200, "<html>ok</html>")],
    );
    let err = mock
        .client()
        .cancel_payment("ref-00001", "k1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, VippsError::Decode { status: 200, .. }),
        "{err:?}"
    );
    assert!(err.outcome_unknown());
    assert_eq!(mock.api_requests().len(), 1, "a 2xx is never retried");
}

#[tokio::test]
async fn oversized_success_body_is_a_decode_error() {
    let mock = Mock::start().await;
    let huge = format!("[{}]", vec!["{}"; 600_000].join(","));
    mock.script(
        "GET /epayment/v1/payments/ref-00001/events",
        [reply(200, huge)],
    );
    let err = mock
        .client()
        .get_payment_events("ref-00001")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, VippsError::Decode { message, .. } if message.contains("larger")),
        "{err:?}"
    );
}

/// A server that accepts connections and closes them at once; counts the connections.
async fn closing_server() -> (Url, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, count)
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let policy = RetryPolicy {
        max_elapsed: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(10),
        max_attempts: 3,
    };
    let c = VippsClient::new(config(url, policy)).unwrap();
    // The token call fails first: nothing reached Vipps, so the outcome is known.
    let err = c.get_payment("ref-00001").await.unwrap_err();
    assert!(
        matches!(err, VippsError::Auth { status: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn connections_closed_without_an_answer_are_retried() {
    let (url, connections) = closing_server().await;
    let policy = RetryPolicy {
        max_elapsed: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(10),
        max_attempts: 3,
    };
    let c = VippsClient::new(config(url, policy)).unwrap();
    let err = c.get_payment("ref-00001").await.unwrap_err();
    assert!(
        matches!(err, VippsError::Auth { status: None, .. }),
        "{err:?}"
    );
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "every attempt of the token call"
    );
}

#[tokio::test]
async fn api_connection_closed_is_unavailable() {
    // A token from one server, the API call to one that closes every connection: proves the
    // API path maps transport errors to Unavailable (outcome unknown) and retries them.
    let mock = Mock::start().await;
    let c = mock.client();
    mock.script(
        "GET /webhooks/v1/webhooks",
        [reply(200, r#"{"webhooks":[]}"#)],
    );
    c.list_webhooks().await.unwrap();
    let (dead, connections) = closing_server().await;
    let mut inner_config = config(dead, fast_policy());
    inner_config.retry.max_attempts = 2;
    let dead_client = VippsClient::new(inner_config).unwrap();
    // Seed the dead client's cache so only the API call hits the dead port.
    dead_client
        .inner
        .token
        .get(|| async {
            Ok(super::token::FetchedToken {
                token: Secret::new("seeded"),
                lifetime: Duration::from_secs(3600),
            })
        })
        .await
        .unwrap();
    let err = dead_client.get_payment("ref-00001").await.unwrap_err();
    assert!(
        matches!(err, VippsError::Unavailable { status: None, .. }),
        "{err:?}"
    );
    assert!(err.outcome_unknown());
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the API call was retried once"
    );
}

// --- configuration and secrets ---------------------------------------------------------------

#[tokio::test]
async fn secrets_never_print() {
    let c = config(Url::parse("http://127.0.0.1:9").unwrap(), fast_policy());
    let text = format!("{c:?}");
    assert!(
        !text.contains("client-secret-XYZ") && !text.contains("subkey-0123"),
        "{text}"
    );
    let client = VippsClient::new(c).unwrap();
    let text = format!("{client:?}");
    assert!(
        !text.contains("client-secret-XYZ") && !text.contains("subkey-0123"),
        "{text}"
    );
    assert_eq!(format!("{:?}", Secret::new("x")), "***");
}

#[tokio::test]
async fn invalid_idempotency_key_is_refused_before_sending() {
    let mock = Mock::start().await;
    let err = mock
        .client()
        .cancel_payment("ref-00001", &"x".repeat(51))
        .await
        .unwrap_err();
    assert!(matches!(err, VippsError::Config(_)), "{err:?}");
    assert!(mock.api_requests().is_empty());
}

#[test]
fn bad_base_url_is_a_config_error() {
    let c = config(
        Url::parse("mailto:someone@example.com").unwrap(),
        fast_policy(),
    );
    assert!(matches!(VippsClient::new(c), Err(VippsError::Config(_))));
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let mock = Mock::start().await;
    mock.script(
        "POST /prefix/accesstoken/get",
        [reply(200, r#"{"access_token":"p","expires_in":"3600"}"#)],
    );
    mock.script(
        "GET /prefix/webhooks/v1/webhooks",
        [reply(200, r#"{"webhooks":[]}"#)],
    );
    let c = VippsClient::new(config(mock.url.join("/prefix/").unwrap(), fast_policy())).unwrap();
    c.list_webhooks().await.unwrap();
}
