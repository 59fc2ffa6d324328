//! webhook-ingest: wrk replays N distinct, correctly signed webhooks (each once, HTTP/1.1
//! keep-alive, `wrk -t1 -c64`) against, in this order and in the same run:
//!
//! 1. `verify-only`: an axum endpoint that verifies and answers (no storage);
//! 2. the SQLite durable floor: verify + group-committed append (rusqlite, one writer thread,
//!    WAL, `synchronous=FULL`);
//! 3. paygate on SQLite (`paygate serve`, its defaults), with one live `StreamPaymentEvents`
//!    subscriber counting what is fanned out;
//! 4. the PostgreSQL floor (verify + one multi-row INSERT per batch) in a fresh database;
//! 5. paygate on PostgreSQL, in another fresh database.
//!
//! Each side gets a warm-up replay first (not measured). paygate's own counters on `/metrics`
//! and the subscriber show that every accepted webhook was stored once and streamed.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::{
    grpc::{self, StreamPaymentEventsRequest},
    paygate::{self, Backend, FreshDatabase, Paygate, WebhookCounters, SECRET},
    plots::{self, Chart, Series},
    report::{self, fmt_rate, fmt_us, Ratio, Row, ScenarioReport},
    servers::{Kind, ServerProc, ENV_DB, ENV_SECRET},
    webhook::{self, Signer},
    wrk::{self, Counter, WrkResult},
    Ctx,
};

const NAME: &str = "webhook-ingest";

/// One measured server.
struct Side {
    label: &'static str,
    key: &'static str,
    warmup: WrkResult,
    load: WrkResult,
    /// paygate only: what its counters and the subscriber say.
    check: Option<Check>,
    extra: Value,
}

/// paygate's accounting over the whole replay (warm-up included). Every 2xx must be in the log
/// once (`paygate_events_appended_total{source="webhook"}`), nothing deduplicated (the webhooks
/// are distinct), and every appended event streamed to the live subscriber. The accepted counter
/// may stay below the appended one: when wrk stops it closes connections with requests in
/// flight, paygate still commits those, but their handlers are dropped before they count them.
struct Check {
    /// 2xx answers wrk saw.
    ok: u64,
    counters: WebhookCounters,
    streamed: u64,
}

impl Check {
    fn complete(&self) -> bool {
        self.ok > 0
            && self.counters.appended_webhook >= self.ok
            && self.counters.accepted <= self.counters.appended_webhook
            && self.counters.duplicate == 0
            && self.streamed == self.counters.appended_webhook
    }

    fn json(&self) -> Value {
        json!({
            "wrk_2xx": self.ok,
            "counters_delta": self.counters.json(),
            "streamed_to_subscriber": self.streamed,
            "complete": self.complete(),
        })
    }
}

impl Side {
    fn json(&self) -> Value {
        json!({
            "label": self.label,
            "warmup": self.warmup.json(),
            "load": self.load.json(),
            "check": self.check.as_ref().map(Check::json),
            "extra": self.extra,
        })
    }
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let mut sides = Vec::new();
    sides.push(baseline(ctx, Kind::Verify, "verify-only", "verify", None).await?);
    let floor_db = ctx.dir.join("sqlite-floor.db");
    sides.push(
        baseline(
            ctx,
            Kind::SqliteFloor,
            "SQLite floor",
            "sqlite_floor",
            Some(floor_db.display().to_string()),
        )
        .await?,
    );
    sides.push(through_paygate(ctx, &Backend::Sqlite).await?);
    let mut notes = Vec::new();
    let mut pg_durability = Value::Null;
    match paygate::postgres_admin_url(ctx.options.database_url.as_deref()) {
        None => notes.push("PostgreSQL skipped (BENCH_DATABASE_URL=none)".to_owned()),
        Some(admin) => match paygate::postgres_durability(&admin).await {
            Err(e) => notes.push(format!(
                "PostgreSQL skipped: not reachable at {admin}: {e:#}"
            )),
            Ok(durability) => {
                pg_durability = durability;
                let db = FreshDatabase::create(&admin, "paygate_bench_floor").await?;
                let floor = baseline(
                    ctx,
                    Kind::PostgresFloor,
                    "PostgreSQL floor",
                    "postgres_floor",
                    Some(db.url.clone()),
                )
                .await;
                db.drop_it().await;
                sides.push(floor?);
                sides.push(through_paygate(ctx, &Backend::Postgres(admin)).await?);
            }
        },
    }

