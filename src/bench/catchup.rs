//! catch-up: the log is filled with N events (through the group-commit writer, as webhooks
//! would), then one subscriber resumes with `after_sequence` N events behind and reads until it
//! has them all.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;

use super::{
    progress::Progress,
    report::{self, fmt_rate, fmt_us, Row, ScenarioReport},
    streams,
    target::{Backend, Paygate},
    Ctx,
};
use crate::{
    domain::{Currency, EventName, EventSource, Money, NewEvent},
    grpc::proto::{
        self, payment_service_client::PaymentServiceClient, stream_payment_events_response::Kind,
    },
    store::Change,
};

const NAME: &str = "catch-up";
/// Concurrent committers while filling.
const FILLERS: u64 = 256;

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "catch-up").await?;
    let result = run_on(ctx, &paygate).await;
    paygate.stop().await?;
    result
}

async fn run_on(ctx: &Ctx<'_>, paygate: &Paygate) -> anyhow::Result<ScenarioReport> {
    let n = ctx.sizes.catchup_events;
    let store = paygate.payments.event_log().store().clone();
    let start_seq = store.latest_sequence().await?;

    // Fill, on the server runtime, through the writer.
    let progress = Progress::start(format!("{NAME} filling the log with {n}"), Duration::ZERO);
    let log = paygate.payments.event_log().clone();
    let (p, run_id) = (progress.clone(), ctx.run_id.clone());
    let fill_started = Instant::now();
    let filled = ctx
        .server
        .spawn(async move {
            let next = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..FILLERS {
                let (log, next, p, run_id) = (log.clone(), next.clone(), p.clone(), run_id.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return anyhow::Ok(());
                        }
                        log.commit(change(&run_id, i)).await?;
                        p.add(1);
                    }
                }));
            }
            for t in tasks {
                t.await??;
            }
            anyhow::Ok(())
        })
        .await;
    progress.finish();
    filled??;
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let end_seq = store.latest_sequence().await?;
    anyhow::ensure!(
        end_seq >= start_seq + n,
        "the log grew by {} events, not {n}",
        end_seq - start_seq
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Resume n events behind.
    let mut client = PaymentServiceClient::new(streams::channel(paygate.grpc_addr).await?);
    let progress = Progress::start(format!("{NAME} resuming {n} behind"), Duration::ZERO);
    let requested = Instant::now();
    let mut stream = client
        .stream_payment_events(proto::StreamPaymentEventsRequest {
            after_sequence: Some(start_seq),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut received = 0u64;
    let mut first = None;
    let mut marks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let item = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("catch-up did not finish within 300 s")??;
        let Some(item) = item else {
            anyhow::bail!("the stream ended after {received} events");
        };
        if let Some(Kind::Event(e)) = item.kind {
            received += 1;
            if first.is_none() {
                first = Some(requested.elapsed());
            }
            if received.is_multiple_of(10_000) {
                marks.push(report::round3(requested.elapsed().as_secs_f64()));
                progress.add(10_000);
            }
            if e.sequence >= end_seq {
                break;
            }
        }
    }
    let took = requested.elapsed();
    progress.add(received % 10_000);
    progress.finish();
    let rate = received as f64 / took.as_secs_f64();
    let first_us = first.map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let rows = vec![
        Row::new(
            NAME,
            format!("resume {} behind", report::group(n as i64)),
            fmt_rate(rate),
        )
        .baseline(format!("first event after {}", fmt_us(first_us)))
        .target("≥ 200,000/s", rate >= 200_000.0, ctx.tiny),
        Row::new(
            NAME,
            "log fill through the writer",
            fmt_rate(n as f64 / fill_secs),
        ),
    ];
    Ok(ScenarioReport {
        figures: json!({
            "events_behind": n,
            "received": received,
            "seconds": report::round3(took.as_secs_f64()),
            "per_s": report::round1(rate),
            "first_event_us": report::round1(first_us),
            "seconds_at_each_10000": marks,
            "fill": {
                "committers": FILLERS,
                "seconds": report::round3(fill_secs),
                "per_s": report::round1(n as f64 / fill_secs),
            },
        }),
        rows,
        notes: vec![
            "Events are CREATED webhooks for references paygate does not know (no payment \
             snapshot); the newest events are also in paygate's in-memory window, the older ones \
             come from the database."
                .into(),
        ],
    })
}

fn change(run_id: &str, i: u64) -> Change {
    let reference = format!("cu-{run_id}-{i}");
    Change {
        reference: reference.clone(),
        events: vec![NewEvent {
            reference,
            psp_reference: format!("psp-{i}"),
            name: EventName::Created,
            amount: Money::new(Currency::Nok, 1000),
            timestamp: chrono::Utc::now(),
            idempotency_key: None,
            success: true,
            source: EventSource::Webhook,
        }],
        confirm: true,
        ..Default::default()
    }
}
