//! Running it: caller authentication, mutual TLS, health, metrics, graceful shutdown.

use paygate::grpc::proto::{self, payment_service_client::PaymentServiceClient};
use tonic::{
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
    Code, Request, Status,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::helpers::*;

const FARE_TOKEN: &str = "fare-system-token-0123456789abcdef";

fn with_token(
    token: &'static str,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(req)
    }
}

#[tokio::test]
async fn bearer_tokens_are_required_when_configured() {
    let tokens = format!("fare-system:{FARE_TOKEN},booking:booking-token-0123456789abcdef");
    let mut app = spawn_app_with(&[("PAYGATE_API_TOKENS", tokens.as_str())]).await;
    let err = app
        .client
        .create_payment_request(push_request(10000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let channel = Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut wrong = PaymentServiceClient::with_interceptor(
        channel.clone(),
        with_token("not-a-known-token-0123456789"),
    );
    assert_eq!(
        wrong
            .create_payment_request(push_request(10000))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut right = PaymentServiceClient::with_interceptor(channel.clone(), with_token(FARE_TOKEN));
    let p = right
        .create_payment_request(push_request(10000))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert!(!p.reference.is_empty());
    assert_eq!(
        app.requests("create"),
        1,
        "only the authenticated call reached Vipps"
    );
    // Health stays open for probes.
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        ServingStatus::try_from(status.status),
        Ok(ServingStatus::Serving | ServingStatus::NotServing)
    ));
    app.stop().await;
}

#[tokio::test]
async fn a_real_vipps_needs_authentication_or_an_explicit_opt_out() {
    let mut values: std::collections::HashMap<String, String> = [
        ("VIPPS_BASE_URL", "https://apitest.vipps.no"),
        ("VIPPS_CLIENT_ID", "id"),
        ("VIPPS_CLIENT_SECRET", "secret"),
        ("VIPPS_SUBSCRIPTION_KEY", "key"),
        ("VIPPS_MSN", "123456"),
        (
            "PAYGATE_WEBHOOK_PUBLIC_URL",
            "https://pay.example.com/webhooks/vipps",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let err = paygate::config::Config::from_values(&values).unwrap_err();
    assert_eq!(err.key, "PAYGATE_API_TOKENS");
    values.insert("PAYGATE_ALLOW_UNAUTHENTICATED".into(), "true".into());
    assert!(paygate::config::Config::from_values(&values).is_ok());
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert, Issuer::new(params, key))
    };
    let leaf = |names: Vec<String>, issuer: &Issuer<'static, KeyPair>| {
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (ca_cert, issuer) = ca("paygate test CA");
    let (_, other_issuer) = ca("someone else's CA");
    let (server_cert, server_key) = leaf(vec!["localhost".into()], &issuer);
    let (client_cert, client_key) = leaf(vec!["fare-system".into()], &issuer);
    let (stranger_cert, stranger_key) = leaf(vec!["stranger".into()], &other_issuer);
    Pki {
        ca: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    }
}

async fn tls_client(
    app: &TestApp,
    pki: &Pki,
    identity: Option<(&str, &str)>,
) -> Result<PaymentServiceClient<Channel>, Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", app.grpc_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(PaymentServiceClient::new(channel))
}

