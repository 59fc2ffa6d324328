//! Property tests over hostile input (bounded: the whole file runs in well under a minute).
//!
//! - Webhook signatures: arbitrary bodies and header values never panic; a correctly signed
//!   arbitrary body verifies and any one-byte change of body, date, hash or signature does not.
//! - The whole webhook HTTP path (one running app): random bodies -- bytes, near-valid events,
//!   numbers beyond i64, deep nesting, oversized -- signed or not, always get 200/400/401/413
//!   (503 only for the known PostgreSQL NUL bug), and 200 only for a valid ePayment event.
//! - gRPC validation (one running app per property): arbitrary CreatePaymentRequest,
//!   CapturePayment and StreamPaymentEvents requests are answered OK, INVALID_ARGUMENT with
//!   BadRequest field violations, or a state code -- never INTERNAL, UNKNOWN or UNAVAILABLE
//!   (one known exception, counted and printed: an INVALID_ARGUMENT too large for a client's
//!   16 KiB header list arrives as INTERNAL; see tests/chaos/hostile.rs).
//!
//! `Verifier::verify` itself takes a `SignedRequest`, which is not exported from
//! `paygate::webhooks`; it is driven here through the HTTP path (reported).
use std::{cell::RefCell, collections::HashMap};

use crate::helpers::*;
use paygate::grpc::proto::{self, PaymentEventName};
use proptest::{
    collection::{hash_map, vec},
    prelude::*,
    sample::select,
    string::string_regex,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{json, Value};
use tonic::Code;
use vipps_signature as signature;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Regressions are reported in the failure message, not written next to the sources.
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// --- strings --------------------------------------------------------------------------------

/// Characters that break naive code: NUL, controls, quotes, RTL override, BOM, emoji, ...
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => select(vec![
            '\0', '\u{1}', '\u{7f}', '\n', '\r', '\t', '\'', '"', '\\', '<', '>', '%', '&', ';',
            '\u{202e}', '\u{feff}', '\u{200b}', '\u{e9}', '\u{1f695}', '\u{fffd}', ' ', '/',
        ]),
        3 => select(('a'..='z').chain('0'..='9').chain(['-']).collect::<Vec<_>>()),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    vec(nasty_char(), 0..=max).prop_map(|c| c.into_iter().collect())
}

/// Mostly plausible, sometimes anything.
fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        string_regex("[a-zA-Z0-9-]{8,50}").unwrap(),
        string_regex("[a-zA-Z0-9-]{0,7}|[a-zA-Z0-9-]{51,70}").unwrap(),
        text(70),
    ]
}

fn edgy_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        select(vec![
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            99,
            100,
            i64::MAX - 1,
            i64::MAX,
            5_000_000_000,
        ]),
        100i64..1_000_000,
        any::<i64>(),
    ]
}

// --- webhook signatures ---------------------------------------------------------------------

#[test]
fn signature_verify_never_panics_on_arbitrary_input() {
    let strategy = (
        vec(any::<u8>(), 0..2048),
        text(80),
        text(80),
        prop_oneof![
            text(120),
            text(60).prop_map(|s| format!(
                "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={s}"
            )),
        ],
        text(40),
    );
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&strategy, |(body, date, hash, auth, secret)| {
            let result = signature::verify(
                &secret,
                "/webhooks/vipps",
                "h:1",
                &date,
                &hash,
                &auth,
                &body,
            );
            prop_assert!(result.is_err(), "random headers verified: {result:?}");
            Ok(())
        })
        .unwrap();
}

#[derive(Debug, Clone)]
enum Part {
    Body,
    Date,
    Hash,
    Authorization,
}

