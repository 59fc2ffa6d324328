//! delivery-latency: signed webhooks at a fixed rate (open loop, the suite's HTTP/1.1 client);
//! for every (event, subscriber) pair, the time from writing the event's POST to the moment that
//! subscriber's client has decoded it, with N live `StreamPaymentEvents` subscribers, each on a
//! connection of its own (lean decoding: sequence and reference only). Also from the 2xx answer
//! to the subscriber (negative when the event arrived first: counted, clamped to 0).
//!
//! Baseline in the same run: the SQLite durable floor at the same rate, over the same client:
//! its POST latency is the least a durable webhook can cost before anyone may be told about it.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    grpc::{self, StreamPaymentEventsRequest},
    paygate::{Backend, Paygate, SECRET},
    plots::{self, Chart},
    progress::Progress,
    report::{self, fmt_us, Latency, Ratio, Row, ScenarioReport},
    servers::{Kind, ServerProc, ENV_DB, ENV_SECRET},
    webhook::{self, Signer, Timeline},
    Ctx,
};

const NAME: &str = "delivery-latency";

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let sizes = &ctx.sizes;
    let rate = sizes.delivery_rate;
    let total = (rate as f64 * (sizes.delivery_warmup + sizes.delivery_secs)).round() as u64;
    let warm_n = (rate as f64 * sizes.delivery_warmup).round() as u64;
    let subscribers = sizes.delivery_subscribers;

    let floor = ServerProc::start(
        &ctx.layout,
        Kind::SqliteFloor,
        &[
            (ENV_SECRET, SECRET.to_owned()),
            (
                ENV_DB,
                ctx.dir.join("delivery-floor.db").display().to_string(),
            ),
        ],
        &ctx.dir.join("delivery-floor.log"),
    )
    .await?;
    let progress = Progress::start(
        format!("{NAME} SQLite floor at {rate}/s"),
        Duration::from_secs_f64(total as f64 / rate.max(1) as f64),
    );
    let floor_post = webhook::open_loop(
        Arc::new(Signer::new(floor.addr, SECRET)),
        format!("df-{}-", ctx.run_id),
        rate,
        total,
        sizes.delivery_post_connections,
        Timeline::new(0),
        warm_n,
        progress.clone(),
    )
    .await;
    progress.finish();
    floor.stop().await;
    let floor_post = floor_post?;

    let paygate = Paygate::start(ctx, &Backend::Sqlite, "delivery", &[]).await?;
    let result = through_paygate(ctx, &paygate, subscribers, rate, total, warm_n).await;
    paygate.stop().await;
    let m = result?;

    let d = Latency::of(&m.latency);
    let after = Latency::of(&m.after_2xx);
    let post = Latency::of(&m.post.latency);
    let fl = Latency::of(&floor_post.latency);
    let mut rows = vec![
        Row::new(NAME, "webhook → subscriber p50", fmt_us(d.p50_us))
            .baseline(format!("floor POST p50 {}", fmt_us(fl.p50_us)))
            .ratio(report::ratio(d.p50_us, fl.p50_us)),
        Row::new(NAME, "webhook → subscriber p99", fmt_us(d.p99_us))
            .baseline(format!("floor POST p99 {}", fmt_us(fl.p99_us)))
            .ratio(report::ratio(d.p99_us, fl.p99_us))
            .target("≤ 3 ms", d.p99_us <= 3_000.0, ctx.tiny),
        Row::new(NAME, "paygate webhook POST (2xx) latency", post.short())
            .baseline(format!("floor {}", fl.short())),
        Row::new(NAME, "2xx answer → subscriber", after.short()).baseline(format!(
            "{:.1} % arrived before the 2xx",
            100.0 * m.before_2xx as f64 / m.latency.len().max(1) as f64
        )),
        Row::new(
            NAME,
            "deliveries received",
            format!(
                "{} of {}",
                report::group(m.received as i64),
                report::group(m.expected as i64)
            ),
        )
        .target("all", m.expected > 0 && m.received >= m.expected, false),
    ];
    rows.extend(Row::failures(
        NAME,
        "paygate webhook POSTs failed",
        m.post.failed(),
    ));
    rows.extend(Row::failures(
        NAME,
        "floor webhook POSTs failed",
        floor_post.failed(),
    ));
    Ok(ScenarioReport {
        figures: json!({
            "rate_per_s": rate,
            "subscribers": subscribers,
            "events": total,
            "warmup_events": warm_n,
            "post_connections": sizes.delivery_post_connections,
            "delivery": d,
            "after_2xx": after,
            "arrived_before_2xx": m.before_2xx,
            "post": m.post.json(),
            "floor_post": floor_post.json(),
            "received": m.received,
            "expected": m.expected,
            "subscriber_client_cpu_ms": m.client_cpu_us / 1000,
            "cdf_us": {
                "delivery": report::percentiles(&m.latency),
                "paygate_post": report::percentiles(&m.post.latency),
                "floor_post": report::percentiles(&floor_post.latency),
            },
        }),
        rows,
        notes: vec![format!(
            "Latency per (event, subscriber) pair, from the moment the POST is written to the \
             moment the subscriber's client has decoded the event; the first {warm_n} events are \
             warm-up. Each subscriber has its own HTTP/2 connection and decodes only sequence and \
             reference; the clients and the webhook sender share the load CPU (the suite's \
             process used {:.0} ms of CPU during the paygate run). The floor is the SQLite \
             durable floor server at the same rate, same client.",
            m.client_cpu_us as f64 / 1000.0
        )],
        ratios: vec![
            Ratio::lower(
                "delivery_p99_to_post_p99",
                report::ratio(d.p99_us, post.p99_us),
                "delivery-latency: delivery p99 / paygate's own POST p99",
            ),
            Ratio::lower(
                "delivery_p99_to_floor_post_p99",
                report::ratio(d.p99_us, fl.p99_us),
                "delivery-latency: delivery p99 / floor POST p99",
            ),
        ],
        charts: vec![(
            "delivery-latency.latency-cdf".into(),
            Chart {
                title: format!("delivery-latency: {rate} webhooks/s, {subscribers} subscribers"),
                x_label: "latency (ms, log)".into(),
                y_label: "percentile".into(),
                series: vec![
                    plots::cdf(
                        "POST → subscriber (paygate)",
                        &report::percentiles(&m.latency),
                    ),
                    plots::cdf("POST 2xx (paygate)", &report::percentiles(&m.post.latency)),
                    plots::cdf(
                        "POST 2xx (SQLite floor)",
                        &report::percentiles(&floor_post.latency),
                    ),
                ],
                log_x: true,
                y_from_zero: true,
                legend_top: false,
            },
        )],
    })
}

