//! catch-up: the log is filled with N events through paygate's public webhook endpoint (wrk
//! replaying N signed webhooks, as Vipps would send them), then one subscriber resumes with
//! `after_sequence` just before them and reads until it has the last one.
//!
//! The reading client must not be the bottleneck: it is a *lean* tonic client that decodes only
//! each event's sequence and reference (prost skips the other fields without allocating), on the
//! load CPU, and its CPU time is reported. Two more reads put the figure in context, same run:
//! the same range read by a client that decodes full prost messages (what an ordinary
//! subscriber pays), and the transport ceiling — a bare tonic server streaming N pre-built
//! events of the same shape to the same lean client.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::{
    grpc::{self, proto, Kind as ItemKind, PaymentServiceClient, StreamPaymentEventsRequest},
    machine,
    paygate::{Backend, Paygate, SECRET},
    plots::{Chart, Series},
    progress::Progress,
    report::{self, fmt_rate, fmt_us, Ratio, Row, ScenarioReport},
    servers::{Kind, ServerProc, ENV_BARE_EVENTS},
    webhook::{self, Signer},
    wrk::{self, Counter},
    Ctx,
};

const NAME: &str = "catch-up";
const FILL_CONNECTIONS: usize = 64;

/// One read of the log from a cursor to a sequence.
struct Read {
    received: u64,
    secs: f64,
    first_us: f64,
    /// (seconds since the request, events received).
    marks: Vec<(f64, u64)>,
    client_cpu_us: u64,
    server_cpu_ms: Option<u64>,
}

impl Read {
    fn rate(&self) -> f64 {
        self.received as f64 / self.secs.max(1e-9)
    }

    /// The client's CPU as a share of one core over the read.
    fn client_share(&self) -> f64 {
        self.client_cpu_us as f64 / 1e6 / self.secs.max(1e-9)
    }

    fn json(&self) -> Value {
        json!({
            "received": self.received,
            "seconds": report::round3(self.secs),
            "per_s": report::round1(self.rate()),
            "first_event_us": report::round1(self.first_us),
            "client_cpu_ms": self.client_cpu_us / 1000,
            "client_cpu_share_of_one_core": report::round3(self.client_share()),
            "client_cpu_per_event_us": report::round3(
                self.client_cpu_us as f64 / self.received.max(1) as f64
            ),
            "server_cpu_ms": self.server_cpu_ms,
            "marks_s_events": self.marks,
        })
    }
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let n = ctx.sizes.catchup_events;
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "catch-up", &[]).await?;
    let result = on_paygate(ctx, &paygate).await;
    paygate.stop().await;
    let (fill, lean, full, behind) = result?;

    let bare = ServerProc::start(
        &ctx.layout,
        Kind::Bare,
        &[(ENV_BARE_EVENTS, behind.to_string())],
        &ctx.dir.join("catch-up-bare.log"),
    )
    .await?;
    let bare_pid = bare.pid;
    let ceiling = read_lean(bare.addr, 0, behind, bare_pid, "bare tonic server").await;
    bare.stop().await;
    let ceiling = ceiling?;

    let rate = lean.rate();
    let r = report::ratio(rate, ceiling.rate());
    let rows = vec![
        Row::new(
            NAME,
            format!(
                "resume {} behind (lean client)",
                report::group(behind as i64)
            ),
            fmt_rate(rate),
        )
        .baseline(format!(
            "bare tonic {} (same client)",
            fmt_rate(ceiling.rate())
        ))
        .ratio(r)
        .target("≥ 300,000/s", rate >= 300_000.0, ctx.tiny),
        Row::new(
            NAME,
            "lean client CPU",
            format!(
                "{:.0} % of a core ({:.2} µs/event)",
                100.0 * lean.client_share(),
                lean.client_cpu_us as f64 / lean.received.max(1) as f64
            ),
        )
        .baseline(format!(
            "paygate CPU {} ms, first event after {}",
            lean.server_cpu_ms.unwrap_or(0),
            fmt_us(lean.first_us)
        )),
        Row::new(NAME, "same range, full prost client", fmt_rate(full.rate())).baseline(format!(
            "client CPU {:.0} % of a core",
            100.0 * full.client_share()
        )),
        Row::new(
            NAME,
            "log fill through webhooks (wrk)",
            fmt_rate(fill.rate()),
        ),
        Row::new(
            NAME,
            "events read",
            format!(
                "{} of {} (lean), {} (full)",
                report::group(lean.received as i64),
                report::group(behind as i64),
                report::group(full.received as i64)
            ),
        )
        .target(
            "all",
            lean.received == behind && full.received == behind,
            false,
        ),
    ];
    let mut rows = rows;
    rows.extend(Row::failures(
        NAME,
        "fill: non-2xx or failed requests",
        fill.failed(),
    ));
    let chart_series = |read: &Read, name: &str| {
        Series::new(
            name,
            std::iter::once((0.0, 0.0))
                .chain(read.marks.iter().map(|(s, c)| (s * 1000.0, *c as f64)))
                .collect(),
        )
    };
    Ok(ScenarioReport {
        figures: json!({
            "events_requested": n,
            "events_behind": behind,
            "fill": fill.json(),
            "paygate_lean": lean.json(),
            "paygate_full_decode": full.json(),
            "bare_lean": ceiling.json(),
            "ratio_to_bare": report::round3(r),
        }),
        rows,
        notes: vec![
            "Events are CREATED webhooks for references paygate does not know (no payment \
             snapshot), stored through the webhook endpoint; the newest are also in paygate's \
             in-memory window, the older ones come from the database. The lean client decodes \
             only sequence and reference (prost skips the rest) on the load CPU; its CPU share \
             shows whether it could be the bottleneck. The bare tonic server streams the same \
             number of pre-built events of the same shape: the transport's ceiling on the \
             server CPU."
                .into(),
        ],
        ratios: vec![Ratio::higher(
            "catchup_to_bare",
            r,
            "catch-up: paygate events/s / bare tonic events/s",
        )],
        charts: vec![(
            "catch-up.progress".into(),
            Chart {
                title: format!(
                    "catch-up: events received after resuming {} behind",
                    report::group(behind as i64)
                ),
                x_label: "ms since the request".into(),
                y_label: "events received".into(),
                series: vec![
                    chart_series(&lean, "paygate, lean client"),
                    chart_series(&full, "paygate, full prost client"),
                    chart_series(&ceiling, "bare tonic server, lean client"),
                ],
                log_x: false,
                y_from_zero: true,
                legend_top: false,
            },
        )],
    })
}

