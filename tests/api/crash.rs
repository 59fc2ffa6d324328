//! Crash recovery, for real: the paygate binary is SIGKILLed at chosen points (it kills itself
//! there when PAYGATE_CRASH_AT names the point), restarted on the same database, and the caller
//! retries. The emulator, running in this test process, survives the crashes and tells how many
//! captures/refunds really happened.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use paygate::grpc::proto::{self, payment_service_client::PaymentServiceClient, PaymentEventName};
use vipps_emulator::{Emulator, EmulatorConfig, RunningEmulator};

use crate::helpers as common;

const SECRET: &str = "crash-test-webhook-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct World {
    dir: tempfile::TempDir,
    database_url: String,
    emulator: RunningEmulator,
    grpc: u16,
    http: u16,
    child: Option<Child>,
    starts: u32,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => common::fresh_postgres(&admin).await,
            _ => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("paygate.db").display()
            ),
        };
        let emulator = Emulator::new(EmulatorConfig::default())
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self {
            dir,
            database_url,
            emulator,
            grpc: free_port(),
            http: free_port(),
            child: None,
            starts: 0,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("paygate-{}.log", self.starts))
    }

    /// Starts the binary (optionally armed with a crash point) and waits until it answers.
    async fn start(&mut self, crash_at: Option<&str>) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paygate"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("PAYGATE_GRPC_ADDR", format!("127.0.0.1:{}", self.grpc))
            .env("PAYGATE_HTTP_ADDR", format!("127.0.0.1:{}", self.http))
            .env("VIPPS_BASE_URL", self.emulator.base_url())
            .env("VIPPS_CLIENT_ID", "crash-test")
            .env("VIPPS_CLIENT_SECRET", "crash-test-secret")
            .env("VIPPS_SUBSCRIPTION_KEY", "crash-test-key")
            .env("VIPPS_MSN", "123456")
            .env("VIPPS_WEBHOOK_SECRET", SECRET)
            .env(
                "PAYGATE_WEBHOOK_PUBLIC_URL",
                format!("http://127.0.0.1:{}/webhooks/vipps", self.http),
            )
            .env("PAYGATE_ALLOW_UNAUTHENTICATED", "true")
            .env("VIPPS_RETRY_BUDGET_MS", "2000")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        if let Some(point) = crash_at {
            cmd.env("PAYGATE_CRASH_AT", point);
        }
        self.child = Some(cmd.spawn().unwrap());
        let health = format!("http://127.0.0.1:{}/healthz", self.http);
        for _ in 0..200 {
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "paygate did not start: {}",
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
    }

    /// Waits for the process to die by its crash point (bounded), or kills it.
    async fn wait_dead(&mut self) -> bool {
        let mut child = self.child.take().unwrap();
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                return !status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            // Poll instead of a blocking wait: this (single-threaded) test runtime must keep
            // running so our client connections can take the server's GOAWAY and close.
            for _ in 0..400 {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "SIGTERM exits 0");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("paygate did not stop within 20 s of SIGTERM");
        }
    }

    async fn client(&self) -> PaymentServiceClient<tonic::transport::Channel> {
        PaymentServiceClient::connect(format!("http://127.0.0.1:{}", self.grpc))
            .await
            .unwrap()
    }

    fn effects(&self, reference: &str, operation: &str) -> usize {
        self.emulator.emulator().payment_view(reference).unwrap()["effects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == operation)
            .count()
    }

    /// An authorized payment of 20000, made with a healthy paygate that is then stopped.
    async fn authorized_payment(&mut self) -> String {
        self.start(None).await;
        let mut client = self.client().await;
        let p = client
            .create_payment_request(proto::CreatePaymentRequestRequest {
                amount: Some(proto::Money {
                    currency: "NOK".into(),
                    value: 20000,
                }),
                user_flow: proto::UserFlow::PushMessage.into(),
                customer: Some(proto::Customer {
                    phone_number: "4791234567".into(),
                }),
                idempotency_key: "crash-test-create".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        self.emulator
            .emulator()
            .approve_payment(&p.reference, None)
            .unwrap();
        let got = client
            .get_payment(proto::GetPaymentRequest {
                reference: p.reference.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(got.state(), proto::PaymentState::Authorized);
        self.stop().await;
        p.reference
    }

    async fn events(&self, reference: &str) -> Vec<PaymentEventName> {
        self.client()
            .await
            .list_payment_events(proto::ListPaymentEventsRequest {
                reference: reference.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .events
            .iter()
            .map(|e| e.name())
            .collect()
    }
}

async fn capture(
    world: &World,
    reference: &str,
    key: &str,
) -> Result<proto::Payment, tonic::Status> {
    world
        .client()
        .await
        .capture_payment(proto::CapturePaymentRequest {
            reference: reference.into(),
            amount: Some(proto::Money {
                currency: "NOK".into(),
                value: 8000,
            }),
            idempotency_key: key.into(),
        })
        .await
        .map(|r| r.into_inner().payment.unwrap())
}

/// Crash during a capture at `point`, restart, retry: exactly one capture at Vipps and one
/// CAPTURED event in paygate's log.
async fn capture_survives(point: &str, effects_at_crash: usize) {
    let mut world = World::new().await;
    let reference = world.authorized_payment().await;
    world.start(Some(point)).await;
    let err = capture(&world, &reference, "ride-capture")
        .await
        .unwrap_err();
    assert!(world.wait_dead().await, "paygate died at {point}: {err:?}");
    assert_eq!(
        world.effects(&reference, "capture"),
        effects_at_crash,
        "at the crash"
    );

    world.start(None).await;
    let p = common::retried(|| capture(&world, &reference, "ride-capture"))
        .await
        .unwrap();
    assert_eq!(p.aggregate.unwrap().captured_amount.unwrap().value, 8000);
    assert_eq!(
        world.effects(&reference, "capture"),
        1,
        "exactly one capture at Vipps"
    );
    let events = world.events(&reference).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == PaymentEventName::Captured)
            .count(),
        1,
        "{events:?}"
    );
    world.stop().await;
}

#[tokio::test]
async fn crash_before_the_upstream_call() {
    capture_survives("before_upstream", 0).await;
}

#[tokio::test]
async fn crash_after_the_upstream_call_before_the_commit() {
    capture_survives("after_upstream", 1).await;
}

#[tokio::test]
async fn crash_inside_the_commit() {
    capture_survives("in_commit", 1).await;
}

#[tokio::test]
async fn crash_after_a_refund_reached_vipps() {
    let mut world = World::new().await;
    let reference = world.authorized_payment().await;
    world.start(None).await;
    capture(&world, &reference, "cap").await.unwrap();
    world.stop().await;
    world.start(Some("after_upstream")).await;
    let refund = |w: &World| {
        let r = reference.clone();
        let addr = format!("http://127.0.0.1:{}", w.grpc);
        async move {
            PaymentServiceClient::connect(addr)
                .await
                .unwrap()
                .refund_payment(proto::RefundPaymentRequest {
                    reference: r,
                    amount: Some(proto::Money {
                        currency: "NOK".into(),
                        value: 3000,
                    }),
                    idempotency_key: "ride-refund".into(),
                })
                .await
        }
    };
    assert!(refund(&world).await.is_err());
    assert!(world.wait_dead().await);
    assert_eq!(world.effects(&reference, "refund"), 1);
    world.start(None).await;
    let p = common::retried(|| refund(&world))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(p.aggregate.unwrap().refunded_amount.unwrap().value, 3000);
    assert_eq!(world.effects(&reference, "refund"), 1);
    let events = world.events(&reference).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == PaymentEventName::Refunded)
            .count(),
        1
    );
    world.stop().await;
}

fn signed(path: &Path, host: &str, body: &str) -> (String, String, String) {
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let s = vipps_signature::sign(SECRET, path.to_str().unwrap(), host, &date, body.as_bytes());
    (date, s.content_hash, s.authorization)
}

#[tokio::test]
async fn crash_mid_webhook_commit_loses_nothing() {
    let mut world = World::new().await;
    world.start(Some("in_commit")).await;
    let body = serde_json::json!({
        "msn": "123456", "reference": "ride-webhook-crash", "pspReference": "4242", "name": "AUTHORIZED",
        "amount": {"currency": "NOK", "value": 5000}, "timestamp": chrono::Utc::now().to_rfc3339(),
        "idempotencyKey": null, "success": true
    })
    .to_string();
    let host = format!("127.0.0.1:{}", world.http);
    let url = format!("http://{host}/webhooks/vipps");
    let post = || {
        let (date, hash, auth) = signed(Path::new("/webhooks/vipps"), &host, &body);
        reqwest::Client::new()
            .post(url.clone())
            .header("x-ms-date", date)
            .header("x-ms-content-sha256", hash)
            .header("Authorization", auth)
            .body(body.clone())
            .send()
    };
    // Vipps sees no 2xx (the connection dies), so it will deliver again.
    assert!(post().await.is_err());
    assert!(world.wait_dead().await);
    world.start(None).await;
    let answer = post().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    assert_eq!(
        answer.text().await.unwrap(),
        "accepted",
        "the first delivery was never committed"
    );
    let again = post().await.unwrap();
    assert_eq!(again.text().await.unwrap(), "duplicate");
    assert_eq!(
        world.events("ride-webhook-crash").await,
        [PaymentEventName::Authorized]
    );
    world.stop().await;
}