#[test]
fn signed_bodies_verify_and_any_one_byte_change_is_refused() {
    let strategy = (
        vec(any::<u8>(), 0..4096),
        0i64..4_102_444_800, // 1970..2100
        string_regex("[ -~]{1,64}").unwrap(),
        select(vec![
            Part::Body,
            Part::Date,
            Part::Hash,
            Part::Authorization,
        ]),
        any::<prop::sample::Index>(),
        1u8..=255,
    );
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&strategy, |(body, secs, secret, part, at, flip)| {
            let date = http_date(chrono::DateTime::from_timestamp(secs, 0).unwrap());
            let (path, host) = ("/vipps/webhook?shop=1", "example.com:8443");
            let signed = signature::sign(&secret, path, host, &date, &body);
            let verify = |date: &str, hash: &str, auth: &str, body: &[u8]| {
                signature::verify(&secret, path, host, date, hash, auth, body)
            };
            prop_assert_eq!(
                verify(&date, &signed.content_hash, &signed.authorization, &body),
                Ok(())
            );
            // Change one byte; header values stay printable ASCII (what HTTP can carry).
            let ascii_flip = |s: &str| {
                let mut b = s.as_bytes().to_vec();
                let i = at.index(b.len());
                let old = b[i];
                let mut new = b' ' + (old - b' ' + flip % 94 + 1) % 95;
                if new == old {
                    new = if old == b'a' { b'b' } else { b'a' };
                }
                b[i] = new;
                String::from_utf8(b).unwrap()
            };
            let result = match part {
                Part::Body => {
                    if body.is_empty() {
                        return Ok(());
                    }
                    let mut tampered = body.clone();
                    tampered[at.index(body.len())] ^= flip;
                    verify(
                        &date,
                        &signed.content_hash,
                        &signed.authorization,
                        &tampered,
                    )
                }
                Part::Date => verify(
                    &ascii_flip(&date),
                    &signed.content_hash,
                    &signed.authorization,
                    &body,
                ),
                Part::Hash => verify(
                    &date,
                    &ascii_flip(&signed.content_hash),
                    &signed.authorization,
                    &body,
                ),
                Part::Authorization => verify(
                    &date,
                    &signed.content_hash,
                    &ascii_flip(&signed.authorization),
                    &body,
                ),
            };
            prop_assert!(result.is_err(), "{part:?} changed but verified");
            Ok(())
        })
        .unwrap();
}

// --- the webhook HTTP path ------------------------------------------------------------------

/// How a fuzzed webhook is presented.
#[derive(Debug, Clone)]
enum Headers {
    /// Correctly signed for paygate's URL, dated now.
    Signed,
    /// Signed, but one of the headers replaced by junk (or missing).
    Junk { which: u8, value: Option<String> },
    /// Signed for a date outside the allowed skew.
    Stale(i64),
}

const NUMBER_SLOT: &str = "\"__number__\"";

/// A JSON literal for `amount.value`, including what no i64 (or f64) can hold.
fn number_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        edgy_i64().prop_map(|v| v.to_string()),
        select(vec![
            "1e400",
            "-1e400",
            "99999999999999999999",
            "-99999999999999999999",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "1.5",
            "1e3",
            "-0",
            "0.0",
            "\"100\"",
            "null",
            "true",
            "[]",
            "{}",
            "1e-400",
            "123456789012345678901234567890123456789012345678901234567890",
        ])
        .prop_map(str::to_owned),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
    ]
}

/// A valid value 9 times in 10; otherwise a hostile one, JSON null, a number, or absent.
fn field(
    valid: impl Strategy<Value = Value> + 'static,
    hostile: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        36 => valid.prop_map(Some),
        1 => hostile.prop_map(Some),
        1 => Just(Some(Value::Null)),
        1 => any::<i32>().prop_map(|n| Some(Value::from(n))),
        1 => Just(None),
    ]
    .boxed()
}

/// At most `max` characters of at most 4 bytes each.
fn short_text(max: usize) -> impl Strategy<Value = String> {
    vec(nasty_char(), 1..=max).prop_map(|c| c.into_iter().collect())
}

