//! Opening and holding many idle `StreamPaymentEvents` streams, in this process or in a child
//! process (`paygate bench __stream-client`), so the server's memory can be measured alone.

use std::{
    io::{BufRead as _, Write as _},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::grpc::proto::{self, payment_service_client::PaymentServiceClient};

/// Streams opened at once while setting up.
const OPENING: usize = 256;

/// A connection to `addr` of its own (not shared with other channels).
pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// Streams held open by tasks that read (and drop) whatever arrives.
pub struct Held {
    pub opened: usize,
    pub failed: usize,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _channels: Vec<Channel>,
}

impl Held {
    pub async fn close(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Opens `streams` live streams (every payment, every name) over `connections` connections.
pub async fn open(addr: SocketAddr, streams: usize, connections: usize) -> anyhow::Result<Held> {
    let mut channels = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        channels.push(channel(addr).await?);
    }
    let stop = CancellationToken::new();
    let clients: Vec<_> = channels
        .iter()
        .map(|c| PaymentServiceClient::new(c.clone()))
        .collect();
    let mut opened_streams = futures::stream::iter(0..streams)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            async move {
                client
                    .stream_payment_events(proto::StreamPaymentEventsRequest::default())
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .buffer_unordered(OPENING);
    let (mut opened, mut failed) = (0, 0);
    let mut tasks = Vec::with_capacity(streams);
    while let Some(result) = opened_streams.next().await {
        match result {
            Ok(mut stream) => {
                opened += 1;
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            item = stream.message() => if !matches!(item, Ok(Some(_))) { return },
                        }
                    }
                }));
            }
            Err(_) => failed += 1,
        }
    }
    Ok(Held {
        opened,
        failed,
        stop,
        tasks,
        _channels: channels,
    })
}

/// Environment of the child client.
const ENV_TARGET: &str = "PAYGATE_BENCH_STREAM_TARGET";
const ENV_STREAMS: &str = "PAYGATE_BENCH_STREAMS";
const ENV_CONNECTIONS: &str = "PAYGATE_BENCH_STREAM_CONNECTIONS";

/// The child: opens the streams, prints `ready <opened> <failed>`, holds them until stdin closes.
pub async fn child_main() -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
    let addr: SocketAddr = var(ENV_TARGET)?.parse()?;
    let streams: usize = var(ENV_STREAMS)?.parse()?;
    let connections: usize = var(ENV_CONNECTIONS)?.parse()?;
    let held = open(addr, streams, connections).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {} {}", held.opened, held.failed)?;
        out.flush()?;
    }
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut line)
            .is_ok_and(|n| n > 0)
        {
            line.clear();
        }
    })
    .await?;
    held.close().await;
    Ok(())
}

/// The binary that can play the child: the option, `BENCH_CLIENT_EXE`, or this executable when
/// it is `paygate`.
pub fn client_exe(option: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(p) = option {
        return Some(p.clone());
    }
    if let Some(p) = std::env::var_os("BENCH_CLIENT_EXE") {
        return Some(p.into());
    }
    std::env::current_exe()
        .ok()
        .filter(|p| p.file_stem().is_some_and(|s| s == "paygate"))
}

/// Streams held by a child process.
pub struct ChildStreams {
    child: Child,
    pub opened: usize,
    pub failed: usize,
}

impl ChildStreams {
    pub async fn spawn(
        exe: &std::path::Path,
        addr: SocketAddr,
        streams: usize,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(["bench", super::CHILD_SCENARIO])
            .env(ENV_TARGET, addr.to_string())
            .env(ENV_STREAMS, streams.to_string())
            .env(ENV_CONNECTIONS, connections.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the stream client {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        });
        let line = match tokio::time::timeout(Duration::from_secs(180), read).await {
            Ok(Ok(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the stream client did not get ready: {other:?}");
            }
        };
        let mut parts = line.split_whitespace();
        let (Some("ready"), Some(opened), Some(failed)) =
            (parts.next(), parts.next(), parts.next())
        else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the stream client said {line:?}");
        };
        Ok(Self {
            opened: opened.parse()?,
            failed: failed.parse()?,
            child,
        })
    }

    /// Closes its stdin (it then closes its streams and exits) and waits, killing it after 30 s.
    pub async fn close(mut self) {
        drop(self.child.stdin.take());
        let mut child = self.child;
        let waited = tokio::task::spawn_blocking(move || {
            for _ in 0..300 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        });
        let _ = waited.await;
    }
}
