//! A small in-process TCP fault proxy: listens on 127.0.0.1:0 and forwards to one target, with
//! a mode the test switches at any time.
//!
//! - `Pass`: forward both ways.
//! - `Refuse`: every new connection is accepted and reset at once (RST), and every existing one
//!   is reset too: the client sees "connection reset".
//! - `Blackhole`: connections are accepted and read, but nothing is forwarded either way and
//!   nothing is answered: the client times out.
//! - `Delay(d)`: every chunk from the target is held `d` before it is passed on.
//! - `Truncate(k)`: of what the target answers on one connection, only the first `k` bytes are
//!   passed on, then the connection is closed (FIN), so the client reads a cut response.
//! - `TruncateBody(k)`: the same, counting from the end of the first HTTP/1 header block
//!   (`\r\n\r\n`): the status line and headers arrive whole and the body is cut after `k` bytes.
//!
//! Switching to `Refuse` resets the connections already open; the other modes apply to open
//! connections from their next chunk on (`Truncate*` counts from that chunk).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    Blackhole,
    Delay(Duration),
    Truncate(usize),
    TruncateBody(usize),
}

/// What the proxy did, for the report of injected faults.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    reset_open: AtomicU64,
    blackholed_chunks: AtomicU64,
    delayed_chunks: AtomicU64,
    truncated: AtomicU64,
    forwarded_chunks: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted from clients (any mode).
    pub accepted: u64,
    /// New connections reset at accept (`Refuse`).
    pub refused: u64,
    /// Open connections reset when `Refuse` was switched on (or by a chunk seen in `Refuse`).
    pub reset_open: u64,
    /// Chunks swallowed by `Blackhole`.
    pub blackholed_chunks: u64,
    /// Chunks held back by `Delay`.
    pub delayed_chunks: u64,
    /// Responses cut by `Truncate*`.
    pub truncated: u64,
    /// Chunks passed on untouched.
    pub forwarded_chunks: u64,
}

struct Shared {
    target: SocketAddr,
    mode: Mutex<Mode>,
    /// Cancelled (and replaced) to reset every open connection at once.
    epoch: Mutex<CancellationToken>,
    counters: Counters,
    stop: CancellationToken,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn epoch(&self) -> CancellationToken {
        self.epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The running proxy; dropping it stops it and resets its connections.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `target`, starting in `Pass`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target,
            mode: Mutex::new(Mode::Pass),
            epoch: Mutex::new(CancellationToken::new()),
            counters: Counters::default(),
            stop: CancellationToken::new(),
        });
        let accept = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept.stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else {
                    continue;
                };
                accept.counters.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(client, Arc::clone(&accept)));
            }
        });
        Proxy { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode; `Refuse` also resets every open connection.
    pub fn set(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
        if mode == Mode::Refuse {
            self.reset_all();
        }
    }

    /// Resets every open connection (new ones are handled by the current mode).
    pub fn reset_all(&self) {
        let mut epoch = self
            .shared
            .epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        epoch.cancel();
        *epoch = CancellationToken::new();
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            accepted: n(&c.accepted),
            refused: n(&c.refused),
            reset_open: n(&c.reset_open),
            blackholed_chunks: n(&c.blackholed_chunks),
            delayed_chunks: n(&c.delayed_chunks),
            truncated: n(&c.truncated),
            forwarded_chunks: n(&c.forwarded_chunks),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.reset_all();
    }
}