/// A near-valid ePayment event: each field valid 9 times in 10, otherwise wrong, missing or
/// of the wrong type; `amount.value` sometimes a literal no i64 (or f64) can hold.
fn event_json(known: &'static str) -> impl Strategy<Value = String> {
    let names = vec![
        "CREATED",
        "AUTHORIZED",
        "ABORTED",
        "EXPIRED",
        "CANCELLED",
        "CAPTURED",
        "REFUNDED",
        "TERMINATED",
        "PROFILE_SHARED",
    ];
    let string = |s: BoxedStrategy<String>| s.prop_map(Value::String);
    let reference = field(
        string(
            prop_oneof![
                Just(known.to_owned()),
                string_regex("[a-zA-Z0-9-]{8,50}").unwrap(),
                short_text(16),
            ]
            .boxed(),
        ),
        string(prop_oneof![text(70), string_regex("[a-z]{65,66}").unwrap()].boxed()),
    );
    let psp = field(
        string(prop_oneof![string_regex("[0-9]{1,20}").unwrap(), short_text(16)].boxed()),
        string(text(70).boxed()),
    );
    let name = field(
        select(names).prop_map(Value::from),
        string(text(20).boxed()),
    );
    let currency = field(
        select(vec!["NOK", "DKK", "EUR"]).prop_map(Value::from),
        string(text(5).boxed()),
    );
    let number = prop_oneof![
        9 => edgy_i64().prop_map(|v| v.to_string()),
        1 => number_literal(),
    ];
    let timestamp = field(
        (0i64..4_102_444_800).prop_map(|s| {
            Value::String(chrono::DateTime::from_timestamp(s, 0).unwrap().to_rfc3339())
        }),
        string(text(30).boxed()),
    );
    let key = field(
        string(prop_oneof![string_regex("[!-~]{1,50}").unwrap(), short_text(12)].boxed()),
        string(text(55).boxed()),
    );
    let success = field(any::<bool>().prop_map(Value::Bool), Just(json!("true")));
    let msn = field(Just(json!("123456")), string(text(10).boxed()));
    (
        (reference, psp, name),
        (currency, prop::bool::weighted(0.95), number),
        (timestamp, key, success, msn),
    )
        .prop_map(
            |(
                (reference, psp, name),
                (currency, amount_ok, number),
                (timestamp, key, success, msn),
            )| {
                let mut event = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        event.insert(k.to_owned(), v);
                    }
                };
                put("reference", reference);
                put("pspReference", psp);
                put("name", name);
                let mut amount = serde_json::Map::new();
                if let Some(c) = currency {
                    amount.insert("currency".into(), c);
                }
                amount.insert("value".into(), json!("__number__"));
                put(
                    "amount",
                    Some(if amount_ok {
                        Value::Object(amount)
                    } else {
                        json!("__number__")
                    }),
                );
                put("timestamp", timestamp);
                put("idempotencyKey", key);
                put("success", success);
                put("msn", msn);
                Value::Object(event)
                    .to_string()
                    .replacen(NUMBER_SLOT, &number, 1)
            },
        )
}

fn webhook_body_strategy(known: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => event_json(known).prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..600),
        1 => (1usize..4000, select(vec!["[", "{\"a\":"])).prop_map(|(depth, open)| {
            let close = if open == "[" { "]" } else { "}" };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        }),
        1 => (65_537usize..70_000).prop_map(|n| {
            let mut body = b"{\"pad\":\"".to_vec();
            body.resize(n - 2, b'x');
            body.extend_from_slice(b"\"}");
            body
        }),
    ]
}

