//! The Webhooks API: registration, signed delivery, retries, ordering and fault knobs.

use crate::harness::*;

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
