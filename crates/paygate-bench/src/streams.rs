//! Opening and holding many idle `StreamPaymentEvents` streams in a child process
//! (`paygate-bench __stream-client`, on the load CPU), so that server memory is measured alone.
//! Streams are opened in steps on connections opened up front, so memory can be read between
//! steps.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::{
    grpc::{channel, proto, PaymentServiceClient},
    pin::Layout,
};

/// Streams opened at once while setting up.
const OPENING: usize = 256;

/// Streams held open by tasks that read (and drop) whatever arrives.
pub struct Held {
    pub opened: usize,
    pub failed: usize,
    clients: Vec<PaymentServiceClient<Channel>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Held {
    /// Opens `connections` connections, no streams yet.
    pub async fn connect(addr: SocketAddr, connections: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            clients.push(PaymentServiceClient::new(channel(addr).await?));
        }
        Ok(Self {
            opened: 0,
            failed: 0,
            clients,
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        })
    }

    /// Opens `n` more live streams (every payment, every name), round robin over the
    /// connections.
    pub async fn open(&mut self, n: usize) {
        let first = self.opened + self.failed;
        let clients = &self.clients;
        let mut opening = futures::stream::iter(first..first + n)
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
        while let Some(result) = opening.next().await {
            match result {
                Ok(mut stream) => {
                    self.opened += 1;
                    let stop = self.stop.clone();
                    self.tasks.push(tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                () = stop.cancelled() => return,
                                item = stream.message() => if !matches!(item, Ok(Some(_))) { return },
                            }
                        }
                    }));
                }
                Err(_) => self.failed += 1,
            }
        }
    }

    pub async fn close(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Environment of the child client.
const ENV_TARGET: &str = "PAYGATE_BENCH_STREAM_TARGET";
const ENV_CONNECTIONS: &str = "PAYGATE_BENCH_STREAM_CONNECTIONS";

/// The child: connects, prints `ready 0 0`; then for each line `open N` on stdin opens N more
/// streams and prints `ready <opened> <failed>`; holds everything until stdin closes.
pub fn child_main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(hold())
}

async fn hold() -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
    let addr: SocketAddr = var(ENV_TARGET)?.parse()?;
    let connections: usize = var(ENV_CONNECTIONS)?.parse()?;
    let mut held = Held::connect(addr, connections).await?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { return };
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        })?;
    let ready = |held: &Held| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {} {}", held.opened, held.failed)?;
        out.flush()?;
        Ok(())
    };
    ready(&held)?;
    while let Some(line) = lines.recv().await {
        if let Some(n) = line
            .strip_prefix("open ")
            .and_then(|n| n.trim().parse().ok())
        {
            held.open(n).await;
            ready(&held)?;
        }
    }
    held.close().await;
    Ok(())
}

/// Streams held by a child process.
pub struct ChildStreams {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    pub opened: usize,
    pub failed: usize,
}

impl ChildStreams {
    /// Starts the child and waits until its connections are open.
    pub async fn spawn(
        layout: &Layout,
        addr: SocketAddr,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating paygate-bench itself")?;
        let mut command = Command::new(&exe);
        command
            .arg(crate::CHILD_STREAM_CLIENT)
            .env(ENV_TARGET, addr.to_string())
            .env(ENV_CONNECTIONS, connections.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = layout
            .spawn_load(&mut command)
            .with_context(|| format!("starting the stream client {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut this = Self {
            child,
            stdout: Some(BufReader::new(stdout)),
            opened: 0,
            failed: 0,
        };
        if let Err(e) = this.ready().await {
            this.kill();
            return Err(e);
        }
        Ok(this)
    }

    /// Opens `n` more streams in the child.
    pub async fn open(&mut self, n: usize) -> anyhow::Result<()> {
        let sent = match self.child.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "open {n}").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if let Err(e) = sent {
            self.kill();
            return Err(e).context("talking to the stream client");
        }
        if let Err(e) = self.ready().await {
            self.kill();
            return Err(e);
        }
        Ok(())
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        let mut reader = self.stdout.take().context("child stdout")?;
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let result = reader.read_line(&mut line);
            (reader, result.map(|_| line))
        });
        let (reader, line) = tokio::time::timeout(Duration::from_secs(180), read)
            .await
            .context("the stream client did not answer within 180 s")??;
        self.stdout = Some(reader);
        let line = line?;
        let mut parts = line.split_whitespace();
        let (Some("ready"), Some(opened), Some(failed)) =
            (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("the stream client said {line:?}");
        };
        self.opened = opened.parse()?;
        self.failed = failed.parse()?;
        Ok(())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
