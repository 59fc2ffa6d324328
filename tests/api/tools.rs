//! The operator commands of the real binary: `paygate events tail` follows the stream, resumes
//! after paygate restarts without printing an event twice, and ends cleanly on Ctrl-C;
//! `paygate payments show` answers "what happened to this payment?".

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use tokio::sync::mpsc;

use crate::helpers::*;

const TOKEN: &str = "oncall-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The next line the child printed (bounded wait; the app under test keeps running meanwhile).
async fn next_line(lines: &mut mpsc::Receiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.recv())
        .await
        .expect("a line within the bound")
        .expect("the child is still printing")
}

#[tokio::test]
async fn events_tail_follows_resumes_and_stops_on_ctrl_c() {
    let port = free_port();
    let grpc = format!("127.0.0.1:{port}");
    let tokens = format!("oncall:{TOKEN}:payments+events");
    let settings = [
        ("PAYGATE_GRPC_ADDR", grpc.as_str()),
        ("PAYGATE_API_TOKENS", tokens.as_str()),
    ];
    let mut app = spawn_app_with(&settings).await;
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_paygate"))
            .args([
                "events",
                "tail",
                "--json",
                "--addr",
                &format!("http://{grpc}"),
            ])
            .env("PAYGATE_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, mut lines) = mpsc::channel(64);
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    // Live only: wait until the tail is subscribed before creating anything.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = create_as_oncall(&mut app, 12_300).await;
    let line: serde_json::Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(line["reference"], first.reference.as_str());
    assert_eq!(line["name"], "CREATED");
    assert_eq!(line["amount"]["value"], 12_300);
    assert_eq!(line["source"], "OPERATION");
    let first_sequence = line["sequence"].as_u64().unwrap();

    // paygate restarts on the same address and database; the tail reconnects from its cursor.
    let url = app.database_url.clone();
    let dir = app.stop().await;
    // A restart takes a moment; the tail keeps retrying meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut app = spawn_on(dir, url, &settings).await;
    let second = create_as_oncall(&mut app, 4_500).await;
    let line: serde_json::Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(
        line["reference"],
        second.reference.as_str(),
        "no event printed twice"
    );
    assert!(line["sequence"].as_u64().unwrap() > first_sequence);

    // Ctrl-C: exit 0.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");

    // payments show: the payment and its events, for a person.
    // tokio's Command: the app under test runs on this test's runtime and must keep serving.
    let show = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygate"))
        .args([
            "payments",
            "show",
            &first.reference,
            "--addr",
            &format!("http://{grpc}"),
        ])
        .env("PAYGATE_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains(&format!("payment {}", first.reference)),
        "{text}"
    );
    assert!(text.contains("amount      NOK 123.00"), "{text}");
    assert!(text.contains("CREATED NOK 123.00 from operation"), "{text}");
    let missing = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygate"))
        .args([
            "payments",
            "show",
            "no-such-ride-1",
            "--addr",
            &format!("http://{grpc}"),
        ])
        .env("PAYGATE_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    app.stop().await;
}

/// The child is killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A push payment of `value`, created with the on-call token.
async fn create_as_oncall(app: &mut TestApp, value: i64) -> paygate::grpc::proto::Payment {
    let mut request = tonic::Request::new(push_request(value));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    app.client
        .create_payment_request(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
}
