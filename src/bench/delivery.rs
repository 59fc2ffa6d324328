//! delivery-latency: webhooks at a fixed rate; for every event, the time from writing its POST
//! to its arrival at each of the live subscribers (separate connections). Baseline: an
//! in-process tokio broadcast channel with as many receivers, at the same rate, on the server
//! runtime.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{
    progress::Progress,
    report::{self, fmt_us, Latency, Row, ScenarioReport},
    streams,
    target::{Backend, Paygate, SECRET},
    webhook::{self, Signer},
    Ctx,
};
use crate::grpc::proto::{
    self, payment_service_client::PaymentServiceClient, stream_payment_events_response::Kind,
};

const NAME: &str = "delivery-latency";

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let sizes = &ctx.sizes;
    let rate = sizes.delivery_rate;
    let total = (rate as f64 * (sizes.delivery_warmup + sizes.delivery_secs)).round() as u64;
    let warm_n = (rate as f64 * sizes.delivery_warmup).round() as u64;
    let subscribers = sizes.delivery_subscribers;

    let baseline = broadcast_baseline(ctx, subscribers, rate, total, warm_n).await?;

    let paygate = Paygate::start(ctx, &Backend::Sqlite, "delivery").await?;
    let result = through_paygate(ctx, &paygate, subscribers, rate, total, warm_n).await;
    paygate.stop().await?;
    let measured = result?;

    let b = Latency::of(&baseline);
    let d = Latency::of(&measured.latency);
    let post = Latency::of(&measured.post.latency);
    let expected = measured.expected;
    let rows = vec![
        Row::new(NAME, "webhook → subscriber p50", fmt_us(d.p50_us))
            .baseline(format!("broadcast p50 {}", fmt_us(b.p50_us)))
            .target("≤ 1 ms", d.p50_us <= 1_000.0, ctx.tiny),
        Row::new(NAME, "webhook → subscriber p99", fmt_us(d.p99_us))
            .baseline(format!("broadcast p99 {}", fmt_us(b.p99_us)))
            .target("≤ 3 ms", d.p99_us <= 3_000.0, ctx.tiny),
        Row::new(NAME, "webhook POST (2xx) latency", post.short()),
        Row::new(
            NAME,
            "deliveries received",
            format!(
                "{} of {}",
                report::group(i64::try_from(measured.received).unwrap_or(i64::MAX)),
                report::group(i64::try_from(expected).unwrap_or(i64::MAX))
            ),
        )
        .target("all", expected > 0 && measured.received >= expected, false),
    ];
    let mut rows = rows;
    rows.extend(Row::failures(
        NAME,
        "webhook POSTs failed",
        measured.post.failed(),
    ));
    Ok(ScenarioReport {
        figures: json!({
            "rate_per_s": rate,
            "subscribers": subscribers,
            "events": total,
            "warmup_events": warm_n,
            "post_connections": sizes.delivery_post_connections,
            "delivery": d,
            "post": measured.post.json(),
            "received": measured.received,
            "expected": expected,
            "baseline_broadcast": b,
        }),
        rows,
        notes: vec![format!(
            "Latency per (event, subscriber) pair, from the moment the POST is written to the \
             moment the subscriber's client has decoded the event; the first {warm_n} events are \
             warm-up. Each subscriber has its own HTTP/2 connection; the clients run on the load \
             runtime, so their decoding shares the load core with the webhook sender."
        )],
    })
}

struct Measured {
    latency: Histogram<u64>,
    post: webhook::LoadResult,
    received: u64,
    expected: u64,
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
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..total).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let stop = CancellationToken::new();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut client = PaymentServiceClient::new(streams::channel(paygate.grpc_addr).await?);
        let mut stream = client
            .stream_payment_events(proto::StreamPaymentEventsRequest::default())
            .await?
            .into_inner();
        let (prefix, sent, stop, received) =
            (prefix.clone(), sent.clone(), stop.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let _client = client;
            let mut h = report::histogram()?;
            let mut got = 0u64;
            while got < total {
                let item = tokio::select! {
                    () = stop.cancelled() => break,
                    item = stream.message() => item,
                };
                let Ok(Some(proto::StreamPaymentEventsResponse {
                    kind: Some(Kind::Event(e)),
                })) = item
                else {
                    if matches!(item, Ok(Some(_))) {
                        continue;
                    }
                    break;
                };
                let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let Some(n) = e
                    .reference
                    .strip_prefix(prefix.as_str())
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                got += 1;
                received.fetch_add(1, Ordering::Relaxed);
                let at = usize::try_from(n)
                    .ok()
                    .and_then(|i| sent.get(i))
                    .map_or(0, |s| s.load(Ordering::Acquire));
                if n >= warm_n && at > 0 {
                    report::record(&mut h, Duration::from_nanos(now.saturating_sub(at)));
                }
            }
            anyhow::Ok(h)
        }));
    }
    // Every subscriber task has taken its cursor before the first event.
    tokio::time::sleep(Duration::from_millis(300)).await;

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
        sent,
        base,
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
    stop.cancel();
    let mut latency = report::histogram()?;
    for t in tasks {
        report::merge(&mut latency, &t.await??)?;
    }
    Ok(Measured {
        latency,
        post,
        received: received.load(Ordering::Relaxed),
        expected,
    })
}

/// The same fan-out through a tokio broadcast channel inside the server runtime.
async fn broadcast_baseline(
    ctx: &Ctx<'_>,
    subscribers: usize,
    rate: u64,
    total: u64,
    warm_n: u64,
) -> anyhow::Result<Histogram<u64>> {
    let progress = Progress::start(
        format!("{NAME} baseline: broadcast → {subscribers}"),
        Duration::from_secs_f64(total as f64 / rate.max(1) as f64),
    );
    let p = progress.clone();
    let result = ctx
        .server
        .spawn(async move {
            let (tx, _) = broadcast::channel::<(u64, Instant)>(4096);
            let mut receivers = Vec::with_capacity(subscribers);
            for _ in 0..subscribers {
                let mut rx = tx.subscribe();
                receivers.push(tokio::spawn(async move {
                    let mut h = report::histogram()?;
                    loop {
                        match rx.recv().await {
                            Ok((n, at)) => {
                                if n >= warm_n {
                                    report::record(&mut h, at.elapsed());
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                    anyhow::Ok(h)
                }));
            }
            let period = 1_000_000_000 / rate.max(1);
            let start = tokio::time::Instant::now();
            for n in 0..total {
                tokio::time::sleep_until(start + Duration::from_nanos(n * period)).await;
                let _ = tx.send((n, Instant::now()));
                p.add(1);
            }
            drop(tx);
            let mut all = report::histogram()?;
            for r in receivers {
                report::merge(&mut all, &r.await??)?;
            }
            anyhow::Ok(all)
        })
        .await;
    progress.finish();
    result?
}
