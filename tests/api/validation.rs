//! Bad input: INVALID_ARGUMENT naming the field, and nothing changes.

use paygate::grpc::proto::{self, CreatePaymentRequestRequest as Create};

use crate::helpers::*;

fn table() -> Vec<(&'static str, Create, &'static str)> {
    let base = push_request(10000);
    let with = |f: &dyn Fn(&mut Create)| {
        let mut r = base.clone();
        f(&mut r);
        r
    };
    vec![
        ("no amount", with(&|r| r.amount = None), "amount"),
        (
            "zero amount",
            with(&|r| r.amount = Some(nok(0))),
            "amount.value",
        ),
        (
            "negative amount",
            with(&|r| r.amount = Some(nok(-100))),
            "amount.value",
        ),
        (
            "huge amount",
            with(&|r| r.amount = Some(nok(i64::MAX))),
            "amount.value",
        ),
        (
            "below NOK minimum",
            with(&|r| r.amount = Some(nok(99))),
            "amount.value",
        ),
        (
            "unknown currency",
            with(&|r| {
                r.amount = Some(proto::Money {
                    currency: "SEK".into(),
                    value: 1000,
                })
            }),
            "amount.currency",
        ),
        (
            "lowercase currency",
            with(&|r| {
                r.amount = Some(proto::Money {
                    currency: "nok".into(),
                    value: 1000,
                })
            }),
            "amount.currency",
        ),
        ("no flow", with(&|r| r.user_flow = 0), "user_flow"),
        ("unknown flow", with(&|r| r.user_flow = 99), "user_flow"),
        (
            "short reference",
            with(&|r| r.reference = "abc".into()),
            "reference",
        ),
        (
            "long reference",
            with(&|r| r.reference = "a".repeat(51)),
            "reference",
        ),
        (
            "reference charset",
            with(&|r| r.reference = "ride_0001'--".into()),
            "reference",
        ),
        (
            "push without phone",
            with(&|r| r.customer = None),
            "customer.phone_number",
        ),
        (
            "phone without country code",
            with(&|r| {
                r.customer = Some(proto::Customer {
                    phone_number: "91234567".into(),
                })
            }),
            "customer.phone_number",
        ),
        (
            "phone with plus",
            with(&|r| {
                r.customer = Some(proto::Customer {
                    phone_number: "+4791234567".into(),
                })
            }),
            "customer.phone_number",
        ),
        (
            "unknown scope",
            with(&|r| r.profile_scopes = vec!["phone".into()]),
            "profile_scopes[0]",
        ),
        (
            "web redirect without return url",
            with(&|r| r.user_flow = proto::UserFlow::WebRedirect.into()),
            "return_url",
        ),
        (
            "http return url",
            with(&|r| {
                r.user_flow = proto::UserFlow::WebRedirect.into();
                r.return_url = "http://example.com/x".into();
            }),
            "return_url",
        ),
        (
            "short description",
            with(&|r| r.payment_description = "ab".into()),
            "payment_description",
        ),
        (
            "long key",
            with(&|r| r.idempotency_key = "k".repeat(51)),
            "idempotency_key",
        ),
        (
            "too much metadata",
            with(&|r| {
                for i in 0..6 {
                    r.metadata.insert(format!("k{i}"), "v".into());
                }
            }),
            "metadata",
        ),
        (
            "receipt that does not add up",
            with(&|r| {
                r.receipt = Some(proto::Receipt {
                    order_lines: vec![proto::OrderLine {
                        name: "Fare".into(),
                        id: "1".into(),
                        total_amount: 9000,
                        total_amount_excluding_tax: 8000,
                        total_tax_amount: 1000,
                        tax_percentage: 12,
                        ..Default::default()
                    }],
                    bottom_line: Some(proto::BottomLine {
                        currency: "NOK".into(),
                        ..Default::default()
                    }),
                })
            }),
            "receipt.order_lines",
        ),
    ]
}

#[tokio::test]
async fn bad_create_requests_name_the_field_and_change_nothing() {
    let mut app = spawn_app().await;
    for (case, request, field) in table() {
        let err = app
            .client
            .create_payment_request(request)
            .await
            .unwrap_err();
        let fields = bad_fields(&err);
        assert!(
            fields.iter().any(|f| f == field),
            "{case}: expected {field}, got {fields:?}"
        );
    }
    assert_eq!(app.requests("create"), 0, "nothing reached Vipps");
    app.stop().await;
}

#[tokio::test]
async fn bad_modification_requests_name_the_field() {
    let mut app = spawn_app().await;
    let reference = app.authorized(10000).await;
    let err = app.capture(&reference, Some(100), "").await.unwrap_err();
    assert_eq!(bad_fields(&err), ["idempotency_key"]);
    let err = app.capture("", Some(100), "k").await.unwrap_err();
    assert_eq!(bad_fields(&err), ["reference"]);
    let err = app.capture(&reference, Some(0), "k").await.unwrap_err();
    assert_eq!(bad_fields(&err), ["amount.value"]);
    let err = app
        .client
        .capture_payment(proto::CapturePaymentRequest {
            reference: reference.clone(),
            amount: Some(proto::Money {
                currency: "EUR".into(),
                value: 100,
            }),
            idempotency_key: "eur".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["amount.currency"]);
    let err = app.refund(&reference, Some(-5), "k").await.unwrap_err();
    assert_eq!(bad_fields(&err), ["amount.value"]);
    let err = app.cancel(&reference, &"x".repeat(60)).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["idempotency_key"]);
    let err = app
        .client
        .get_payment(proto::GetPaymentRequest {
            reference: "bad ref!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["reference"]);
    assert!(app.effects(&reference, "capture").is_empty());
    app.stop().await;
}