/// Whether paygate's webhook parser must accept the body as an ePayment event (written
/// independently from its serde model and checks).
fn is_valid_event(body: &[u8]) -> bool {
    let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let string = |k: &str| e.get(k).and_then(Value::as_str);
    let optional_string = |k: &str| matches!(e.get(k), None | Some(Value::Null | Value::String(_)));
    let (Some(reference), Some(psp), Some(name), Some(timestamp)) = (
        string("reference"),
        string("pspReference"),
        string("name"),
        string("timestamp"),
    ) else {
        return false;
    };
    let Some(Value::Object(amount)) = e.get("amount") else {
        return false;
    };
    let currency = amount.get("currency").and_then(Value::as_str);
    // Negative amounts are refused (no Vipps event carries one).
    let value_is_i64 = amount
        .get("value")
        .and_then(Value::as_i64)
        .is_some_and(|v| v >= 0);
    let key_len = string("idempotencyKey").map_or(0, str::len);
    matches!(e.get("success"), Some(Value::Bool(_)))
        && optional_string("idempotencyKey")
        && optional_string("msn")
        && value_is_i64
        && !reference.is_empty()
        && reference.len() <= 64
        && psp.len() <= 64
        && key_len <= 50
        && matches!(currency, Some("NOK" | "DKK" | "EUR"))
        && matches!(
            name,
            "CREATED"
                | "AUTHORIZED"
                | "ABORTED"
                | "EXPIRED"
                | "CANCELLED"
                | "CAPTURED"
                | "REFUNDED"
                | "TERMINATED"
        )
        // NUL cannot be stored by PostgreSQL, so paygate refuses it everywhere (400).
        && !has_nul_in_stored_strings(body)
        && chrono::DateTime::parse_from_rfc3339(timestamp).is_ok()
}

/// Whether a stored string of the event holds NUL (PostgreSQL cannot store it: known bug).
fn has_nul_in_stored_strings(body: &[u8]) -> bool {
    let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    ["reference", "pspReference", "idempotencyKey"]
        .iter()
        .any(|k| {
            e.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| s.contains('\0'))
        })
}

#[test]
fn webhook_http_path_answers_only_documented_statuses() {
    let rt = runtime();
    let app = rt.block_on(spawn_app_with(&[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)]));
    // A payment paygate knows, so that some events move a real payment.
    let known: &'static str = "fuzz-known-payment-0001";
    let mut client = app.client.clone();
    let mut req = push_request(50_000);
    req.reference = known.into();
    rt.block_on(client.create_payment_request(req)).unwrap();

    let headers = prop_oneof![
        6 => Just(Headers::Signed),
        2 => (0u8..3, prop::option::of(string_regex("[ -~]{0,80}").unwrap()))
            .prop_map(|(which, value)| Headers::Junk { which, value }),
        1 => prop_oneof![-100_000i64..-305, 305i64..100_000].prop_map(Headers::Stale),
    ];
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/vipps", app.http_url);
    let counts: RefCell<HashMap<u16, u32>> = RefCell::default();
    let mut runner = TestRunner::new(config(256));
    let result = runner.run(
        &(webhook_body_strategy(known), headers),
        |(body, headers)| {
            let now = chrono::Utc::now();
            let date = match &headers {
                Headers::Stale(secs) => http_date(now + chrono::Duration::seconds(*secs)),
                _ => http_date(now),
            };
            let signed = app.sign(WEBHOOK_SECRET, &body, &date);
            let mut values = vec![
                Some(date.clone()),
                Some(signed.content_hash.clone()),
                Some(signed.authorization.clone()),
            ];
            if let Headers::Junk { which, value } = &headers {
                values[usize::from(*which)] = value.clone();
            }
            let mut request = http.post(&url).body(body.clone());
            for (name, value) in ["x-ms-date", "x-ms-content-sha256", "authorization"]
                .iter()
                .zip(&values)
            {
                if let Some(v) = value {
                    request = request.header(*name, v);
                }
            }
            let status = rt
                .block_on(async { request.send().await })
                .unwrap()
                .status()
                .as_u16();
            *counts.borrow_mut().entry(status).or_default() += 1;
            let authentic = match &headers {
                Headers::Signed => true,
                Headers::Stale(_) => false,
                // Junk equal to the real value (an empty draw of the same string) stays valid.
                Headers::Junk { which, value } => {
                    let real = [&date, &signed.content_hash, &signed.authorization];
                    value.as_deref().map(str::trim) == Some(real[usize::from(*which)].as_str())
                }
            };
            let expected = if body.len() > paygate::WEBHOOK_BODY_LIMIT {
                413
            } else if !authentic {
                401
            } else if is_valid_event(&body) {
                200
            } else {
                400
            };
            prop_assert_eq!(
                status,
                expected,
                "body {:?}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
            Ok(())
        },
    );
    eprintln!("webhook statuses seen: {:?}", counts.borrow());
    result.unwrap();
    // The known payment is consistent after whatever was thrown at it.
    let mut app = app;
    let events = rt.block_on(app.events(known));
    assert_each_event_once(&events);
    rt.block_on(app.stop());
}

