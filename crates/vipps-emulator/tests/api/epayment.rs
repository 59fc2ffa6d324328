//! The ePayment API: create, get, capture, cancel, refund, idempotency, faults.

use crate::harness::*;

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
