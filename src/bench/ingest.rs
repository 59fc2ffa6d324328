//! webhook-ingest: signed webhooks posted back to back over N connections; paygate verifies,
//! commits durably (group commit), applies and fans each out (one live subscriber counts them).
//! Baseline: the raw endpoint (verify + durable group-committed append, nothing else).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{
    progress::Progress,
    raw::RawServer,
    report::{self, fmt_rate, fmt_us, Row, ScenarioReport},
    streams,
    target::{self, Backend, Paygate, SECRET},
    webhook::{self, LoadResult, Signer},
    Ctx,
};
use crate::grpc::proto::{
    self, payment_service_client::PaymentServiceClient, stream_payment_events_response::Kind,
};

const NAME: &str = "webhook-ingest";

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let sizes = &ctx.sizes;
    let warmup = Duration::from_secs_f64(sizes.ingest_warmup);
    let window = Duration::from_secs_f64(sizes.ingest_secs);
    let conns = sizes.ingest_connections;

    // The raw baseline.
    let raw = RawServer::start(&ctx.server, &ctx.dir.join("raw-ingest.db"), SECRET).await?;
    let progress = Progress::start(format!("{NAME} raw baseline ×{conns}"), warmup + window);
    let load = webhook::closed_loop(
        Arc::new(Signer::new(raw.addr, SECRET)),
        format!("wr-{}-", ctx.run_id),
        conns,
        warmup,
        window,
        progress.clone(),
    )
    .await;
    progress.finish();
    let raw_rows = raw.rows().await;
    let raw_sync = raw.synchronous;
    raw.stop().await;
    let raw_load = load?;
    let raw_rows = raw_rows?;

    let sqlite = paygate_ingest(ctx, &Backend::Sqlite).await?;
    let postgres = match target::postgres_admin_url(ctx.options.database_url.as_deref()) {
        None => Err("PostgreSQL disabled (BENCH_DATABASE_URL=none)".to_owned()),
        Some(admin) => match target::postgres_durability(&admin).await {
            Err(e) => Err(format!("PostgreSQL not reachable at {admin}: {e:#}")),
            Ok(durability) => {
                let mut run = paygate_ingest(ctx, &Backend::Postgres(admin)).await?;
                run.durability = durability;
                Ok(run)
            }
        },
    };

    let raw_rate = raw_load.rate();
    let mut rows = vec![Row::new(
        NAME,
        "raw baseline (verify + group-committed append)",
        fmt_rate(raw_rate),
    )
    .baseline(format!(
        "2xx {}",
        report::Latency::of(&raw_load.latency).short()
    ))];
    let s_rate = sqlite.load.rate();
    let s_ratio = report::ratio(s_rate, raw_rate);
    let s_lat = report::Latency::of(&sqlite.load.latency);
    rows.push(Row::new(NAME, "SQLite accepted", fmt_rate(s_rate)).target(
        "≥ 15,000/s",
        s_rate >= 15_000.0,
        ctx.tiny,
    ));
    rows.push(
        Row::new(NAME, "SQLite vs raw baseline", fmt_rate(s_rate))
            .baseline(format!("raw {}", fmt_rate(raw_rate)))
            .ratio(s_ratio)
            .target("≥ 30 % of raw", s_ratio >= 0.30, ctx.tiny),
    );
    rows.push(
        Row::new(NAME, "SQLite 2xx p99", fmt_us(s_lat.p99_us))
            .baseline(format!(
                "raw p99 {}",
                fmt_us(report::Latency::of(&raw_load.latency).p99_us)
            ))
            .target("≤ 10 ms", s_lat.p99_us <= 10_000.0, ctx.tiny),
    );
    rows.push(sqlite.fanout_row());
    rows.extend(Row::failures(
        NAME,
        "raw: non-2xx or failed requests",
        raw_load.failed(),
    ));
    rows.extend(Row::failures(
        NAME,
        "SQLite: non-2xx or failed requests",
        sqlite.load.failed(),
    ));
    let mut notes = vec![format!(
        "{conns} keep-alive connections post back to back (like wrk -c{conns}); requests started \
         in the first {:.1} s are warm-up and not counted. Raw baseline PRAGMA synchronous = \
         {raw_sync} (2 = FULL).",
        warmup.as_secs_f64()
    )];
    match &postgres {
        Ok(pg) => {
            let rate = pg.load.rate();
            let lat = report::Latency::of(&pg.load.latency);
            rows.push(
                Row::new(NAME, "PostgreSQL accepted", fmt_rate(rate))
                    .ratio(report::ratio(rate, raw_rate))
                    .baseline(format!("raw (SQLite) {}", fmt_rate(raw_rate)))
                    .target("≥ 10,000/s", rate >= 10_000.0, ctx.tiny),
            );
            rows.push(
                Row::new(NAME, "PostgreSQL 2xx p99", fmt_us(lat.p99_us)).target(
                    "≤ 10 ms",
                    lat.p99_us <= 10_000.0,
                    ctx.tiny,
                ),
            );
            rows.push(pg.fanout_row());
            rows.extend(Row::failures(
                NAME,
                "PostgreSQL: non-2xx or failed requests",
                pg.load.failed(),
            ));
        }
        Err(why) => {
            rows.push(Row::new(NAME, "PostgreSQL accepted", "—").verdict("skipped"));
            notes.push(why.clone());
        }
    }
    Ok(ScenarioReport {
        figures: json!({
            "connections": conns,
            "warmup_s": sizes.ingest_warmup,
            "window_s": sizes.ingest_secs,
            "raw": {
                "load": raw_load.json(),
                "rows": raw_rows,
                "sqlite_synchronous": raw_sync,
            },
            "sqlite": sqlite.json(),
            "postgres": match &postgres {
                Ok(pg) => pg.json(),
                Err(why) => json!({"skipped": why}),
            },
            "ratio_sqlite_to_raw": report::round3(s_ratio),
        }),
        rows,
        notes,
    })
}

