//! Signed Vipps webhooks, and two ways of sending them: closed loop (fixed connections, each
//! sending the next request as soon as the previous one is answered, like `wrk -cN`) and open
//! loop (a fixed rate, whatever the answers do).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{
    http1::Conn,
    progress::Progress,
    report::{self, Latency},
};
use crate::webhooks::signature;

/// The path paygate (and the raw baseline) receive webhooks on.
pub const PATH: &str = "/webhooks/vipps";

/// Builds signed webhook requests for one endpoint.
pub struct Signer {
    pub addr: SocketAddr,
    host: String,
    secret: String,
}

impl Signer {
    pub fn new(addr: SocketAddr, secret: &str) -> Self {
        Self {
            addr,
            host: format!("127.0.0.1:{}", addr.port()),
            secret: secret.to_owned(),
        }
    }

    /// A complete HTTP/1.1 request carrying a CREATED event for `reference`, signed now.
    pub fn request(&self, reference: &str, psp_reference: &str) -> Vec<u8> {
        let body = body(reference, psp_reference);
        let date = http_date(chrono::Utc::now());
        let signed = signature::sign(&self.secret, PATH, &self.host, &date, body.as_bytes());
        let mut out = format!(
            "POST {PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             x-ms-date: {date}\r\nx-ms-content-sha256: {}\r\nAuthorization: {}\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            signed.content_hash,
            signed.authorization,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// IMF-fixdate, as Vipps sends in `x-ms-date`.
pub fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// An ePayment webhook body as Vipps sends it.
pub fn body(reference: &str, psp_reference: &str) -> String {
    json!({
        "msn": "123456",
        "reference": reference,
        "pspReference": psp_reference,
        "name": "CREATED",
        "amount": {"currency": "NOK", "value": 1000},
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "idempotencyKey": null,
        "success": true,
    })
    .to_string()
}

/// What a load phase measured.
pub struct LoadResult {
    /// 2xx answers to requests started inside the measured window.
    pub ok: u64,
    /// 2xx answers in all (warm-up included): what the server should have stored.
    pub ok_total: u64,
    /// Non-2xx answers, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection or protocol errors.
    pub errors: u64,
    /// Latency of the 2xx answers inside the window.
    pub latency: Histogram<u64>,
    /// Length of the measured window.
    pub window: Duration,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Non-2xx answers and connection errors.
    pub fn failed(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors
    }

    pub fn json(&self) -> Value {
        json!({
            "ok_in_window": self.ok,
            "ok_total": self.ok_total,
            "window_s": report::round3(self.window.as_secs_f64()),
            "per_s": report::round1(self.rate()),
            "non_2xx": self.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "errors": self.errors,
            "latency_2xx": Latency::of(&self.latency),
        })
    }
}

struct Tally {
    ok: u64,
    ok_total: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ok: 0,
            ok_total: 0,
            statuses: BTreeMap::new(),
            errors: 0,
            latency: report::histogram()?,
        })
    }

    fn answer(&mut self, status: u16, took: Duration, counted: bool) {
        if (200..300).contains(&status) {
            self.ok_total += 1;
            if counted {
                self.ok += 1;
                report::record(&mut self.latency, took);
            }
        } else {
            *self.statuses.entry(status).or_default() += 1;
        }
    }

    fn merge(tallies: Vec<Self>, window: Duration) -> anyhow::Result<LoadResult> {
        let mut out = LoadResult {
            ok: 0,
            ok_total: 0,
            statuses: BTreeMap::new(),
            errors: 0,
            latency: report::histogram()?,
            window,
        };
        for t in tallies {
            out.ok += t.ok;
            out.ok_total += t.ok_total;
            out.errors += t.errors;
            for (k, v) in t.statuses {
                *out.statuses.entry(k).or_default() += v;
            }
            report::merge(&mut out.latency, &t.latency)?;
        }
        Ok(out)
    }
}

fn count(progress: &Progress, status: u16) {
    if (200..300).contains(&status) {
        progress.add(1);
    } else {
        progress.error();
    }
}

/// `connections` connections send webhooks back to back for `warmup + duration`; only requests
/// started after the warm-up count. References are `{prefix}{n}`.
pub async fn closed_loop(
    signer: Arc<Signer>,
    prefix: String,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    progress: Arc<Progress>,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let counted_from = start + warmup;
    let end = counted_from + duration;
    let next = Arc::new(AtomicU64::new(0));
    let prefix: Arc<str> = prefix.into();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (signer, next, prefix, progress) = (
            signer.clone(),
            next.clone(),
            prefix.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            let mut conn = Conn::connect(signer.addr).await?;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                let request = signer.request(&format!("{prefix}{n}"), &format!("psp-{n}"));
                match conn.request(&request).await {
                    Ok(status) => {
                        tally.answer(status, sent.elapsed(), sent >= counted_from);
                        count(&progress, status);
                    }
                    Err(_) => {
                        tally.errors += 1;
                        progress.error();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut tallies = Vec::with_capacity(connections);
    for task in tasks {
        tallies.push(task.await??);
    }
    Tally::merge(tallies, duration)
}

/// Sends `total` webhooks at `rate` per second over `connections` connections (event `n` is due
/// at `n / rate` seconds), recording in `sent[n]` the moment each request is written
/// (nanoseconds since `base`). References are `{prefix}{n}`.
#[allow(clippy::too_many_arguments)]
pub async fn open_loop(
    signer: Arc<Signer>,
    prefix: String,
    rate: u64,
    total: u64,
    connections: usize,
    sent: Arc<Vec<AtomicU64>>,
    base: Instant,
    counted_from_n: u64,
    progress: Arc<Progress>,
) -> anyhow::Result<LoadResult> {
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let period_ns = 1_000_000_000 / rate.max(1);
    let prefix: Arc<str> = prefix.into();
    let connections = connections.max(1) as u64;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (signer, prefix, sent, progress) = (
            signer.clone(),
            prefix.clone(),
            sent.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            let mut conn = Conn::connect(signer.addr).await?;
            let mut n = c;
            while n < total {
                tokio::time::sleep_until(start + Duration::from_nanos(n * period_ns)).await;
                let request = signer.request(&format!("{prefix}{n}"), &format!("psp-{n}"));
                let at = Instant::now();
                if let Some(slot) = usize::try_from(n).ok().and_then(|i| sent.get(i)) {
                    let ns = u64::try_from(at.duration_since(base).as_nanos()).unwrap_or(u64::MAX);
                    slot.store(ns, Ordering::Release);
                }
                match conn.request(&request).await {
                    Ok(status) => {
                        tally.answer(status, at.elapsed(), n >= counted_from_n);
                        count(&progress, status);
                    }
                    Err(_) => {
                        tally.errors += 1;
                        progress.error();
                    }
                }
                n += connections;
            }
            anyhow::Ok(tally)
        }));
    }
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await??);
    }
    let window = Duration::from_nanos(total.saturating_sub(counted_from_n) * period_ns);
    Tally::merge(tallies, window)
}