// --- gRPC validation ------------------------------------------------------------------------

/// Codes a well-formed request may get: success, a validation refusal, or a state answer.
fn check_status(status: &tonic::Status) -> Result<(), TestCaseError> {
    use tonic_types::StatusExt;
    match status.code() {
        Code::InvalidArgument => {
            let violations = status
                .get_details_bad_request()
                .map(|b| b.field_violations)
                .unwrap_or_default();
            prop_assert!(!violations.is_empty(), "no BadRequest details: {status:?}");
            prop_assert!(
                violations.iter().all(|v| !v.field.is_empty()),
                "a violation without a field: {status:?}"
            );
        }
        Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists => {}
        _ => prop_assert!(false, "unexpected status {status:?}"),
    }
    Ok(())
}

fn money() -> impl Strategy<Value = Option<proto::Money>> {
    prop::option::weighted(
        0.9,
        (
            prop_oneof![
                6 => select(vec!["NOK", "DKK", "EUR"]).prop_map(str::to_owned),
                1 => text(5),
            ],
            edgy_i64(),
        )
            .prop_map(|(currency, value)| proto::Money { currency, value }),
    )
}

fn metadata() -> impl Strategy<Value = HashMap<String, String>> {
    prop_oneof![
        8 => hash_map(text(110), text(510), 0..8),
        1 => hash_map(text(12), text(12), 0..300),
    ]
}

fn receipt() -> impl Strategy<Value = Option<proto::Receipt>> {
    let line = (
        text(30),
        text(30),
        edgy_i64(),
        edgy_i64(),
        edgy_i64(),
        any::<i32>(),
        prop::option::of((edgy_i64(), text(12), text(6))),
        edgy_i64(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, id, total, excl, tax, pct, unit, discount, is_return, is_shipping)| {
                proto::OrderLine {
                    name,
                    id,
                    total_amount: total,
                    total_amount_excluding_tax: excl,
                    total_tax_amount: tax,
                    tax_percentage: pct,
                    unit_info: unit.map(|(unit_price, quantity, quantity_unit)| proto::UnitInfo {
                        unit_price,
                        quantity,
                        quantity_unit,
                    }),
                    discount,
                    is_return,
                    is_shipping,
                }
            },
        );
    prop::option::weighted(
        0.3,
        (
            vec(line, 0..4),
            prop::option::of((text(4), edgy_i64(), text(10), text(10))),
        )
            .prop_map(|(order_lines, bottom)| proto::Receipt {
                order_lines,
                bottom_line: bottom.map(|(currency, tip_amount, pos_id, receipt_number)| {
                    proto::BottomLine {
                        currency,
                        tip_amount,
                        pos_id,
                        receipt_number,
                    }
                }),
            }),
    )
}