    let find = |key: &str| sides.iter().find(|s| s.key == key);
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for side in &sides {
        let l = &side.load;
        rows.push(
            Row::new(NAME, format!("{} accepted", side.label), fmt_rate(l.rate())).baseline(
                format!(
                    "p50 {} / p99 {}, CPU {:.1} µs/webhook",
                    fmt_us(l.pct(50.0)),
                    fmt_us(l.pct(99.0)),
                    l.cpu_per_webhook_us()
                ),
            ),
        );
    }
    for (paygate_key, floor_key, db, target_key) in [
        ("paygate_sqlite", "sqlite_floor", "SQLite", "ingest_sqlite"),
        (
            "paygate_postgres",
            "postgres_floor",
            "PostgreSQL",
            "ingest_postgres",
        ),
    ] {
        let (Some(p), Some(f)) = (find(paygate_key), find(floor_key)) else {
            continue;
        };
        let (pl, fl) = (&p.load, &f.load);
        let r = report::ratio(pl.rate(), fl.rate());
        let r99 = report::ratio(pl.pct(99.0), fl.pct(99.0));
        let rcpu = report::ratio(pl.cpu_per_webhook_us(), fl.cpu_per_webhook_us());
        rows.push(
            Row::new(NAME, format!("paygate/{db} vs floor"), fmt_rate(pl.rate()))
                .baseline(format!("{db} floor {}", fmt_rate(fl.rate())))
                .ratio(r)
                .target("≥ 0.5× floor", r >= 0.5, ctx.tiny),
        );
        let p99 = Row::new(NAME, format!("paygate/{db} 2xx p99"), fmt_us(pl.pct(99.0)))
            .baseline(format!("floor p99 {}", fmt_us(fl.pct(99.0))))
            .ratio(r99);
        rows.push(if db == "SQLite" {
            p99.target("≤ 2× floor p99", r99 <= 2.0, ctx.tiny)
        } else {
            p99
        });
        rows.push(
            Row::new(
                NAME,
                format!("paygate/{db} server CPU per webhook"),
                format!("{:.1} µs", pl.cpu_per_webhook_us()),
            )
            .baseline(format!("floor {:.1} µs", fl.cpu_per_webhook_us()))
            .ratio(rcpu),
        );
        if let Some(check) = &p.check {
            rows.push(
                Row::new(
                    NAME,
                    format!("paygate/{db} stored once and streamed"),
                    format!(
                        "{} 2xx → {} in the log, {} streamed ({} counted accepted, {} duplicates)",
                        report::group(check.ok as i64),
                        report::group(check.counters.appended_webhook as i64),
                        report::group(check.streamed as i64),
                        report::group(check.counters.accepted as i64),
                        check.counters.duplicate,
                    ),
                )
                .target("all, once", check.complete(), false),
            );
        }
        ratios.push(Ratio::higher(
            &format!("{target_key}_to_floor"),
            r,
            &format!("webhook-ingest: paygate/{db} req/s / floor req/s"),
        ));
        ratios.push(Ratio::lower(
            &format!("{target_key}_p99_to_floor_p99"),
            r99,
            &format!("webhook-ingest: paygate/{db} p99 / floor p99"),
        ));
        ratios.push(Ratio::lower(
            &format!("{target_key}_cpu_to_floor"),
            rcpu,
            &format!("webhook-ingest: paygate/{db} CPU per webhook / floor's"),
        ));
    }
    for side in &sides {
        rows.extend(Row::failures(
            NAME,
            &format!("{}: non-2xx or failed requests", side.label),
            side.load.failed() + side.warmup.failed(),
        ));
    }
    let wrk_cpu: Vec<String> = sides
        .iter()
        .map(|s| format!("{} {:.0} %", s.label, 100.0 * s.load.wrk_cpu_share()))
        .collect();
    notes.insert(
        0,
        format!(
            "wrk -t{} -c{} replays {} distinct pre-signed webhooks per side (each sent once), after \
             a warm-up replay of {}; rates are 2xx answers over the script's own window (first \
             request to last sent). Servers on the server CPU, wrk and the suite on the load CPU. \
             wrk's CPU (share of one core): {}.",
            ctx.sizes.wrk_threads,
            ctx.sizes.ingest_connections,
            ctx.sizes.ingest_webhooks,
            ctx.sizes.ingest_warmup_webhooks,
            wrk_cpu.join(", ")
        ),
    );
    notes.push(
        "SQLite floor: rusqlite (its bundled SQLite, the same libsqlite3-sys 0.30 sqlx links), one \
         writer thread, WAL, synchronous=FULL (checked), one transaction per batch of up to 512 \
         with a cached prepared INSERT per row. PostgreSQL floor: sqlx, one connection, one \
         INSERT … SELECT FROM UNNEST per batch of up to 512 (autocommit)."
            .into(),
    );
    let figures = json!({
        "webhooks_per_side": ctx.sizes.ingest_webhooks,
        "warmup_webhooks": ctx.sizes.ingest_warmup_webhooks,
        "connections": ctx.sizes.ingest_connections,
        "wrk_threads": ctx.sizes.wrk_threads,
        "postgres_durability": pg_durability,
        "sides": sides.iter().map(|s| (s.key.to_owned(), s.json())).collect::<serde_json::Map<_, _>>(),
    });
    let charts = vec![
        (
            "webhook-ingest.throughput".to_owned(),
            Chart {
                title: "webhook-ingest: accepted per second over the run (wrk)".into(),
                x_label: "seconds since wrk started".into(),
                y_label: "webhooks/s (server's counter, 0.5 s windows)".into(),
                series: sides
                    .iter()
                    .map(|s| Series::new(s.label, s.load.rate_over_time()))
                    .collect(),
                log_x: false,
                y_from_zero: true,
                legend_top: true,
            },
        ),
        (
            "webhook-ingest.latency-cdf".to_owned(),
            Chart {
                title: format!(
                    "webhook-ingest: 2xx latency under wrk -c{}",
                    ctx.sizes.ingest_connections
                ),
                x_label: "latency (ms, log)".into(),
                y_label: "percentile".into(),
                series: sides
                    .iter()
                    .map(|s| plots::cdf(s.label, &s.load.percentiles))
                    .collect(),
                log_x: true,
                y_from_zero: true,
                legend_top: false,
            },
        ),
    ];
    Ok(ScenarioReport {
        figures,
        rows,
        notes,
        ratios,
        charts,
    })
}

