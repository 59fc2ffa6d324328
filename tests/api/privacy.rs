//! Callers see only what they may: scopes per RPC, phone numbers and Vipps `sub` only with
//! `pii` (answers, listed events, streamed events live and replayed from memory and from the
//! database), the audit trail, erasure that reaches everything, and retention.

use std::sync::{Arc, Mutex, OnceLock};

use paygate::grpc::proto::{
    self, customer_service_client::CustomerServiceClient,
    merchant_qr_service_client::MerchantQrServiceClient,
    payment_service_client::PaymentServiceClient, PaymentEventName,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel, Code, Request, Status};

use crate::helpers::*;

const FARE: &str = "fare-token-0123456789abcdef";
const EVENTS: &str = "events-token-0123456789abcd";
const OFFICE: &str = "office-token-0123456789abcd";
const QR: &str = "qr-token-0123456789abcdef01";
const ALL: &str = "all-token-0123456789abcdef0";

fn tokens() -> String {
    format!(
        "fare:{FARE}:payments,ride-events:{EVENTS}:events,\
         backoffice:{OFFICE}:payments+pii+customers,stickers:{QR}:qr,legacy:{ALL}"
    )
}

/// Sends `authorization: Bearer TOKEN`.
#[derive(Clone, Copy)]
struct Auth(&'static str);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(req)
    }
}

fn bearer(token: &'static str) -> Auth {
    Auth(token)
}

/// The three services as one caller sees them.
struct Clients {
    payments: PaymentServiceClient<InterceptedService<Channel, Auth>>,
    customers: CustomerServiceClient<InterceptedService<Channel, Auth>>,
    qr: MerchantQrServiceClient<InterceptedService<Channel, Auth>>,
}

async fn clients(app: &TestApp, token: &'static str) -> Clients {
    let channel = Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients {
        payments: PaymentServiceClient::with_interceptor(channel.clone(), bearer(token)),
        customers: CustomerServiceClient::with_interceptor(channel.clone(), bearer(token)),
        qr: MerchantQrServiceClient::with_interceptor(channel, bearer(token)),
    }
}