#[tokio::test]
async fn mutual_tls_accepts_known_clients_and_refuses_others() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca) = (
        write("server.pem", &pki.server_cert),
        write("server.key", &pki.server_key),
        write("ca.pem", &pki.ca),
    );
    let app = spawn_app_with(&[
        ("PAYGATE_TLS_CERT", cert.as_str()),
        ("PAYGATE_TLS_KEY", key.as_str()),
        ("PAYGATE_TLS_CLIENT_CA", ca.as_str()),
    ])
    .await;

    let mut known = tls_client(&app, &pki, Some((&pki.client_cert, &pki.client_key)))
        .await
        .unwrap();
    let created = known
        .create_payment_request(push_request(10000))
        .await
        .unwrap();
    assert!(created.into_inner().payment.is_some());

    let refused = |r: Result<(), Status>| assert!(r.is_err(), "the handshake must be refused");
    let anonymous = async {
        let mut c = tls_client(&app, &pki, None).await?;
        c.create_payment_request(push_request(10000))
            .await
            .map(|_| ())
    };
    refused(anonymous.await);
    let stranger = async {
        let mut c = tls_client(&app, &pki, Some((&pki.stranger_cert, &pki.stranger_key))).await?;
        c.create_payment_request(push_request(10000))
            .await
            .map(|_| ())
    };
    refused(stranger.await);
    assert_eq!(app.requests("create"), 1);
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn health_is_serving_when_ready_and_not_serving_while_draining() {
    let mut app = spawn_app_with(&[
        ("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PAYGATE_SHUTDOWN_GRACE_MS", "1000"),
    ])
    .await;
    let channel = Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "paygate.v1.PaymentService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let serving = |s: i32| ServingStatus::try_from(s) == Ok(ServingStatus::Serving);
    loop {
        let s = watch.message().await.unwrap().unwrap().status;
        if serving(s) {
            break;
        }
    }
    let ready = app
        .http()
        .get(format!("{}/readyz", app.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    assert_eq!(
        app.http()
            .get(format!("{}/healthz", app.http_url))
            .send()
            .await
            .unwrap()
            .status(),
        reqwest::StatusCode::OK
    );
    app.signal_stop();
    let next = watch.message().await.unwrap().unwrap().status;
    assert_eq!(ServingStatus::try_from(next), Ok(ServingStatus::NotServing));
    app.stop().await;
}

#[tokio::test]
async fn metrics_after_traffic_without_personal_data() {
    let mut app = spawn_app_with(&[("VIPPS_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await;
    let payment = app.create_push(10000).await;
    let _ = app.capture(&payment.reference, None, "k").await;
    let body = webhook_body(&payment.reference, "AUTHORIZED", "77", 10000, None);
    assert!(app.post_webhook(&body).await.is_success());
    assert_eq!(
        app.post_webhook("{}").await,
        reqwest::StatusCode::BAD_REQUEST
    );
    let text = app.metrics().await;
    for name in [
        "paygate_grpc_requests_total",
        "paygate_grpc_request_duration_seconds_bucket",
        "paygate_vipps_requests_total",
        "paygate_vipps_request_duration_seconds_bucket",
        "paygate_webhooks_received_total",
        "paygate_webhooks_accepted_total",
        "paygate_webhooks_rejected_total",
        "paygate_events_appended_total",
        "paygate_vipps_token_refreshes_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains("/paygate.v1.PaymentService/CreatePaymentRequest"));
    assert!(
        text.contains("FAILED_PRECONDITION"),
        "the refused capture is counted by code"
    );
    assert!(
        !text.contains(&payment.reference),
        "no references in labels"
    );
    assert!(!text.contains("4791234567"), "no phone numbers in labels");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_capture_finish_and_record_its_event() {
    let mut app = spawn_app_with(&[("PAYGATE_SHUTDOWN_GRACE_MS", "10000")]).await;
    let reference = app.authorized(20000).await;
    // Vipps is slow to answer this capture.
    app.fault(serde_json::json!({"match": "capture", "count": 1, "delayMs": 1500}));
    let before = app.requests("capture");
    let mut client = app.client.clone();
    let r = reference.clone();
    let capture = tokio::spawn(async move {
        client
            .capture_payment(proto::CapturePaymentRequest {
                reference: r,
                amount: None,
                idempotency_key: "in-flight".into(),
            })
            .await
    });
    let emulator = app.emulator.clone();
    eventually("the capture reached Vipps", || {
        let n = emulator.stats()["requests"]["capture"]
            .as_u64()
            .unwrap_or(0);
        async move { n > before }
    })
    .await;
    app.signal_stop();
    let answer = capture
        .await
        .unwrap()
        .expect("the in-flight capture completes");
    assert_eq!(totals(&answer.into_inner().payment.unwrap()).1, 20000);
    let url = app.database_url.clone();
    let dir = app.stop().await;
    let mut again = spawn_on(dir, url, &[]).await;
    let names: Vec<_> = again
        .events(&reference)
        .await
        .iter()
        .map(|e| e.name())
        .collect();
    assert!(
        names.contains(&proto::PaymentEventName::Captured),
        "{names:?}"
    );
    again.stop().await;
}

#[tokio::test]
async fn tokens_can_come_from_a_mounted_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# mounted secret\nfare-system:{FARE_TOKEN}\n"),
    )
    .unwrap();
    let path = file.display().to_string();
    let app = spawn_app_with(&[("PAYGATE_API_TOKENS_FILE", path.as_str())]).await;
    let channel = Channel::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut open = PaymentServiceClient::new(channel.clone());
    assert_eq!(
        open.create_payment_request(push_request(10000))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut right = PaymentServiceClient::with_interceptor(channel, with_token(FARE_TOKEN));
    assert!(right
        .create_payment_request(push_request(10000))
        .await
        .is_ok());
    app.stop().await;
}