/// Fills paygate's log through webhooks and reads it back twice. Returns the fill, the lean and
/// the full read, and how many events were behind.
async fn on_paygate(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
) -> anyhow::Result<(wrk::WrkResult, Read, Read, u64)> {
    let n = ctx.sizes.catchup_events;
    let prefix = format!("cu-{}-", ctx.run_id);
    // A live subscriber notes the first and last sequence of the fill.
    let stop = CancellationToken::new();
    let mut stream = grpc::lean_stream(
        grpc::channel(paygate.grpc_addr).await?,
        StreamPaymentEventsRequest::default(),
    )
    .await?;
    let seen = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, prefix, seen) = (stop.clone(), prefix.clone(), seen.clone());
        tokio::spawn(async move {
            let (mut first, mut last, mut count) = (None, 0u64, 0u64);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    item = stream.message() => match item {
                        Ok(Some(r)) => {
                            if let Some(e) = r.event.filter(|e| e.reference.starts_with(prefix.as_bytes())) {
                                first.get_or_insert(e.sequence);
                                last = last.max(e.sequence);
                                count += 1;
                                seen.store(count, Ordering::Release);
                            }
                        }
                        _ => break,
                    },
                }
            }
            (first, last, count)
        })
    };
    let before = paygate.webhook_counters().await?;
    let file = ctx.dir.join("catch-up-fill.requests");
    webhook::write_replay_file(
        &file,
        &Signer::new(paygate.http_addr, SECRET),
        &prefix,
        0,
        wrk::file_len(n, FILL_CONNECTIONS, ctx.sizes.wrk_threads),
    )?;
    let fill = wrk::replay(
        ctx,
        &format!("{NAME} filling the log with {n}"),
        paygate.http_addr,
        &file,
        n,
        FILL_CONNECTIONS,
        &Counter {
            metrics: paygate.http_addr,
            name: "paygate_webhooks_accepted_total",
        },
        paygate.pid,
    )
    .await;
    let _ = std::fs::remove_file(&file);
    let fill = fill?;
    let stored = paygate
        .settled_counters()
        .await?
        .since(&before)
        .appended_webhook;
    // The watcher has every stored event once it has as many as were stored (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::Acquire) < stored && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let (first, last, watched) = watcher.await?;
    let first = first.context("the live subscriber saw no event of the fill")?;
    anyhow::ensure!(
        watched == stored,
        "the live subscriber saw {watched} events of the fill, paygate stored {stored}"
    );
    let lean = read_lean(paygate.grpc_addr, first - 1, last, paygate.pid, "paygate").await?;
    let full = read_full(paygate.grpc_addr, first - 1, last).await?;
    Ok((fill, lean, full, stored))
}