struct PaygateIngest {
    backend: &'static str,
    load: LoadResult,
    accepted: u64,
    duplicates: u64,
    rows: u64,
    delivered: u64,
    durability: Value,
}

impl PaygateIngest {
    fn json(&self) -> Value {
        json!({
            "load": self.load.json(),
            "accepted_by_paygate": self.accepted,
            "duplicates": self.duplicates,
            "rows_in_log": self.rows,
            "delivered_to_subscriber": self.delivered,
            "durability": self.durability,
        })
    }

    fn fanout_row(&self) -> Row {
        let complete = self.load.ok_total > 0
            && self.delivered >= self.load.ok_total
            && self.rows >= self.load.ok_total;
        Row::new(
            NAME,
            format!("{} stored / fanned out", self.backend),
            format!(
                "{} of {} 2xx in log, {} streamed",
                report::group(i64::try_from(self.rows).unwrap_or(i64::MAX)),
                report::group(i64::try_from(self.load.ok_total).unwrap_or(i64::MAX)),
                report::group(i64::try_from(self.delivered).unwrap_or(i64::MAX)),
            ),
        )
        .target("all", complete, false)
    }
}

async fn paygate_ingest(ctx: &Ctx<'_>, backend: &Backend) -> anyhow::Result<PaygateIngest> {
    let tag = format!("ingest-{}", backend.name());
    let paygate = Paygate::start(ctx, backend, &tag).await?;
    let result = ingest_on(ctx, &paygate, backend).await;
    paygate.stop().await?;
    result
}

async fn ingest_on(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
    backend: &Backend,
) -> anyhow::Result<PaygateIngest> {
    let sizes = &ctx.sizes;
    let prefix = format!("wi-{}-{}-", backend.name(), ctx.run_id);
    // One live subscriber: every accepted webhook must reach it.
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut client = PaymentServiceClient::new(streams::channel(paygate.grpc_addr).await?);
    let mut stream = client
        .stream_payment_events(proto::StreamPaymentEventsRequest::default())
        .await?
        .into_inner();
    let subscriber = {
        let (delivered, stop, prefix) = (delivered.clone(), stop.clone(), prefix.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    item = stream.message() => match item {
                        Ok(Some(proto::StreamPaymentEventsResponse { kind: Some(Kind::Event(e)) })) => {
                            if e.reference.starts_with(prefix.as_str()) {
                                delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let warmup = Duration::from_secs_f64(sizes.ingest_warmup);
    let window = Duration::from_secs_f64(sizes.ingest_secs);
    let progress = Progress::start(
        format!(
            "{NAME} paygate/{} ×{}",
            backend.name(),
            sizes.ingest_connections
        ),
        warmup + window,
    );
    let load = webhook::closed_loop(
        Arc::new(Signer::new(paygate.http_addr, SECRET)),
        prefix,
        sizes.ingest_connections,
        warmup,
        window,
        progress.clone(),
    )
    .await;
    progress.finish();
    let load = load?;
    // Let the subscriber drain (bounded).
    let deadline = Instant::now() + Duration::from_secs(15);
    while delivered.load(Ordering::Relaxed) < load.ok_total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = subscriber.await;
    let rows = paygate.payments.event_log().store().count_events().await?;
    Ok(PaygateIngest {
        backend: backend.name(),
        accepted: paygate.stats.accepted.load(Ordering::Relaxed),
        duplicates: paygate.stats.duplicate.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        rows,
        load,
        durability: match backend {
            Backend::Sqlite => {
                json!({"sqlite": "WAL, synchronous=FULL (set by paygate's Store::connect)"})
            }
            Backend::Postgres(_) => Value::Null,
        },
    })
}
