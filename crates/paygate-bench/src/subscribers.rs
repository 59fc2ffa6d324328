//! subscribers: idle `StreamPaymentEvents` streams held open over 100 connections; the server
//! process's resident memory per stream, paygate against the bare tonic server (the same
//! `PaymentService`, a stream that never yields), both measured in the same run, each in a
//! process of its own on the server CPU. The streams are held by a child process on the load
//! CPU (`paygate-bench __stream-client`), one per server.
//!
//! The connections are opened first, then the streams in equal steps with the server's RSS read
//! after each (a short settle). Memory per stream is the least-squares slope of RSS over the
//! stream count, leaving out the first step (the first streams reuse heap the process had already
//! freed, which would flatter the figure); the chart shows (RSS − RSS with no streams) / streams
//! at every step.

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};

use crate::{
    machine,
    paygate::{Backend, Paygate},
    plots::{Chart, Series},
    progress::Progress,
    report::{self, Ratio, Row, ScenarioReport},
    servers::{Kind, ServerProc},
    streams::{ChildStreams, Held},
    Ctx,
};

const NAME: &str = "subscribers";

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

    /// (streams, KiB per stream above the RSS with the connections but no streams).
    fn per_stream_curve(&self) -> Vec<(f64, f64)> {
        let Some(&(_, base)) = self.points.first() else {
            return Vec::new();
        };
        self.points
            .iter()
            .skip(1)
            .filter(|(n, _)| *n > 0)
            .map(|(n, rss)| (*n as f64, (*rss as f64 - base as f64) / *n as f64 / 1024.0))
            .collect()
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
    pid: u32,
) -> anyhow::Result<(Measure, ChildStreams)> {
    let (n, steps) = (ctx.sizes.streams, ctx.sizes.stream_steps.max(3));
    let before_connections = settle_rss(ctx, pid).await?;
    let mut holder = ChildStreams::spawn(&ctx.layout, addr, ctx.sizes.stream_connections).await?;
    let progress = Progress::start(format!("{NAME} {label}: opening {n}"), Duration::ZERO);
    let mut points = vec![(0, settle_rss(ctx, pid).await?)];
    for step in 0..steps {
        let want = n * (step + 1) / steps - n * step / steps;
        if let Err(e) = holder.open(want).await {
            progress.finish();
            holder.close().await;
            return Err(e);
        }
        progress.add(want as u64);
        points.push((holder.opened, settle_rss(ctx, pid).await?));
    }
    progress.finish();
    let last = points.last().map_or(before_connections, |p| p.1);
    let delta = last as f64 - before_connections as f64;
    Ok((
        Measure {
            per_stream: slope(&points[2..]),
            average: delta / holder.opened.max(1) as f64,
            opened: holder.opened,
            failed: holder.failed,
            points,
            before_connections,
        },
        holder,
    ))
}

/// The server's RSS after a short pause (lets it finish setting the streams up).
async fn settle_rss(ctx: &Ctx<'_>, pid: u32) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_secs_f64(ctx.sizes.stream_settle_secs)).await;
    machine::proc_stat(pid)
        .map(|s| s.rss)
        .ok_or_else(|| anyhow::anyhow!("cannot read the RSS of process {pid}"))
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "subscribers", &[]).await?;
    let bare =
        match ServerProc::start(&ctx.layout, Kind::Bare, &[], &ctx.dir.join("bare.log")).await {
            Ok(b) => b,
            Err(e) => {
                paygate.stop().await;
                return Err(e);
            }
        };
    let result = measure_both(ctx, &paygate, &bare).await;
    bare.stop().await;
    paygate.stop().await;
    let (pg, bare_m) = result?;
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
            .target("≤ 1.3× bare", r <= 1.3, ctx.tiny),
        Row::new(NAME, "same, averaged incl. connections", kib(pg.average))
            .baseline(format!("bare tonic {}", kib(bare_m.average)))
            .ratio(r_avg),
    ];
    let notes = vec![format!(
        "Server RSS (sysinfo, the server process only) read after the {} connections and after \
         each of {} equal steps of streams ({} s settle each); memory per stream is the slope \
         over the steps after the first. The two servers are separate processes, measured one \
         after the other; the streams are held by a child process on the load CPU.",
        ctx.sizes.stream_connections, ctx.sizes.stream_steps, ctx.sizes.stream_settle_secs
    )];
    let curve = |m: &Measure, name: &str| Series::new(name, m.per_stream_curve());
    Ok(ScenarioReport {
        figures: json!({
            "streams": n,
            "connections": ctx.sizes.stream_connections,
            "steps": ctx.sizes.stream_steps,
            "paygate": pg.json(),
            "bare": bare_m.json(),
            "ratio_marginal": report::round3(r),
            "ratio_average": report::round3(r_avg),
            "difference_bytes_per_stream": report::round1(pg.per_stream - bare_m.per_stream),
        }),
        rows,
        notes,
        ratios: vec![Ratio::lower(
            "subscribers_memory_ratio",
            r,
            "subscribers: paygate memory per stream / bare tonic's",
        )],
        charts: vec![(
            "subscribers.memory-per-stream".into(),
            Chart {
                title: "subscribers: server memory per idle stream".into(),
                x_label: "streams open".into(),
                y_label: "KiB per stream (RSS above 0 streams)".into(),
                series: vec![curve(&pg, "paygate"), curve(&bare_m, "bare tonic server")],
                log_x: false,
                y_from_zero: true,
                legend_top: false,
            },
        )],
    })
}

async fn measure_both(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
    bare: &ServerProc,
) -> anyhow::Result<(Measure, Measure)> {
    // Warm both servers up (one-off allocations are not per-stream costs).
    for addr in [paygate.grpc_addr, bare.addr] {
        let mut warm = Held::connect(addr, 2).await?;
        warm.open(8).await;
        warm.close().await;
    }
    let (pg, pg_holder) = measure(ctx, "paygate", paygate.grpc_addr, paygate.pid).await?;
    pg_holder.close().await;
    let (bare_m, bare_holder) = measure(ctx, "bare tonic", bare.addr, bare.pid).await?;
    bare_holder.close().await;
    Ok((pg, bare_m))
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
