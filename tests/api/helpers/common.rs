//! Request builders, fresh databases, bounded waits.

use paygate::grpc::proto;

/// The webhook secret the tests configure (`VIPPS_WEBHOOK_SECRET`) and sign with.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";

/// The PostgreSQL admin URL when the suite runs on PostgreSQL (`TEST_DATABASE_URL`).
pub fn postgres_admin() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let name = format!("paygate_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("connect TEST_DATABASE_URL");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let mut url = url::Url::parse(admin).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// A fresh database URL for one test.
pub async fn fresh_database(dir: &tempfile::TempDir) -> String {
    match postgres_admin() {
        Some(admin) => fresh_postgres(&admin).await,
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("paygate.db").display()
        ),
    }
}

pub fn nok(value: i64) -> proto::Money {
    proto::Money {
        currency: "NOK".into(),
        value,
    }
}

pub fn push_request(value: i64) -> proto::CreatePaymentRequestRequest {
    proto::CreatePaymentRequestRequest {
        amount: Some(nok(value)),
        user_flow: proto::UserFlow::PushMessage.into(),
        customer: Some(proto::Customer {
            phone_number: "4791234567".into(),
        }),
        payment_description: "Taxi ride".into(),
        // A create needs a reference or a key, so a retry finds the first attempt.
        reference: format!("ride-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    }
}

/// Amounts of an aggregate: (authorized, captured, refunded, cancelled).
pub fn totals(p: &proto::Payment) -> (i64, i64, i64, i64) {
    let a = p.aggregate.clone().unwrap();
    let v = |m: Option<proto::Money>| m.map_or(0, |m| m.value);
    (
        v(a.authorized_amount),
        v(a.captured_amount),
        v(a.refunded_amount),
        v(a.cancelled_amount),
    )
}

/// The BadRequest field names in an INVALID_ARGUMENT status (panics on another code).
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// IMF-fixdate, as Vipps sends in x-ms-date.
pub fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A webhook body as Vipps sends it.
pub fn webhook_body(
    reference: &str,
    name: &str,
    psp: &str,
    value: i64,
    key: Option<&str>,
) -> String {
    serde_json::json!({
        "msn": "123456",
        "reference": reference,
        "pspReference": psp,
        "name": name,
        "amount": {"currency": "NOK", "value": value},
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "idempotencyKey": key,
        "success": true,
    })
    .to_string()
}

/// The next event on a stream, skipping heartbeats; panics if none arrives within 20 s (a
/// bound against hanging, not a timing assertion).
pub async fn next_event(
    stream: &mut tonic::Streaming<proto::StreamPaymentEventsResponse>,
) -> proto::PaymentEvent {
    let deadline = std::time::Duration::from_secs(20);
    loop {
        let item = tokio::time::timeout(deadline, stream.message())
            .await
            .expect("an event within the bound")
            .expect("stream is healthy")
            .expect("stream still open");
        if let Some(proto::stream_payment_events_response::Kind::Event(e)) = item.kind {
            return e;
        }
    }
}

/// Polls `check` until it is true (bounded: 20 s), for effects that arrive asynchronously.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// What a careful caller does after an unknown outcome (a crash, an outage): retry with the
/// same key while the answer is UNAVAILABLE (another sender, e.g. the reconciler, may hold the
/// operation meanwhile, or a crashed sender's lease has not expired yet). Bounded: 30 s.
pub async fn retried<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut last = None;
    for _ in 0..60 {
        match call().await {
            Err(e) if e.code() == tonic::Code::Unavailable => last = Some(e),
            other => return other,
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| tonic::Status::unavailable("no attempt")))
}
