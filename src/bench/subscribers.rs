//! subscribers: idle StreamPaymentEvents streams held open over 100 connections; the server's
//! resident memory per stream, paygate against the bare tonic server, read from this process's
//! VmRSS. The client holding the streams runs in a child process when a paygate binary is at
//! hand, so only server memory is counted.
//!
//! The connections are opened first, then the streams in equal steps with VmRSS read after each
//! (a short settle). Memory per stream is the least-squares slope of VmRSS over the stream count,
//! leaving out the first step: the first streams reuse heap the process freed earlier (it is
//! resident, so RSS does not move), which would flatter whichever server is measured first.

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};

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
    async fn connect(ctx: &Ctx<'_>, addr: SocketAddr, connections: usize) -> anyhow::Result<Self> {
        Ok(match streams::client_exe(ctx.options.client_exe.as_ref()) {
            Some(exe) => Self::Child(ChildStreams::spawn(&exe, addr, connections).await?),
            None => Self::Local(Held::connect(addr, connections).await?),
        })
    }

    async fn open(&mut self, n: usize) -> anyhow::Result<()> {
        match self {
            Self::Child(c) => c.open(n).await,
            Self::Local(h) => {
                h.open(n).await;
                Ok(())
            }
        }
    }

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

struct Measure {
    /// Marginal bytes per stream (slope, first step left out).
    per_stream: f64,
    /// ΔRSS from before the connections to the end, divided by the streams (connections and
    /// the first step included).
    average: f64,
    opened: usize,
    failed: usize,
    /// (streams open, RSS bytes) after connecting and after each step.
    points: Vec<(usize, u64)>,
    before_connections: u64,
}

impl Measure {
    fn json(&self) -> Value {
        json!({
            "opened": self.opened,
            "failed": self.failed,
            "bytes_per_stream_marginal": report::round1(self.per_stream),
            "bytes_per_stream_average_incl_connections": report::round1(self.average),
            "rss_before_connections": self.before_connections,
            "rss_after_connections_and_each_step": self.points
                .iter()
                .map(|(n, rss)| json!({"streams": n, "rss_bytes": rss}))
                .collect::<Vec<_>>(),
        })
    }
}

/// Least-squares slope of y over x.
fn slope(points: &[(usize, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxy: f64 = points
        .iter()
        .map(|p| (p.0 as f64 - mx) * (p.1 as f64 - my))
        .sum();
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    if sxx == 0.0 {
        f64::NAN
    } else {
        sxy / sxx
    }
}

async fn measure(
    ctx: &Ctx<'_>,
    label: &str,
    addr: SocketAddr,
) -> anyhow::Result<(Measure, Holder)> {
    let (n, steps) = (ctx.sizes.streams, ctx.sizes.stream_steps.max(3));
    let before_connections = settle_rss(ctx).await?;
    let mut holder = Holder::connect(ctx, addr, ctx.sizes.stream_connections).await?;
    let progress = Progress::start(format!("{NAME} {label}: opening {n}"), Duration::ZERO);
    let mut points = vec![(0, settle_rss(ctx).await?)];
    for step in 0..steps {
        let want = n * (step + 1) / steps - n * step / steps;
        if let Err(e) = holder.open(want).await {
            progress.finish();
            holder.close().await;
            return Err(e);
        }
        let (opened, _) = holder.counts();
        progress.add(want as u64);
        points.push((opened, settle_rss(ctx).await?));
    }
    progress.finish();
    let (opened, failed) = holder.counts();
    let last = points.last().map_or(before_connections, |p| p.1);
    let delta = last as f64 - before_connections as f64;
    Ok((
        Measure {
            per_stream: slope(&points[2..]),
            average: delta / opened.max(1) as f64,
            opened,
            failed,
            points,
            before_connections,
        },
        holder,
    ))
}

/// RSS after a short pause (lets the server finish setting the streams up).
async fn settle_rss(ctx: &Ctx<'_>) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_secs_f64(ctx.sizes.stream_settle_secs)).await;
    machine::rss_bytes().ok_or_else(|| anyhow::anyhow!("cannot read VmRSS from /proc/self/status"))
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "subscribers").await?;
    let bare = match BareServer::start(&ctx.server).await {
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
    let r_avg = report::ratio(pg.average, bare_m.average);
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
        Row::new(NAME, "same, averaged incl. connections", kib(pg.average))
            .baseline(format!("bare tonic {}", kib(bare_m.average)))
            .ratio(r_avg),
    ];
    let mut notes = vec![format!(
        "Server VmRSS read after the {} connections and after each of {} equal steps of \
         streams ({} s settle each); memory per stream is the slope over the steps after the \
         first. paygate is measured first, then the bare server with paygate's streams still \
         open. Client: {mode}.",
        ctx.sizes.stream_connections, ctx.sizes.stream_steps, ctx.sizes.stream_settle_secs
    )];
    if mode != "child process" {
        notes.push(
            "The client ran in this process, so the figures include the client's per-stream \
             memory on both sides (the ratio is diluted towards 1; the difference is exact)."
                .into(),
        );
    }
    Ok(ScenarioReport {
        figures: json!({
            "streams": n,
            "connections": ctx.sizes.stream_connections,
            "steps": ctx.sizes.stream_steps,
            "client": mode,
            "paygate": pg.json(),
            "bare": bare_m.json(),
            "ratio_marginal": report::round3(r),
            "ratio_average": report::round3(r_avg),
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
        let mut warm = Held::connect(addr, 2).await?;
        warm.open(8).await;
        warm.close().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let s = slope(&[(0, 100), (10, 200), (20, 300)]);
        assert!((s - 10.0).abs() < 1e-9);
        assert!(slope(&[(1, 1)]).is_nan());
    }
}