/// Each field valid 9 times in 10 (so about a third of the requests pass validation and go
/// on to the emulator), otherwise hostile.
fn create_request() -> impl Strategy<Value = proto::CreatePaymentRequestRequest> {
    let scopes = vec(
        select(vec![
            "name",
            "address",
            "email",
            "phoneNumber",
            "birthDate",
            "nin",
        ])
        .prop_map(str::to_owned),
        0..3,
    );
    let hostile_scopes = vec(
        prop_oneof![
            select(vec!["name", "email", "phoneNumber"]).prop_map(str::to_owned),
            text(12),
        ],
        0..4,
    );
    let valid_metadata = hash_map(
        vec(nasty_char(), 1..=100).prop_map(|c| c.into_iter().collect::<String>()),
        text(500),
        0..=5,
    );
    (
        (
            prop_oneof![
                9 => prop_oneof![Just(String::new()), string_regex("[a-zA-Z0-9-]{8,50}").unwrap()],
                1 => reference(),
            ],
            prop_oneof![
                9 => (100i64..1_000_000).prop_map(|v| Some(nok(v))),
                1 => money(),
            ],
            prop_oneof![9 => Just(1i32), 1 => prop_oneof![0i32..6, any::<i32>()]],
            prop_oneof![
                9 => string_regex("479[0-9]{7}").unwrap().prop_map(Some),
                1 => prop::option::of(text(16)),
            ],
            prop_oneof![9 => scopes, 1 => hostile_scopes],
            prop_oneof![9 => Just(None), 1 => receipt()],
        ),
        (
            prop_oneof![
                9 => prop_oneof![
                    Just(String::new()),
                    string_regex("https://[a-z]{1,10}\\.no/[a-z]{0,10}").unwrap(),
                ],
                1 => text(60),
            ],
            prop_oneof![
                9 => prop_oneof![
                    Just("Taxi ride".to_owned()),
                    string_regex("[A-Za-z0-9 ]{3,100}").unwrap(),
                ],
                1 => text(120),
            ],
            prop_oneof![
                9 => prop_oneof![Just(String::new()), string_regex("[!-~]{1,50}").unwrap()],
                1 => prop_oneof![string_regex("[!-~]{51,60}").unwrap(), text(60)],
            ],
            prop_oneof![
                9 => prop_oneof![Just(String::new()), string_regex("[a-z0-9-]{1,40}").unwrap()],
                1 => text(140),
            ],
            prop_oneof![9 => valid_metadata, 1 => metadata()],
        ),
    )
        .prop_map(
            |(
                (reference, amount, user_flow, phone, profile_scopes, receipt),
                (return_url, payment_description, idempotency_key, customer_key, metadata),
            )| proto::CreatePaymentRequestRequest {
                reference,
                amount,
                user_flow,
                customer: phone.map(|phone_number| proto::Customer { phone_number }),
                profile_scopes,
                receipt,
                return_url,
                payment_description,
                idempotency_key,
                customer_key,
                metadata,
            },
        )
}

#[test]
fn create_payment_request_validation_holds() {
    let rt = runtime();
    let app = rt.block_on(spawn_app());
    let codes: RefCell<HashMap<String, u32>> = RefCell::default();
    let mut runner = TestRunner::new(config(200));
    let result = runner.run(&create_request(), |req| {
        let mut client = app.client.clone();
        let answer = rt.block_on(client.create_payment_request(req.clone()));
        match &answer {
            Ok(r) => {
                *codes.borrow_mut().entry("OK".into()).or_default() += 1;
                let p = r.get_ref().payment.clone().unwrap();
                prop_assert_eq!(&p.metadata, &req.metadata, "metadata stored verbatim");
                prop_assert_eq!(p.amount, req.amount.clone());
                if !req.reference.is_empty() {
                    prop_assert_eq!(&p.reference, &req.reference);
                }
            }
            Err(status) => {
                *codes
                    .borrow_mut()
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                check_status(status)?;
            }
        }
        Ok(())
    });
    eprintln!("CreatePaymentRequest answers: {:?}", codes.borrow());
    result.unwrap();
    // Some requests must have got through validation, or the property proved little.
    let ok = codes.borrow().get("OK").copied().unwrap_or(0);
    assert!(ok > 0, "{:?}", codes.borrow());
    rt.block_on(app.stop());
}

