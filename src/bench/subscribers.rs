//! subscribers: idle StreamPaymentEvents streams held open over 100 connections; the server's
//! resident memory per stream (VmRSS of this process before and after), paygate against the bare
//! tonic server. The client holding the streams runs in a child process when a paygate binary is
//! at hand, so only server memory is counted.

use std::time::Duration;

use serde_json::json;

use super::{
    bare::BareServer,
    machine,
    progress::Progress,
    report::{self, Row, ScenarioReport},
    streams::{self, ChildStreams, Held},
    target::{Backend, Paygate},
    Ctx,
};

const NAME: &str = "subscribers";

/// Who holds the streams.
enum Holder {
    Child(ChildStreams),
    Local(Held),
}

impl Holder {
    fn counts(&self) -> (usize, usize) {
        match self {
            Self::Child(c) => (c.opened, c.failed),
            Self::Local(h) => (h.opened, h.failed),
        }
    }

    async fn close(self) {
        match self {
            Self::Child(c) => c.close().await,
            Self::Local(h) => h.close().await,
        }
    }
}

async fn hold(
    ctx: &Ctx<'_>,
    addr: std::net::SocketAddr,
    n: usize,
    connections: usize,
) -> anyhow::Result<Holder> {
    match streams::client_exe(ctx.options.client_exe.as_ref()) {
        Some(exe) => Ok(Holder::Child(
            ChildStreams::spawn(&exe, addr, n, connections).await?,
        )),
        None => Ok(Holder::Local(streams::open(addr, n, connections).await?)),
    }
}

struct Measure {
    per_stream: f64,
    delta: i64,
    opened: usize,
    failed: usize,
}

async fn measure(
    ctx: &Ctx<'_>,
    label: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(Measure, Holder)> {
    let n = ctx.sizes.streams;
    let before = settle_rss().await?;
    let progress = Progress::start(format!("{NAME} {label}: opening {n}"), Duration::ZERO);
    let holder = hold(ctx, addr, n, ctx.sizes.stream_connections).await;
    let holder = match holder {
        Ok(h) => h,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let (opened, failed) = holder.counts();
    progress.add(opened as u64);
    progress.finish();
    let after = settle_rss().await?;
    let delta = i64::try_from(after).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(0);
    Ok((
        Measure {
            per_stream: delta as f64 / opened.max(1) as f64,
            delta,
            opened,
            failed,
        },
        holder,
    ))
}

/// RSS after a short pause (lets the server finish setting the streams up).
async fn settle_rss() -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    machine::rss_bytes().ok_or_else(|| anyhow::anyhow!("cannot read VmRSS from /proc/self/status"))
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "subscribers").await?;
    let bare = BareServer::start(&ctx.server).await;
    let bare = match bare {
        Ok(b) => b,
        Err(e) => {
            paygate.stop().await?;
            return Err(e);
        }
    };
    let result = measure_both(ctx, &paygate, &bare).await;
    bare.stop();
    paygate.stop().await?;
    let (pg, bare_m, mode) = result?;
    let n = ctx.sizes.streams;
    let r = report::ratio(pg.per_stream, bare_m.per_stream);
    let kib = |b: f64| format!("{:.2} KiB/stream", b / 1024.0);
    let rows = vec![
        Row::new(
            NAME,
            "paygate streams held",
            report::group(pg.opened as i64),
        )
        .target(
            format!("{} open", report::group(n as i64)),
            pg.opened >= n && pg.failed == 0,
            ctx.tiny,
        ),
        Row::new(NAME, "paygate memory per stream", kib(pg.per_stream))
            .baseline(format!("bare tonic {}", kib(bare_m.per_stream)))
            .ratio(r)
            .target("≤ 1.5 × bare", r <= 1.5, ctx.tiny),
    ];
    let mut notes = vec![format!(
        "ΔVmRSS of the server process after opening the streams (1 s settle), divided by the \
         streams opened; paygate is measured first, then the bare server with paygate's streams \
         still open (so neither reuses the other's freed memory). Client: {mode}."
    )];
    if mode != "child process" {
        notes.push(
            "The client ran in this process, so ΔRSS includes the client's per-stream memory on \
             both sides (the ratio is diluted towards 1; the difference per stream is exact)."
                .into(),
        );
    }
    Ok(ScenarioReport {
        figures: json!({
            "streams": n,
            "connections": ctx.sizes.stream_connections,
            "client": mode,
            "paygate": {
                "opened": pg.opened, "failed": pg.failed,
                "rss_delta_bytes": pg.delta,
                "bytes_per_stream": report::round1(pg.per_stream),
            },
            "bare": {
                "opened": bare_m.opened, "failed": bare_m.failed,
                "rss_delta_bytes": bare_m.delta,
                "bytes_per_stream": report::round1(bare_m.per_stream),
            },
            "ratio": report::round3(r),
            "difference_bytes_per_stream": report::round1(pg.per_stream - bare_m.per_stream),
        }),
        rows,
        notes,
    })
}

async fn measure_both(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
    bare: &BareServer,
) -> anyhow::Result<(Measure, Measure, &'static str)> {
    // Warm both servers up (one-off allocations are not per-stream costs).
    for addr in [paygate.grpc_addr, bare.addr] {
        streams::open(addr, 8, 2).await?.close().await;
    }
    let mode = match streams::client_exe(ctx.options.client_exe.as_ref()) {
        Some(_) => "child process",
        None => "in-process",
    };
    let (pg, pg_holder) = measure(ctx, "paygate", paygate.grpc_addr).await?;
    let bare_result = measure(ctx, "bare tonic", bare.addr).await;
    pg_holder.close().await;
    let (bare_m, bare_holder) = bare_result?;
    bare_holder.close().await;
    Ok((pg, bare_m, mode))
}