/// A baseline server of this suite, replayed against.
async fn baseline(
    ctx: &Ctx<'_>,
    kind: Kind,
    label: &'static str,
    key: &'static str,
    db: Option<String>,
) -> anyhow::Result<Side> {
    let mut env = vec![(ENV_SECRET, SECRET.to_owned())];
    if let Some(db) = db {
        env.push((ENV_DB, db));
    }
    let server =
        ServerProc::start(&ctx.layout, kind, &env, &ctx.dir.join(format!("{key}.log"))).await?;
    let counter = Counter {
        metrics: server.addr,
        name: "bench_webhooks_accepted_total",
    };
    let result = replay(ctx, label, key, server.addr, &counter, server.pid).await;
    server.stop().await;
    let (warmup, load) = result?;
    Ok(Side {
        label,
        key,
        warmup,
        load,
        check: None,
        extra: Value::Null,
    })
}

/// Warm-up replay, then the measured one, each from a file signed just before.
async fn replay(
    ctx: &Ctx<'_>,
    label: &str,
    key: &str,
    addr: std::net::SocketAddr,
    counter: &Counter,
    pid: u32,
) -> anyhow::Result<(WrkResult, WrkResult)> {
    let sizes = &ctx.sizes;
    let (conns, threads) = (sizes.ingest_connections, sizes.wrk_threads);
    let signer = Signer::new(addr, SECRET);
    let prefix = reference_prefix(ctx, key);
    let mut out = Vec::new();
    for (phase, count) in [
        ("warm-up", sizes.ingest_warmup_webhooks),
        ("measured", sizes.ingest_webhooks),
    ] {
        let file = ctx.dir.join(format!("{key}-{phase}.requests"));
        webhook::write_replay_file(
            &file,
            &signer,
            &format!("{prefix}{}", &phase[..1]),
            0,
            wrk::file_len(count, conns, threads),
        )?;
        let result = wrk::replay(
            ctx,
            &format!("{NAME} {label} {phase}"),
            addr,
            &file,
            count,
            conns,
            counter,
            pid,
        )
        .await;
        let _ = std::fs::remove_file(&file);
        out.push(result?);
    }
    let load = out
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no measured run"))?;
    let warmup = out.pop().ok_or_else(|| anyhow::anyhow!("no warm-up run"))?;
    Ok((warmup, load))
}