/// Reads from `after` until the event with sequence `until` with the lean client.
async fn read_lean(
    addr: SocketAddr,
    after: u64,
    until: u64,
    server_pid: u32,
    label: &str,
) -> anyhow::Result<Read> {
    let channel = grpc::channel(addr).await?;
    let progress = Progress::start(format!("{NAME} {label}: lean read"), Duration::ZERO);
    let server_before = machine::proc_stat(server_pid).map(|s| s.cpu_ms);
    let cpu_before = machine::own_cpu_us();
    let requested = Instant::now();
    let mut stream = grpc::lean_stream(
        channel,
        StreamPaymentEventsRequest {
            after_sequence: Some(after),
            ..Default::default()
        },
    )
    .await?;
    let mut read = Reader::new(requested);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let item = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("catch-up did not finish within 300 s")??
            .with_context(|| format!("the stream ended after {} events", read.received))?;
        if let Some(e) = item.event {
            read.event(&progress);
            if e.sequence >= until {
                break;
            }
        }
    }
    let client_cpu_us = machine::own_cpu_us().saturating_sub(cpu_before);
    let server_cpu_ms = match (server_before, machine::proc_stat(server_pid)) {
        (Some(b), Some(a)) => Some(a.cpu_ms.saturating_sub(b)),
        _ => None,
    };
    progress.finish();
    Ok(read.done(client_cpu_us, server_cpu_ms))
}

/// The same with full prost messages (what an ordinary tonic subscriber decodes).
async fn read_full(addr: SocketAddr, after: u64, until: u64) -> anyhow::Result<Read> {
    let mut client = PaymentServiceClient::new(grpc::channel(addr).await?);
    let progress = Progress::start(format!("{NAME} paygate: full read"), Duration::ZERO);
    let cpu_before = machine::own_cpu_us();
    let requested = Instant::now();
    let mut stream = client
        .stream_payment_events(proto::StreamPaymentEventsRequest {
            after_sequence: Some(after),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut read = Reader::new(requested);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let item = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("catch-up did not finish within 300 s")??
            .with_context(|| format!("the stream ended after {} events", read.received))?;
        if let Some(ItemKind::Event(e)) = item.kind {
            read.event(&progress);
            if e.sequence >= until {
                break;
            }
        }
    }
    let client_cpu_us = machine::own_cpu_us().saturating_sub(cpu_before);
    progress.finish();
    Ok(read.done(client_cpu_us, None))
}

/// Counts events and notes the time at every 1,000th.
struct Reader {
    requested: Instant,
    received: u64,
    first: Option<Duration>,
    marks: Vec<(f64, u64)>,
}

impl Reader {
    fn new(requested: Instant) -> Self {
        Self {
            requested,
            received: 0,
            first: None,
            marks: Vec::new(),
        }
    }

    /// Counts one event.
    fn event(&mut self, progress: &Progress) {
        self.received += 1;
        if self.first.is_none() {
            self.first = Some(self.requested.elapsed());
        }
        if self.received.is_multiple_of(1_000) {
            self.marks.push((
                report::round3(self.requested.elapsed().as_secs_f64()),
                self.received,
            ));
            progress.add(1_000);
        }
    }

    fn done(mut self, client_cpu_us: u64, server_cpu_ms: Option<u64>) -> Read {
        let secs = self.requested.elapsed().as_secs_f64();
        self.marks.push((report::round3(secs), self.received));
        Read {
            received: self.received,
            secs,
            first_us: self.first.map_or(0.0, |d| d.as_secs_f64() * 1e6),
            marks: self.marks,
            client_cpu_us,
            server_cpu_ms,
        }
    }
}