struct Measured {
    latency: Histogram<u64>,
    after_2xx: Histogram<u64>,
    before_2xx: u64,
    post: webhook::LoadResult,
    received: u64,
    expected: u64,
    client_cpu_us: u64,
}

async fn through_paygate(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
    subscribers: usize,
    rate: u64,
    total: u64,
    warm_n: u64,
) -> anyhow::Result<Measured> {
    let prefix = format!("dl-{}-", ctx.run_id);
    let timeline = Timeline::new(total);
    let stop = CancellationToken::new();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut stream = grpc::lean_stream(
            grpc::channel(paygate.grpc_addr).await?,
            StreamPaymentEventsRequest::default(),
        )
        .await?;
        let (prefix, timeline, stop, received) = (
            prefix.clone(),
            timeline.clone(),
            stop.clone(),
            received.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = report::histogram()?;
            let mut after = report::histogram()?;
            let mut before_2xx = 0u64;
            let mut got = 0u64;
            while got < total {
                let item = tokio::select! {
                    () = stop.cancelled() => break,
                    item = stream.message() => item,
                };
                let event = match item {
                    Ok(Some(r)) => match r.event {
                        Some(e) => e,
                        None => continue,
                    },
                    _ => break,
                };
                let now = timeline.ns(Instant::now());
                let Some(n) = grpc::numbered(&event.reference, prefix.as_bytes()) else {
                    continue;
                };
                got += 1;
                received.fetch_add(1, Ordering::Relaxed);
                if n < warm_n {
                    continue;
                }
                if let Some(at) = Timeline::get(&timeline.sent, n) {
                    report::record(&mut h, Duration::from_nanos(now.saturating_sub(at)));
                }
                match Timeline::get(&timeline.acked, n) {
                    Some(acked) if acked <= now => {
                        report::record(&mut after, Duration::from_nanos(now - acked));
                    }
                    // Decoded before the sender read the 2xx.
                    _ => {
                        before_2xx += 1;
                        report::record(&mut after, Duration::from_nanos(1));
                    }
                }
            }
            anyhow::Ok((h, after, before_2xx))
        }));
    }
    // Every subscriber has its stream before the first event.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cpu_before = crate::machine::own_cpu_us();
    let progress = Progress::start(
        format!("{NAME} {rate}/s → {subscribers} subscribers"),
        Duration::from_secs_f64(total as f64 / rate.max(1) as f64),
    );
    let post = webhook::open_loop(
        Arc::new(Signer::new(paygate.http_addr, SECRET)),
        prefix,
        rate,
        total,
        ctx.sizes.delivery_post_connections,
        timeline,
        warm_n,
        progress.clone(),
    )
    .await;
    progress.finish();
    let post = post?;
    let expected = post.ok_total * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client_cpu_us = crate::machine::own_cpu_us().saturating_sub(cpu_before);
    stop.cancel();
    let mut latency = report::histogram()?;
    let mut after_2xx = report::histogram()?;
    let mut before_2xx = 0;
    for t in tasks {
        let (h, a, b) = t.await??;
        report::merge(&mut latency, &h)?;
        report::merge(&mut after_2xx, &a)?;
        before_2xx += b;
    }
    Ok(Measured {
        latency,
        after_2xx,
        before_2xx,
        post,
        received: received.load(Ordering::Relaxed),
        expected,
        client_cpu_us,
    })
}