fn reference_prefix(ctx: &Ctx<'_>, key: &str) -> String {
    format!("wi-{key}-{}-", ctx.run_id)
}

async fn through_paygate(ctx: &Ctx<'_>, backend: &Backend) -> anyhow::Result<Side> {
    let (label, key) = match backend {
        Backend::Sqlite => ("paygate (SQLite)", "paygate_sqlite"),
        Backend::Postgres(_) => ("paygate (PostgreSQL)", "paygate_postgres"),
    };
    let paygate = Paygate::start(ctx, backend, key, &[]).await?;
    let result = paygate_side(ctx, &paygate, label, key).await;
    paygate.stop().await;
    let mut side = result?;
    side.extra = match backend {
        Backend::Sqlite => {
            json!({"database": "SQLite, paygate's own settings (WAL, synchronous=FULL)"})
        }
        Backend::Postgres(_) => {
            json!({"database": "a fresh PostgreSQL database, dropped afterwards"})
        }
    };
    Ok(side)
}

async fn paygate_side(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
    label: &'static str,
    key: &'static str,
) -> anyhow::Result<Side> {
    let prefix = reference_prefix(ctx, key);
    let streamed = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut stream = grpc::lean_stream(
        grpc::channel(paygate.grpc_addr).await?,
        StreamPaymentEventsRequest::default(),
    )
    .await?;
    let subscriber = {
        let (streamed, stop, prefix) = (streamed.clone(), stop.clone(), prefix.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    item = stream.message() => match item {
                        Ok(Some(r)) => {
                            if r.event.is_some_and(|e| e.reference.starts_with(prefix.as_bytes())) {
                                streamed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => return,
                    },
                }
            }
        })
    };
    let before = paygate.webhook_counters().await?;
    let counter = Counter {
        metrics: paygate.http_addr,
        name: "paygate_webhooks_accepted_total",
    };
    let result = replay(ctx, label, key, paygate.http_addr, &counter, paygate.pid).await;
    let after = paygate.settled_counters().await;
    let counters = after.map(|a| a.since(&before));
    // Let the subscriber drain (bounded).
    let expected = counters.as_ref().map_or(0, |c| c.appended_webhook);
    let deadline = Instant::now() + Duration::from_secs(15);
    while streamed.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = subscriber.await;
    let (warmup, load) = result?;
    Ok(Side {
        label,
        key,
        check: Some(Check {
            ok: warmup.ok() + load.ok(),
            counters: counters?,
            streamed: streamed.load(Ordering::Relaxed),
        }),
        warmup,
        load,
        extra: Value::Null,
    })
}
