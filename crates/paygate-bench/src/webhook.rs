//! Signed Vipps webhooks: built and signed exactly as Vipps does (`vipps_signature::sign` over
//! method, path, `x-ms-date`, host and the body's SHA-256), written to a file for wrk to replay,
//! or sent at a fixed rate (open loop) by the suite's own HTTP/1.1 client.

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

use crate::{
    http1::Conn,
    progress::Progress,
    report::{self, Latency},
};

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
        let signed = vipps_signature::sign(&self.secret, PATH, &self.host, &date, body.as_bytes());
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

/// When each numbered event's POST was written and when its 2xx arrived, in nanoseconds since
/// `base` (0: not yet).
#[derive(Clone)]
pub struct Timeline {
    pub base: Instant,
    pub sent: Arc<Vec<AtomicU64>>,
    pub acked: Arc<Vec<AtomicU64>>,
}

impl Timeline {
    pub fn new(events: u64) -> Self {
        let slots = || Arc::new((0..events).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        Self {
            base: Instant::now(),
            sent: slots(),
            acked: slots(),
        }
    }

    /// Nanoseconds from `base` to `at` (at least 1, so 0 keeps meaning "not yet").
    pub fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn mark(&self, slots: &[AtomicU64], n: u64, at: Instant) {
        if let Some(slot) = usize::try_from(n).ok().and_then(|i| slots.get(i)) {
            slot.store(self.ns(at), Ordering::Release);
        }
    }

    /// The recorded instant of event `n` in `slots`, if any.
    pub fn get(slots: &[AtomicU64], n: u64) -> Option<u64> {
        usize::try_from(n)
            .ok()
            .and_then(|i| slots.get(i))
            .map(|s| s.load(Ordering::Acquire))
            .filter(|ns| *ns > 0)
    }
}

/// Writes `count` signed requests for references `{prefix}{first + i}` to `path`, each followed
/// by a NUL byte (the separator wrk's replay script splits on). Returns the bytes written.
pub fn write_replay_file(
    path: &std::path::Path,
    signer: &Signer,
    prefix: &str,
    first: u64,
    count: u64,
) -> std::io::Result<u64> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut bytes = 0u64;
    for n in first..first + count {
        let request = signer.request(&format!("{prefix}{n}"), &format!("psp-{n}"));
        out.write_all(&request)?;
        out.write_all(&[0])?;
        bytes += request.len() as u64 + 1;
    }
    // On disk before the run starts, so its write-back does not compete with the server's fsyncs.
    out.into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(bytes)
}

/// Sends `total` webhooks at `rate` per second over `connections` connections (event `n` is due
/// at `n / rate` seconds), recording in the timeline when each request is written and when its
/// 2xx arrives. References are `{prefix}{n}`.
#[allow(clippy::too_many_arguments)]
pub async fn open_loop(
    signer: Arc<Signer>,
    prefix: String,
    rate: u64,
    total: u64,
    connections: usize,
    timeline: Timeline,
    counted_from_n: u64,
    progress: Arc<Progress>,
) -> anyhow::Result<LoadResult> {
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let period_ns = 1_000_000_000 / rate.max(1);
    let prefix: Arc<str> = prefix.into();
    let connections = connections.max(1) as u64;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (signer, prefix, timeline, progress) = (
            signer.clone(),
            prefix.clone(),
            timeline.clone(),
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
                timeline.mark(&timeline.sent, n, at);
                match conn.request(&request).await {
                    Ok(status) => {
                        if (200..300).contains(&status) {
                            timeline.mark(&timeline.acked, n, Instant::now());
                        }
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
