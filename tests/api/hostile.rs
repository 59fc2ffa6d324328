//! Hostile input: oversized, malformed, out-of-range and injection-looking values at both
//! edges (gRPC and the webhook sidecar). Each is refused with the documented status or stored
//! verbatim, and paygate keeps working afterwards.

use paygate::grpc::proto::{self, CreatePaymentRequestRequest as Create};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::*;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

async fn with_secret(extra: &[(&str, &str)]) -> TestApp {
    let mut values = vec![("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)];
    values.extend_from_slice(extra);
    spawn_app_with(&values).await
}

/// A signed, valid ePayment event padded with an extra field to exactly `size` bytes.
fn padded_event(reference: &str, size: usize) -> Vec<u8> {
    let base = webhook_body(reference, "AUTHORIZED", "pad-1", 1000, None);
    let head = &base[..base.len() - 1]; // without the closing brace
    let frame = format!("{head},\"pad\":\"\"}}").len();
    assert!(size >= frame);
    format!("{head},\"pad\":\"{}\"}}", "x".repeat(size - frame)).into_bytes()
}

#[tokio::test]
async fn oversized_webhook_bodies_are_413_and_nothing_is_stored() {
    let mut app = with_secret(&[]).await;
    let limit = paygate::WEBHOOK_BODY_LIMIT;
    assert_eq!(limit, 64 * 1024);

    // Exactly at the limit: read, verified, stored.
    let at_limit = padded_event("hostile-at-limit-1", limit);
    assert_eq!(at_limit.len(), limit);
    assert_eq!(app.post_webhook(&at_limit).await, StatusCode::OK);

    // One byte over: 413, signed or not, and not stored.
    let over = padded_event("hostile-over-limit", limit + 1);
    assert_eq!(over.len(), 64 * 1024 + 1);
    assert_eq!(app.post_webhook(&over).await, StatusCode::PAYLOAD_TOO_LARGE);
    let unsigned = app
        .http()
        .post(format!("{}/webhooks/vipps", app.http_url))
        .body(over.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(unsigned, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked, without a Content-Length: the limit still holds while reading.
    let addr = app.http_url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /webhooks/vipps HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for chunk in over.chunks(8 * 1024) {
        let frame = format!("{:x}\r\n", chunk.len());
        // The server may answer and close before everything is sent: stop writing then.
        if tcp.write_all(frame.as_bytes()).await.is_err()
            || tcp.write_all(chunk).await.is_err()
            || tcp.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "chunked oversized body: {answer}"
    );

    assert_eq!(app.events("hostile-at-limit-1").await.len(), 1);
    assert!(app.events("hostile-over-limit").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn oversized_grpc_messages_are_out_of_range() {
    // tonic answers OUT_OF_RANGE ("decoded message length too large") for a request above
    // max_decoding_message_size (tonic 0.14 codec/decode.rs). grpc-go and grpc-java say
    // RESOURCE_EXHAUSTED for the same condition; callers must not rely on either.
    let mut app = spawn_app_with(&[("PAYGATE_GRPC_MAX_MESSAGE_BYTES", "65536")]).await;
    let mut req = push_request(10000);
    req.reference = unique("hostile-big");
    req.metadata.insert("blob".into(), "x".repeat(70 * 1024));
    let err = app.create(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(app.emulator.payment_view(&req.reference).is_none());

    // Just under the limit the message is decoded and validated like any other.
    req.metadata.insert("blob".into(), "x".repeat(60 * 1024));
    let err = app.create(req.clone()).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["metadata[blob]"]);

    // The connection and the service are still fine.
    req.metadata.clear();
    assert_eq!(
        app.create(req).await.unwrap().state(),
        proto::PaymentState::Created
    );
    app.stop().await;
}

#[tokio::test]
async fn undecodable_protobuf_is_invalid_argument() {
    // tonic-prost maps every prost::DecodeError to INTERNAL; paygate's codec
    // (src/grpc/codec.rs) answers a client's undecodable request -- invalid UTF-8 in a `string`
    // field, a truncated or garbage message -- INVALID_ARGUMENT naming `request`.
    let mut app = spawn_app().await;
    let reference = app.authorized(10000).await;
    let bad_utf8: &[u8] = &[0x68, 0x6f, 0x73, 0xff, 0xfe, 0x2d, 0xc3, 0x28];

    let cases: Vec<(&str, &'static str, Vec<u8>)> = vec![
        (
            "invalid UTF-8 in CapturePaymentRequest.reference",
            "/paygate.v1.PaymentService/CapturePayment",
            [pb_bytes(1, bad_utf8), pb_bytes(3, b"raw-key-1")].concat(),
        ),
        (
            "invalid UTF-8 in CapturePaymentRequest.idempotency_key",
            "/paygate.v1.PaymentService/CapturePayment",
            [pb_bytes(1, reference.as_bytes()), pb_bytes(3, bad_utf8)].concat(),
        ),
        (
            "invalid UTF-8 in Money.currency",
            "/paygate.v1.PaymentService/CapturePayment",
            [
                pb_bytes(1, reference.as_bytes()),
                pb_bytes(2, &[pb_bytes(1, bad_utf8), pb_varint(2, 100)].concat()),
                pb_bytes(3, b"raw-key-2"),
            ]
            .concat(),
        ),
        (
            "invalid UTF-8 in a metadata key",
            "/paygate.v1.PaymentService/CreatePaymentRequest",
            pb_bytes(11, &[pb_bytes(1, bad_utf8), pb_bytes(2, b"v")].concat()),
        ),
        (
            "invalid UTF-8 in GetPaymentRequest.reference",
            "/paygate.v1.PaymentService/GetPayment",
            pb_bytes(1, bad_utf8),
        ),
        (
            "length prefix beyond the message",
            "/paygate.v1.PaymentService/GetPayment",
            vec![0x0a, 0x50, b'a', b'b'],
        ),
        (
            "garbage bytes",
            "/paygate.v1.PaymentService/ListPaymentEvents",
            vec![
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
    ];
    for (what, path, body) in cases {
        let err = raw_unary(app.grpc_addr, path, body).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains("request"), "{what}: {err:?}");
    }
    // Unknown fields are skipped, as protobuf requires: this one is an ordinary GetPayment.
    let ok = raw_unary(
        app.grpc_addr,
        "/paygate.v1.PaymentService/GetPayment",
        [pb_bytes(1, reference.as_bytes()), pb_bytes(99, b"ignored")].concat(),
    )
    .await
    .unwrap();
    assert!(!ok.is_empty());
    // Nothing was captured and the service still works.
    assert!(app.effects(&reference, "capture").is_empty());
    app.capture(&reference, Some(1000), "after-garbage")
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn webhook_numbers_beyond_i64_and_malformed_json_are_400() {
    let mut app = with_secret(&[]).await;
    let template = |value: &str| {
        format!(
            r#"{{"msn":"123456","reference":"hostile-numbers-1","pspReference":"1","name":"AUTHORIZED","amount":{{"currency":"NOK","value":{value}}},"timestamp":"2024-01-01T00:00:00Z","idempotencyKey":null,"success":true}}"#
        )
    };
    for value in [
        "99999999999999999999",
        "-99999999999999999999",
        "9223372036854775808",
        "-9223372036854775809",
        "1e400",
        "-1e400",
        "1e3",
        "1.5",
        "\"100\"",
        "null",
        "[]",
        "NaN",
        "Infinity",
        "0x10",
    ] {
        assert_eq!(
            app.post_webhook(template(value).as_bytes()).await,
            StatusCode::BAD_REQUEST,
            "amount.value = {value}"
        );
    }
    let nested_deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested_objects = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    for body in [
        nested_deep.as_bytes(),
        nested_objects.as_bytes(),
        b"",
        b"\xff\xfe\xfd",
        b"{\"reference\":\"\xff\"}",
        br#"{"msn":"123456"}"#,
        b"null",
    ] {
        assert_eq!(
            app.post_webhook(body).await,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    assert!(app.events("hostile-numbers-1").await.is_empty());
    // The edge of i64 itself is a number serde reads: stored (Vipps signed it).
    assert_eq!(
        app.post_webhook(template("9223372036854775807").as_bytes())
            .await,
        StatusCode::OK
    );
    assert_eq!(app.events("hostile-numbers-1").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn zero_negative_and_extreme_amounts_name_amount_value() {
    let mut app = spawn_app().await;
    let reference = app.authorized(10000).await;
    for value in [0, -1, -10000, i64::MIN, i64::MAX] {
        let mut req = push_request(value);
        req.reference = unique("hostile-amount");
        let err = app.create(req).await.unwrap_err();
        assert_eq!(bad_fields(&err), ["amount.value"], "create {value}");
        let err = app
            .capture(&reference, Some(value), "k-amount")
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), ["amount.value"], "capture {value}");
        let err = app
            .refund(&reference, Some(value), "k-amount")
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), ["amount.value"], "refund {value}");
    }
    assert!(app.effects(&reference, "capture").is_empty());
    assert!(app.effects(&reference, "refund").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn reference_length_boundaries() {
    let mut app = spawn_app().await;
    let stem = uuid::Uuid::new_v4().simple().to_string(); // 32 hex digits
    let of_len = |n: usize| format!("{stem}{stem}")[..n].to_owned();
    for n in [8, 50] {
        let mut req = push_request(10000);
        req.reference = of_len(n);
        let p = app.create(req).await.unwrap();
        assert_eq!(p.reference, of_len(n));
        assert_eq!(app.try_get(&of_len(n)).await.unwrap().reference, of_len(n));
    }
    for n in [0, 7, 51, 64, 65, 1000] {
        let mut req = push_request(10000);
        req.reference = of_len(n.min(64)) + &"a".repeat(n.saturating_sub(64));
        let reference = req.reference.clone();
        if n == 0 {
            // Empty means "generate one", which needs a key a retry can find it by.
            let err = app.create(req.clone()).await.unwrap_err();
            assert_eq!(
                bad_fields(&err),
                ["reference", "idempotency_key"],
                "{err:?}"
            );
            req.idempotency_key = unique("hostile-key");
            assert!(app.create(req).await.unwrap().reference.starts_with("pg-"));
            continue;
        }
        let err = app.create(req).await.unwrap_err();
        assert_eq!(bad_fields(&err), ["reference"], "create with {n} chars");
        let err = app.try_get(&reference).await.unwrap_err();
        assert_eq!(bad_fields(&err), ["reference"], "get with {n} chars");
        let err = app.capture(&reference, None, "k").await.unwrap_err();
        assert_eq!(bad_fields(&err), ["reference"], "capture with {n} chars");
    }
    // Characters outside [a-zA-Z0-9-] at an accepted length.
    for bad in [
        "ride_0001",
        "ride 0001",
        "ride/0001",
        "ride-0001\u{e9}",
        "ride-000\u{0}",
    ] {
        let mut req = push_request(10000);
        req.reference = bad.into();
        let err = app.create(req).await.unwrap_err();
        assert_eq!(bad_fields(&err), ["reference"], "{bad:?}");
    }
    app.stop().await;
}

const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "'); DROP TABLE payments; --",
    "\" OR \"\"=\"",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%00",
    "%27%20OR%201%3D1",
    "${jndi:ldap://x/a}",
    "{{7*7}}",
    "\u{202e}evil\u{202c}",
    "line\r\nInjected: header",
    "nul\u{0}byte",
];

/// Sets one string field of a create request (by the proto field path).
fn set_field(req: &mut Create, field: &str, value: &str) {
    let v = value.to_owned();
    match field {
        "reference" => req.reference = v,
        "amount.currency" => req.amount.as_mut().unwrap().currency = v,
        "customer.phone_number" => req.customer.as_mut().unwrap().phone_number = v,
        "profile_scopes[0]" => req.profile_scopes = vec![v],
        "return_url" => req.return_url = v,
        "payment_description" => req.payment_description = v,
        "idempotency_key" => req.idempotency_key = v,
        "customer_key" => req.customer_key = v,
        "metadata key" => {
            req.metadata.insert(v, "value".into());
        }
        "metadata value" => {
            req.metadata.insert("note".into(), v);
        }
        "receipt.order_lines[0].name" => receipt(req).order_lines[0].name = v,
        "receipt.order_lines[0].id" => receipt(req).order_lines[0].id = v,
        "receipt.order_lines[0].unit_info.quantity" => {
            receipt(req).order_lines[0]
                .unit_info
                .as_mut()
                .unwrap()
                .quantity = v
        }
        "receipt.order_lines[0].unit_info.quantity_unit" => {
            receipt(req).order_lines[0]
                .unit_info
                .as_mut()
                .unwrap()
                .quantity_unit = v
        }
        "receipt.bottom_line.currency" => receipt(req).bottom_line.as_mut().unwrap().currency = v,
        "receipt.bottom_line.pos_id" => receipt(req).bottom_line.as_mut().unwrap().pos_id = v,
        "receipt.bottom_line.receipt_number" => {
            receipt(req).bottom_line.as_mut().unwrap().receipt_number = v
        }
        other => panic!("unknown field {other}"),
    }
}

fn receipt(req: &mut Create) -> &mut proto::Receipt {
    req.receipt.get_or_insert_with(|| proto::Receipt {
        order_lines: vec![proto::OrderLine {
            name: "Ride".into(),
            id: "ride".into(),
            total_amount: 10000,
            total_amount_excluding_tax: 8000,
            total_tax_amount: 2000,
            tax_percentage: 25,
            unit_info: Some(proto::UnitInfo {
                unit_price: 10000,
                quantity: "1".into(),
                quantity_unit: "PCS".into(),
            }),
            ..Default::default()
        }],
        bottom_line: Some(proto::BottomLine {
            currency: "NOK".into(),
            ..Default::default()
        }),
    })
}

const CREATE_STRING_FIELDS: &[&str] = &[
    "reference",
    "amount.currency",
    "customer.phone_number",
    "profile_scopes[0]",
    "return_url",
    "payment_description",
    "idempotency_key",
    "customer_key",
    "metadata key",
    "metadata value",
    "receipt.order_lines[0].name",
    "receipt.order_lines[0].id",
    "receipt.order_lines[0].unit_info.quantity",
    "receipt.order_lines[0].unit_info.quantity_unit",
    "receipt.bottom_line.currency",
    "receipt.bottom_line.pos_id",
    "receipt.bottom_line.receipt_number",
];

/// Counts rows in the payments table straight from the database: it is still there and sane.
async fn payment_rows(database_url: &str) -> i64 {
    use sqlx::Connection;
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        n
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        n
    }
}

#[tokio::test]
async fn injection_looking_strings_are_refused_or_stored_verbatim() {
    let mut app = with_secret(&[]).await;
    let mut accepted = 0usize;
    let mut refused = 0usize;
    for field in CREATE_STRING_FIELDS {
        for value in INJECTIONS {
            let mut req = push_request(10000);
            req.reference = unique("inj");
            set_field(&mut req, field, value);
            match app.create(req.clone()).await {
                Ok(p) => {
                    accepted += 1;
                    // What was stored comes back byte for byte.
                    let got = app.try_get(&p.reference).await.unwrap();
                    match *field {
                        "metadata value" => assert_eq!(got.metadata["note"], *value),
                        "metadata key" => assert_eq!(got.metadata[*value], "value"),
                        "customer_key" => assert_eq!(got.customer_key, *value),
                        _ => {}
                    }
                    assert_eq!(got.metadata, req.metadata);
                }
                Err(e) => {
                    refused += 1;
                    // Refused by paygate's validation (naming a field), or by Vipps (the
                    // emulator) as a definite refusal -- never an internal error.
                    match e.code() {
                        Code::InvalidArgument => assert!(!bad_fields(&e).is_empty(), "{e:?}"),
                        Code::FailedPrecondition => {}
                        _ => panic!("{field} = {value:?}: {e:?}"),
                    }
                }
            }
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );

    // Modifications: the reference is pattern-checked; a key is printable ASCII, so some of
    // these are legitimate keys and are used verbatim.
    let reference = app.authorized(50000).await;
    for value in INJECTIONS {
        let err = app.capture(value, Some(100), "k").await.unwrap_err();
        assert_eq!(bad_fields(&err), ["reference"], "{value:?}");
        match app.capture(&reference, Some(100), value).await {
            Ok(_) => {
                let events = app.events(&reference).await;
                assert!(
                    events.iter().any(|e| e.idempotency_key == *value),
                    "key {value:?} stored verbatim"
                );
            }
            Err(e) => assert_eq!(bad_fields(&e), ["idempotency_key"], "{value:?}"),
        }
        // Streams accept any 1-64 character reference as a filter; nothing leaks.
        let stream = app
            .client
            .stream_payment_events(proto::StreamPaymentEventsRequest {
                references: vec![(*value).to_owned()],
                names: vec![],
                after_sequence: Some(0),
            })
            .await;
        assert!(stream.is_ok(), "{value:?}: {:?}", stream.err());
    }
    app.assert_effects_once(&reference);
    app.assert_events_once(&reference).await;

    // Webhooks carrying them for an unknown payment: stored verbatim (they are signed), except
    // where the body is not a valid event.
    for (i, value) in INJECTIONS.iter().enumerate() {
        let body = serde_json::json!({
            "msn": "123456",
            "reference": format!("wh-inj-{i}-{value}"),
            "pspReference": value,
            "name": "CAPTURED",
            "amount": {"currency": "NOK", "value": 100},
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "idempotencyKey": value,
            "success": true,
        })
        .to_string();
        let status = app.post_webhook(body.as_bytes()).await;
        if value.contains('\0') {
            // PostgreSQL cannot store NUL: refused as malformed on every backend (never a
            // 503 that Vipps would retry for days).
            assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?}");
        } else {
            assert_eq!(status, StatusCode::OK, "{value:?}");
        }
    }

    // The database is intact and still serves.
    let rows = payment_rows(&app.database_url).await;
    // One more than the accepted creates: the authorized payment.
    assert!(rows > i64::try_from(accepted).unwrap(), "{rows} rows");
    let p = app.create_push(10000).await;
    assert_eq!(app.events(&p.reference).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn metadata_limits() {
    let mut app = spawn_app().await;
    let create = |pairs: Vec<(String, String)>| {
        let mut req = push_request(10000);
        req.reference = unique("meta");
        req.metadata = pairs.into_iter().collect();
        req
    };
    let pairs = |n: usize| (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect();

    // Accepted at the limits (characters, not bytes), and round-tripped.
    for req in [
        create(pairs(5)),
        create(vec![("k".repeat(100), "v".into())]),
        create(vec![("\u{e9}".repeat(100), "\u{1f695}".repeat(500))]),
        create(vec![("k".into(), "v".repeat(500))]),
        create(vec![("k".into(), String::new())]),
    ] {
        let p = app.create(req.clone()).await.unwrap();
        assert_eq!(
            app.try_get(&p.reference).await.unwrap().metadata,
            req.metadata
        );
    }

    // Refused, naming the field.
    let err = app.create(create(pairs(6))).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["metadata"]);
    let key = "k".repeat(101);
    let err = app
        .create(create(vec![(key.clone(), "v".into())]))
        .await
        .unwrap_err();
    // Field names quoting caller text are cut at 80 characters.
    let shown: String = format!("metadata[{key}]")
        .chars()
        .take(80)
        .collect::<String>()
        + "…";
    assert_eq!(bad_fields(&err), [shown]);
    let err = app
        .create(create(vec![("k".into(), "v".repeat(501))]))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["metadata[k]"]);
    let err = app
        .create(create(vec![(String::new(), "v".into())]))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["metadata[]"]);
    // Every violation at once: too many pairs, and a long key with a long value.
    let mut many: Vec<(String, String)> = pairs(300);
    many.push(("x".repeat(101), "y".repeat(501)));
    let err = app.create(create(many)).await.unwrap_err();
    let fields = bad_fields(&err);
    assert!(fields.contains(&"metadata".to_owned()), "{fields:?}");
    // The long key is named (cut at 80 characters) for its length and for its value's.
    let shown: String = format!("metadata[{}]", "x".repeat(101))
        .chars()
        .take(80)
        .collect::<String>()
        + "…";
    assert_eq!(
        fields.iter().filter(|f| **f == shown).count(),
        2,
        "{fields:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn signed_webhooks_with_extreme_amounts_do_not_break_later_calls() {
    // Only Vipps can sign, but what it signs is still input: extreme amounts for a payment
    // paygate knows must neither be refused forever (503 loops) nor break later calls.
    let mut app = with_secret(&[]).await;
    let reference = app.authorized(10000).await;
    for (name, value, key) in [
        ("CANCELLED", i64::MAX, Some("x-cancel")),
        ("CAPTURED", i64::MAX, Some("x-capture-1")),
        ("CAPTURED", i64::MAX, Some("x-capture-2")),
        ("REFUNDED", i64::MIN, Some("x-refund")),
        ("AUTHORIZED", -1, None),
    ] {
        let body = webhook_body(&reference, name, "psp-x", value, key);
        // No Vipps event carries a negative amount: refused as malformed.
        let expected = if value < 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        assert_eq!(
            app.post_webhook(body.as_bytes()).await,
            expected,
            "{name} {value}"
        );
    }
    let p = app.try_get(&reference).await.unwrap();
    let (authorized, captured, refunded, cancelled) = totals(&p);
    assert_eq!(authorized, 10000);
    assert_eq!(captured, i64::MAX, "saturated, not wrapped");
    assert_eq!(cancelled, i64::MAX);
    assert_eq!(refunded, 0, "negative totals never win the merge");
    // Nothing is capturable any more: a definite refusal, not an internal error.
    let err = app
        .capture(&reference, Some(100), "after-extremes")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(app.effects(&reference, "capture").is_empty());
    app.assert_events_once(&reference).await;
    app.stop().await;
}

#[tokio::test]
async fn huge_violation_lists_stay_within_client_header_limits() {
    // An INVALID_ARGUMENT carries its violations in response headers (`grpc-message` and the
    // BadRequest in `grpc-status-details-bin`), and clients cap headers (hyper/tonic 16 KiB,
    // grpc-java 8 KiB). paygate details at most 20 violations plus "and N more", so even a
    // request with a thousand bad fields gets a proper INVALID_ARGUMENT.
    let mut app = spawn_app().await;
    let stream = |references: Vec<String>| proto::StreamPaymentEventsRequest {
        references,
        names: vec![],
        after_sequence: None,
    };

    // 50 bad references: 20 named, then "and 30 more".
    let err = app
        .client
        .stream_payment_events(stream(vec![String::new(); 50]))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err).len(), 21);
    assert!(err.message().contains("and 30 more"), "{err:?}");

    // 1000 bad references (the documented maximum count).
    let err = app
        .client
        .stream_payment_events(stream(vec![String::new(); 1000]))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err).len(), 21);

    // 150 metadata keys of 101 characters: a 16 KiB request, a ~50 KiB error.
    let mut req = push_request(10000);
    req.reference = unique("hostile-violations");
    req.metadata = (0..150)
        .map(|i| (format!("{i:03}{}", "k".repeat(98)), "v".to_owned()))
        .collect();
    let err = app.create(req).await.unwrap_err();
    assert_eq!(bad_fields(&err).len(), 21);

    // The same client (channel) goes on working.
    assert_eq!(
        app.create_push(10000).await.state(),
        proto::PaymentState::Created
    );
    app.stop().await;
}