/// Resets a client socket: SO_LINGER 0, so closing it sends RST instead of FIN.
fn reset(client: &TcpStream) {
    let _ = client.set_zero_linger();
}

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let epoch = shared.epoch();
    match shared.mode() {
        Mode::Refuse => {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
        Mode::Blackhole => {
            blackhole(client, &shared, &epoch).await;
            return;
        }
        _ => {}
    }
    let upstream = tokio::select! {
        () = epoch.cancelled() => { reset(&client); return; }
        () = shared.stop.cancelled() => { reset(&client); return; }
        upstream = TcpStream::connect(shared.target) => upstream,
    };
    let Ok(upstream) = upstream else {
        reset(&client);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let ends = Ends::default();
    let up = tokio::spawn(pump(
        client_read,
        upstream_write,
        Direction::Up,
        Arc::clone(&shared),
        ends.clone(),
        epoch.clone(),
    ));
    let down = tokio::spawn(pump(
        upstream_read,
        client_write,
        Direction::Down,
        shared,
        ends,
        epoch,
    ));
    let _ = tokio::join!(up, down);
}

/// Reads and discards whatever the client sends, forever (until reset or the client leaves).
async fn blackhole(mut client: TcpStream, shared: &Shared, epoch: &CancellationToken) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            () = epoch.cancelled() => { reset(&client); return; }
            () = shared.stop.cancelled() => { reset(&client); return; }
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => { shared.counters.blackholed_chunks.fetch_add(1, Ordering::Relaxed); }
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to target.
    Up,
    /// Target to client (the answers).
    Down,
}

/// How a pump ended.
enum End {
    /// The source closed (or failed): pass the close on.
    Eof,
    /// Reset the client connection.
    Reset,
    /// Truncated: close the client connection gracefully, the rest is never sent.
    Cut,
}

/// The two ways a connection ends on purpose: reset (RST to the client), or closed after a cut
/// (FIN, everything written so far is delivered).
#[derive(Clone, Default)]
struct Ends {
    reset: CancellationToken,
    close: CancellationToken,
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    shared: Arc<Shared>,
    ends: Ends,
    epoch: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // While truncating: the mode, body bytes passed on so far, and whether the body has begun.
    let mut truncating: Option<(Mode, usize, bool)> = None;
    let end = loop {
        let n = tokio::select! {
            () = ends.reset.cancelled() => break End::Reset,
            () = ends.close.cancelled() => break End::Eof,
            () = epoch.cancelled() => {
                shared.counters.reset_open.fetch_add(1, Ordering::Relaxed);
                break End::Reset;
            }
            () = shared.stop.cancelled() => break End::Reset,
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break End::Eof,
                Ok(n) => n,
            },
        };
        let chunk = &buf[..n];
        let mode = shared.mode();
        match mode {
            Mode::Refuse => {
                shared.counters.reset_open.fetch_add(1, Ordering::Relaxed);
                break End::Reset;
            }
            Mode::Blackhole => {
                shared
                    .counters
                    .blackholed_chunks
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Mode::Truncate(limit) | Mode::TruncateBody(limit) if direction == Direction::Down => {
                let (mut sent, mut in_body) = match truncating {
                    Some((m, sent, in_body)) if m == mode => (sent, in_body),
                    _ => (0, matches!(mode, Mode::Truncate(_))),
                };
                // Until the body begins (TruncateBody), pass header bytes whole.
                let mut start = 0;
                if !in_body {
                    match find(chunk, b"\r\n\r\n") {
                        Some(at) => {
                            start = at + 4;
                            in_body = true;
                        }
                        None => start = chunk.len(),
                    }
                }
                let take = (chunk.len() - start).min(limit.saturating_sub(sent));
                if to.write_all(&chunk[..start + take]).await.is_err() {
                    break End::Eof;
                }
                sent += take;
                if start + take < chunk.len() {
                    shared.counters.truncated.fetch_add(1, Ordering::Relaxed);
                    break End::Cut;
                }
                truncating = Some((mode, sent, in_body));
                continue;
            }
            Mode::Delay(d) if direction == Direction::Down => {
                shared
                    .counters
                    .delayed_chunks
                    .fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = ends.reset.cancelled() => break End::Reset,
                    () = tokio::time::sleep(d) => {}
                }
            }
            _ => {
                shared
                    .counters
                    .forwarded_chunks
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        truncating = None;
        if to.write_all(chunk).await.is_err() {
            break End::Eof;
        }
    };
    match end {
        End::Eof => {
            let _ = to.shutdown().await;
        }
        End::Cut => {
            // FIN after the cut; the other direction stops too (without a reset).
            let _ = to.shutdown().await;
            ends.close.cancel();
        }
        End::Reset => {
            // Whichever half faces the client carries the RST.
            match direction {
                Direction::Up => reset(from.as_ref()),
                Direction::Down => reset(to.as_ref()),
            }
            ends.reset.cancel();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