/// A push payment with phone consent and a customer key, approved, its profile shared.
async fn shared_payment(app: &TestApp, office: &mut Clients, rider: &str) -> proto::Payment {
    let mut request = push_request(20000);
    request.customer_key = rider.into();
    request.profile_scopes = vec!["phoneNumber".into()];
    let created = office
        .payments
        .create_payment_request(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    app.approve(&created.reference).await;
    let reference = created.reference.clone();
    let mut payments = office.payments.clone();
    eventually("the profile is shared", || {
        let (mut payments, reference) = (payments.clone(), reference.clone());
        async move {
            payments
                .list_payment_events(proto::ListPaymentEventsRequest { reference })
                .await
                .is_ok_and(|r| {
                    r.into_inner()
                        .events
                        .iter()
                        .any(|e| e.name() == PaymentEventName::ProfileShared)
                })
        }
    })
    .await;
    payments
        .get_payment(proto::GetPaymentRequest { reference })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
}

fn code<T>(result: Result<T, Status>) -> Code {
    result.err().map_or(Code::Ok, |s| s.code())
}

/// Every RPC against every kind of caller: allowed exactly when the caller has the scope.
#[tokio::test]
async fn each_rpc_needs_its_scope() {
    let tokens = tokens();
    let app = spawn_app_with(&[("PAYGATE_API_TOKENS", tokens.as_str())]).await;
    let mut office = clients(&app, OFFICE).await;
    let paid = shared_payment(&app, &mut office, "rider-scopes").await;
    let reference = paid.reference.clone();
    // (token, scopes it holds)
    let callers: [(&'static str, &[&str]); 5] = [
        (FARE, &["payments"]),
        (EVENTS, &["events"]),
        (OFFICE, &["payments", "pii", "customers"]),
        (QR, &["qr"]),
        (ALL, &["payments", "events", "pii", "customers", "qr"]),
    ];
    for (token, scopes) in callers {
        let mut c = clients(&app, token).await;
        let r = reference.clone();
        let results = [
            (
                "payments",
                code(
                    c.payments
                        .get_payment(proto::GetPaymentRequest {
                            reference: r.clone(),
                        })
                        .await,
                ),
            ),
            (
                "payments",
                code(
                    c.payments
                        .list_payment_events(proto::ListPaymentEventsRequest {
                            reference: r.clone(),
                        })
                        .await,
                ),
            ),
            (
                "payments",
                code(c.payments.create_payment_request(push_request(1000)).await),
            ),
            (
                "payments",
                code(
                    c.payments
                        .capture_payment(proto::CapturePaymentRequest {
                            reference: r.clone(),
                            amount: Some(nok(100)),
                            idempotency_key: format!("scope-{token}"),
                        })
                        .await,
                ),
            ),
            (
                "payments",
                code(
                    c.payments
                        .refund_payment(proto::RefundPaymentRequest {
                            reference: r.clone(),
                            amount: Some(nok(100)),
                            idempotency_key: format!("scope-{token}"),
                        })
                        .await,
                ),
            ),
            (
                "payments",
                code(
                    c.payments
                        .cancel_payment(proto::CancelPaymentRequest {
                            reference: "no-such-payment-1".into(),
                            idempotency_key: String::new(),
                        })
                        .await,
                ),
            ),
            (
                "events",
                code(
                    c.payments
                        .stream_payment_events(proto::StreamPaymentEventsRequest::default())
                        .await,
                ),
            ),
            (
                "customers",
                code(
                    c.customers
                        .get_customer(proto::GetCustomerRequest {
                            customer_key: "nobody".into(),
                        })
                        .await,
                ),
            ),
            (
                "customers",
                code(
                    c.customers
                        .delete_customer(proto::DeleteCustomerRequest {
                            customer_key: "nobody".into(),
                        })
                        .await,
                ),
            ),
            (
                "customers",
                code(
                    c.customers
                        .erase_phone_number(proto::ErasePhoneNumberRequest {
                            phone_number: "4799999999".into(),
                        })
                        .await,
                ),
            ),
            (
                "qr",
                code(
                    c.qr.list_merchant_redirect_qrs(
                        proto::ListMerchantRedirectQrsRequest::default(),
                    )
                    .await,
                ),
            ),
        ];
        for (i, (scope, code)) in results.into_iter().enumerate() {
            if scopes.contains(&scope) {
                assert_ne!(
                    code,
                    Code::PermissionDenied,
                    "call {i} with {token} ({scope})"
                );
                assert_ne!(code, Code::Unauthenticated, "call {i} with {token}");
            } else {
                assert_eq!(
                    code,
                    Code::PermissionDenied,
                    "call {i} with {token} lacks {scope}"
                );
            }
        }
    }
    // The refusal names the missing scope.
    let mut fare = clients(&app, FARE).await;
    let denied = fare
        .customers
        .get_customer(proto::GetCustomerRequest {
            customer_key: "rider-scopes".into(),
        })
        .await
        .unwrap_err();
    assert!(denied.message().contains("\"customers\""), "{denied:?}");
    app.stop().await;
}

/// Without `pii`, no phone number or `sub` anywhere: create and get answers, listed events,
/// streamed events live, replayed from memory and from the database, even the number the caller
/// supplied itself. Create by customer_key still pushes to the stored number.
#[tokio::test]
async fn without_pii_no_phone_number_or_sub_reaches_the_caller() {
    let tokens = tokens();
    let app = spawn_app_with(&[("PAYGATE_API_TOKENS", tokens.as_str())]).await;
    let office = clients(&app, OFFICE).await;
    let mut fare = clients(&app, FARE).await;
    let mut events = clients(&app, EVENTS).await;
    let mut live = events
        .payments
        .stream_payment_events(proto::StreamPaymentEventsRequest::default())
        .await
        .unwrap()
        .into_inner();

    // The fare system's own create: its answer carries no number either.
    let mut request = push_request(15000);
    request.customer_key = "rider-pii".into();
    request.profile_scopes = vec!["phoneNumber".into()];
    let created = fare
        .payments
        .create_payment_request(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(created.phone_number, "");
    app.approve(&created.reference).await;
    let reference = created.reference.clone();
    let mut office_payments = office.payments.clone();
    eventually("the profile is shared", || {
        let (mut p, reference) = (office_payments.clone(), reference.clone());
        async move {
            p.list_payment_events(proto::ListPaymentEventsRequest { reference })
                .await
                .is_ok_and(|r| {
                    r.into_inner()
                        .events
                        .iter()
                        .any(|e| e.name() == PaymentEventName::ProfileShared)
                })
        }
    })
    .await;
    let seen_by_office = office_payments
        .get_payment(proto::GetPaymentRequest {
            reference: reference.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(seen_by_office.phone_number, "4791234567");
    assert!(!seen_by_office.profile_sub.is_empty());

    let no_pii = |p: &proto::Payment| p.phone_number.is_empty() && p.profile_sub.is_empty();
    let got = fare
        .payments
        .get_payment(proto::GetPaymentRequest {
            reference: reference.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert!(no_pii(&got), "{got:?}");
    let listed = fare
        .payments
        .list_payment_events(proto::ListPaymentEventsRequest {
            reference: reference.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(listed
        .iter()
        .any(|e| e.name() == PaymentEventName::ProfileShared));
    assert!(listed.iter().all(|e| e.payment.as_ref().is_none_or(no_pii)));

    // Live.
    let mut live_seen = Vec::new();
    while !live_seen
        .iter()
        .any(|e: &proto::PaymentEvent| e.name() == PaymentEventName::ProfileShared)
    {
        live_seen.push(next_event(&mut live).await);
    }
    assert!(live_seen
        .iter()
        .all(|e| e.payment.as_ref().is_none_or(no_pii)));

    // Replayed from the in-memory window.
    let replayed = collect(&mut events, &reference, 3).await;
    assert!(
        replayed
            .iter()
            .all(|e| e.payment.as_ref().is_none_or(no_pii)),
        "{replayed:?}"
    );

    // The next ride by customer key: pushed to the stored number, which the caller never sees.
    let mut next = push_request(9000);
    next.customer = None;
    next.customer_key = "rider-pii".into();
    let pushed = fare
        .payments
        .create_payment_request(next)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert!(no_pii(&pushed));
    // The emulator's customer approves as the number the push went to.
    app.approve(&pushed.reference).await;
    let at_vipps = app.emulator.payment_view(&pushed.reference).unwrap();
    assert_eq!(at_vipps["customerPhoneNumber"], "4791234567", "{at_vipps}");

    // Replayed from the database, after a restart (the memory window starts empty).
    let url = app.database_url.clone();
    let dir = app.stop().await;
    let app = spawn_on(dir, url, &[("PAYGATE_API_TOKENS", tokens.as_str())]).await;
    let mut events = clients(&app, EVENTS).await;
    let from_db = collect(&mut events, &reference, 3).await;
    assert!(
        from_db
            .iter()
            .all(|e| e.payment.as_ref().is_none_or(no_pii)),
        "{from_db:?}"
    );
    let mut everything = clients(&app, ALL).await;
    let with_pii = collect(&mut everything, &reference, 3).await;
    assert!(
        with_pii.iter().any(|e| e
            .payment
            .as_ref()
            .is_some_and(|p| p.phone_number == "4791234567")),
        "a caller with pii still sees it"
    );
    app.stop().await;
}

/// The first `n` events of `reference` replayed from the start of the log.
async fn collect(c: &mut Clients, reference: &str, n: usize) -> Vec<proto::PaymentEvent> {
    let mut stream = c
        .payments
        .stream_payment_events(proto::StreamPaymentEventsRequest {
            references: vec![reference.into()],
            names: vec![],
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        out.push(next_event(&mut stream).await);
    }
    out
}

/// Audit lines captured from the tracing `audit` target (installed once per test process).
fn audit_lines() -> Arc<Mutex<Vec<String>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LINES
        .get_or_init(|| {
            use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let writer = move || AuditWriter(sink.clone());
            // Every event goes through (no per-layer filter); the writer keeps the audit lines.
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_target(true)
                .with_writer(writer);
            let _ = tracing_subscriber::registry().with(layer).try_init();
            lines
        })
        .clone()
}

struct AuditWriter(Arc<Mutex<Vec<String>>>);

impl std::io::Write for AuditWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every money-moving or erasing call leaves one audit line with the caller's name, and the
/// journal keeps the caller; never the token, never a full phone number.
#[tokio::test]
async fn money_moving_and_erasing_calls_are_audited() {
    let lines = audit_lines();
    let tokens = tokens();
    let app = spawn_app_with(&[("PAYGATE_API_TOKENS", tokens.as_str())]).await;
    let mut office = clients(&app, OFFICE).await;
    let paid = shared_payment(&app, &mut office, "rider-audit").await;
    office
        .payments
        .capture_payment(proto::CapturePaymentRequest {
            reference: paid.reference.clone(),
            amount: Some(nok(5000)),
            idempotency_key: "audit-capture".into(),
        })
        .await
        .unwrap();
    let denied = office
        .payments
        .capture_payment(proto::CapturePaymentRequest {
            reference: paid.reference.clone(),
            amount: Some(nok(999_999)),
            idempotency_key: "audit-too-much".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::FailedPrecondition);
    office
        .customers
        .erase_phone_number(proto::ErasePhoneNumberRequest {
            phone_number: "4791234567".into(),
        })
        .await
        .unwrap();

    let ours: Vec<serde_json::Value> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| {
            l["fields"]["subject"] == paid.reference.as_str()
                || l["fields"]["rpc"] == "ErasePhoneNumber"
        })
        .collect();
    let find = |rpc: &str, key: &str| {
        ours.iter()
            .find(|l| l["fields"]["rpc"] == rpc && l["fields"]["idempotency_key"] == key)
            .unwrap_or_else(|| panic!("no audit line for {rpc} {key}: {ours:#?}"))
    };
    let capture = find("CapturePayment", "audit-capture");
    assert_eq!(capture["fields"]["caller"], "backoffice");
    assert_eq!(capture["fields"]["outcome"], "ok");
    assert_eq!(
        find("CapturePayment", "audit-too-much")["fields"]["outcome"],
        "FailedPrecondition"
    );
    let create = ours
        .iter()
        .find(|l| l["fields"]["rpc"] == "CreatePaymentRequest")
        .expect("the create is audited");
    assert_eq!(create["fields"]["caller"], "backoffice");
    let erase = ours
        .iter()
        .find(|l| l["fields"]["rpc"] == "ErasePhoneNumber")
        .unwrap();
    assert_eq!(erase["fields"]["caller"], "backoffice");
    let text = serde_json::to_string(&ours).unwrap();
    assert!(!text.contains("4791234567"), "no full phone number: {text}");
    assert!(!text.contains(OFFICE), "no token");

    // The journal keeps who asked.
    let callers = journal_callers(&app.database_url, &paid.reference).await;
    assert!(callers.iter().all(|c| c == "backoffice"), "{callers:?}");
    assert!(callers.len() >= 2, "{callers:?}");
    app.stop().await;
}

async fn journal_callers(database_url: &str, reference: &str) -> Vec<String> {
    let query = "SELECT caller FROM operations WHERE reference = $1 ORDER BY id";
    if database_url.starts_with("postgres") {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(reference)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    } else {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(&query.replace("$1", "?"))
            .bind(reference)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }
}

/// Reproduced: after DeleteCustomer a stream replayed from 0 still carried the number (served
/// from memory). Erasure reaches the database, the memory window and the journal, and a late
/// Userinfo answer cannot bring the number back.
#[tokio::test]
async fn erasure_reaches_streams_lists_and_late_profiles() {
    let tokens = tokens();
    let app = spawn_app_with(&[("PAYGATE_API_TOKENS", tokens.as_str())]).await;
    let mut office = clients(&app, OFFICE).await;
    let paid = shared_payment(&app, &mut office, "rider-erase").await;
    assert_eq!(paid.phone_number, "4791234567");

    let erased = office
        .customers
        .delete_customer(proto::DeleteCustomerRequest {
            customer_key: "rider-erase".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.payments_scrubbed, 1);
    assert!(erased.events_scrubbed >= 2, "{erased:?}");
    let gone = |p: &proto::Payment| p.phone_number.is_empty() && p.profile_sub.is_empty();
    let mut everything = clients(&app, ALL).await;
    let replayed = collect(&mut everything, &paid.reference, 3).await;
    assert!(
        replayed.iter().all(|e| e.payment.as_ref().is_none_or(gone)),
        "{replayed:?}"
    );
    let listed = office
        .payments
        .list_payment_events(proto::ListPaymentEventsRequest {
            reference: paid.reference.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(listed.iter().all(|e| e.payment.as_ref().is_none_or(gone)));
    assert_eq!(
        office
            .customers
            .get_customer(proto::GetCustomerRequest {
                customer_key: "rider-erase".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // A payment whose profile is still being fetched when its customer is erased.
    app.emulator.set_profile_lag(4);
    let mut request = push_request(12000);
    request.customer_key = "rider-late".into();
    request.profile_scopes = vec!["phoneNumber".into()];
    let late = office
        .payments
        .create_payment_request(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    app.approve(&late.reference).await;
    let mut customers = office.customers.clone();
    let _ = customers
        .delete_customer(proto::DeleteCustomerRequest {
            customer_key: "rider-late".into(),
        })
        .await;
    // Long enough for the lagging profile.sub to appear and Userinfo to answer.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        customers
            .get_customer(proto::GetCustomerRequest {
                customer_key: "rider-late".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound,
        "the late answer did not re-create the customer"
    );
    let late_events = office
        .payments
        .list_payment_events(proto::ListPaymentEventsRequest {
            reference: late.reference.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(late_events
        .iter()
        .all(|e| e.name() != PaymentEventName::ProfileShared));
    assert!(late_events
        .iter()
        .all(|e| e.payment.as_ref().is_none_or(gone)));

    // A rider who paid without a customer key: erased by number.
    let mut anonymous = push_request(8000);
    anonymous.customer = Some(proto::Customer {
        phone_number: "4798765432".into(),
    });
    let anon = office
        .payments
        .create_payment_request(anonymous)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(anon.phone_number, "4798765432");
    let erased = office
        .customers
        .erase_phone_number(proto::ErasePhoneNumberRequest {
            phone_number: "4798765432".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.payments_scrubbed, 1);
    assert!(erased.events_scrubbed >= 1);
    let replayed = collect(&mut everything, &anon.reference, 1).await;
    assert!(replayed.iter().all(|e| e.payment.as_ref().is_none_or(gone)));
    app.stop().await;
}

/// Retention deletes what is older than its horizon; a stream resumed from before it gets
/// OUT_OF_RANGE naming the oldest available sequence, never a silent gap.
#[tokio::test]
async fn retention_deletes_old_data_and_stale_cursors_are_out_of_range() {
    let mut app = spawn_app_with(&[
        ("PAYGATE_RETENTION", "3s"),
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    let reference = app.authorized(10000).await;
    app.cancel(&reference, "retention-cancel").await.unwrap();
    eventually("retention deleted the payment's events", || {
        let mut client = app.client.clone();
        let reference = reference.clone();
        async move {
            client
                .list_payment_events(proto::ListPaymentEventsRequest { reference })
                .await
                .is_err_and(|s| s.code() == Code::NotFound)
        }
    })
    .await;
    let err = app.try_get(&reference).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the final payment is gone too");
    let mut stream = app.subscribe(Some(0), &[]).await;
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("oldest available sequence"),
        "{status:?}"
    );
    app.stop().await;
}

/// Webhooks for references paygate never created are kept only PAYGATE_UNKNOWN_EVENT_RETENTION;
/// the payments it knows keep theirs.
#[tokio::test]
async fn webhooks_for_unknown_payments_expire_sooner() {
    let mut app = spawn_app_with(&[
        ("PAYGATE_UNKNOWN_EVENT_RETENTION", "1s"),
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    let known = app.authorized(10000).await;
    let status = app
        .post_webhook(webhook_body(
            "stranger-ref-0001",
            "AUTHORIZED",
            "psp-x",
            100,
            None,
        ))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let mut horizon = 0;
    for _ in 0..100 {
        let mut stream = app.subscribe(Some(0), &["stranger-ref-0001"]).await;
        match stream.message().await {
            Err(s) if s.code() == Code::OutOfRange => {
                horizon = s
                    .message()
                    .split("events up to sequence ")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap();
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(horizon > 0, "the unknown payment's event expired");
    assert!(
        !app.events(&known).await.is_empty(),
        "known payments keep their events"
    );
    // Resuming at the horizon works.
    let mut stream = app.subscribe(Some(horizon), &[known.as_str()]).await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(1), stream.message()).await;
    assert!(
        !matches!(status, Ok(Err(ref s)) if s.code() == Code::OutOfRange),
        "{status:?}"
    );
    app.stop().await;
}