#[test]
fn capture_validation_holds_and_money_moves_once() {
    let rt = runtime();
    let mut app = rt.block_on(spawn_app());
    let known: Vec<String> = (0..3)
        .map(|_| rt.block_on(app.authorized(1_000_000)))
        .collect();
    let known_refs = known.clone();
    let strategy = (
        prop_oneof![
            4 => select(known_refs),
            1 => reference(),
        ],
        prop_oneof![
            // Capturing all that remains (no amount) is rare, or the payments run out early.
            36 => (1i64..5000).prop_map(|v| Some(nok(v))),
            1 => Just(None),
            9 => money(),
        ],
        prop_oneof![
            4 => string_regex("k-[a-z0-9]{1,6}").unwrap(),
            1 => Just(String::new()),
            1 => text(60),
            1 => string_regex("[!-~]{45,60}").unwrap(),
        ],
    );
    let codes: RefCell<HashMap<String, u32>> = RefCell::default();
    let mut runner = TestRunner::new(config(200));
    let result = runner.run(&strategy, |(reference, amount, idempotency_key)| {
        let mut client = app.client.clone();
        let answer = rt.block_on(client.capture_payment(proto::CapturePaymentRequest {
            reference,
            amount,
            idempotency_key,
        }));
        match &answer {
            Ok(r) => {
                *codes.borrow_mut().entry("OK".into()).or_default() += 1;
                let p = r.get_ref().payment.clone().unwrap();
                let (authorized, captured, _, _) = totals(&p);
                prop_assert!(
                    captured <= authorized,
                    "captured more than authorized: {p:?}"
                );
            }
            Err(status) => {
                *codes
                    .borrow_mut()
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                check_status(status)?;
            }
        }
        Ok(())
    });
    eprintln!("CapturePayment answers: {:?}", codes.borrow());
    result.unwrap();
    for reference in &known {
        app.assert_effects_once(reference);
        let events = rt.block_on(app.events(reference));
        assert_each_event_once(&events);
        let captured_events: i64 = events
            .iter()
            .filter(|e| e.name() == PaymentEventName::Captured)
            .map(|e| e.amount.as_ref().unwrap().value)
            .sum();
        let p = rt.block_on(app.try_get(reference)).unwrap();
        assert_eq!(totals(&p).1, captured_events, "aggregate = sum of events");
        let upstream: i64 = app
            .effects(reference, "capture")
            .iter()
            .map(|e| e["amount"]["value"].as_i64().unwrap())
            .sum();
        assert_eq!(upstream, captured_events, "paygate agrees with Vipps");
    }
    rt.block_on(app.stop());
}

#[test]
fn stream_request_validation_holds() {
    let rt = runtime();
    let app = rt.block_on(spawn_app_with(&[("PAYGATE_HEARTBEAT_MS", "50")]));
    let mut seed = app.client.clone();
    rt.block_on(seed.create_payment_request(push_request(10_000)))
        .unwrap();
    let strategy = (
        prop_oneof![
            4 => vec(reference(), 0..5),
            1 => vec(text(70), 0..300),
            1 => vec(Just("x".to_owned()), 1000..1100),
        ],
        prop_oneof![
            4 => vec(0i32..10, 0..5),
            1 => vec(any::<i32>(), 0..50),
        ],
        prop::option::of(prop_oneof![
            select(vec![
                0u64,
                1,
                u64::MAX,
                i64::MAX as u64,
                i64::MAX as u64 + 1
            ]),
            any::<u64>(),
        ]),
    );
    let codes: RefCell<HashMap<String, u32>> = RefCell::default();
    let mut runner = TestRunner::new(config(128));
    let result = runner.run(&strategy, |(references, names, after_sequence)| {
        let mut client = app.client.clone();
        let request = proto::StreamPaymentEventsRequest {
            references,
            names,
            after_sequence,
        };
        let answer = rt.block_on(client.stream_payment_events(request.clone()));
        match answer {
            Ok(stream) => {
                *codes.borrow_mut().entry("OK".into()).or_default() += 1;
                // The first item (an event, or a heartbeat within 50 ms) is not an error.
                let mut stream = stream.into_inner();
                let first = rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await
                });
                match first {
                    Ok(Ok(Some(_))) => {}
                    Ok(Err(status)) => check_status(&status)?,
                    other => prop_assert!(false, "stream gave nothing usable: {other:?}"),
                }
            }
            Err(status) => {
                *codes
                    .borrow_mut()
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                check_status(&status)?;
            }
        }
        Ok(())
    });
    eprintln!("StreamPaymentEvents answers: {:?}", codes.borrow());
    result.unwrap();
    rt.block_on(app.stop());
}
