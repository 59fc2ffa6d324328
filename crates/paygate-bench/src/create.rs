//! create-overhead and create-throughput: CreatePaymentRequest through paygate (gRPC → journal →
//! emulator → commit) against the same REST call made straight to the emulator paygate uses
//! (a process of its own on the server CPU, `VIPPS_BASE_URL`).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::{
    grpc::{channel, proto, PaymentServiceClient},
    paygate::{Backend, Paygate},
    plots::{self, Chart},
    progress::Progress,
    report::{self, fmt_rate, fmt_us, Latency, Ratio, Row, ScenarioReport},
    Ctx,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Direct,
    Paygate,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Paygate => "paygate",
        }
    }
}

/// The REST call paygate makes, made straight to the emulator (token fetched once, as paygate's
/// client caches it too).
#[derive(Clone)]
struct Direct {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Direct {
    async fn connect(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .build()?;
        let answer: Value = http
            .post(format!("{base}/accesstoken/get"))
            .header("client_id", "paygate-bench")
            .header("client_secret", "paygate-bench")
            .header("Ocp-Apim-Subscription-Key", "paygate-bench")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = answer["access_token"]
            .as_str()
            .context("no access_token from the emulator")?
            .to_owned();
        Ok(Self {
            http,
            url: format!("{base}/epayment/v1/payments"),
            token,
        })
    }

    async fn create(&self, reference: &str) -> anyhow::Result<()> {
        let body = json!({
            "amount": {"currency": "NOK", "value": 1000},
            "paymentMethod": {"type": "WALLET"},
            "reference": reference,
            "userFlow": "PUSH_MESSAGE",
            "customer": {"phoneNumber": "4791234567"},
            "paymentDescription": "Taxi ride",
        });
        let status = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("Ocp-Apim-Subscription-Key", "paygate-bench")
            .header("Merchant-Serial-Number", "123456")
            .header("Idempotency-Key", reference)
            .json(&body)
            .send()
            .await?
            .status();
        anyhow::ensure!(status.as_u16() == 201, "emulator answered {status}");
        Ok(())
    }
}

fn grpc_request(reference: &str) -> proto::CreatePaymentRequestRequest {
    proto::CreatePaymentRequestRequest {
        reference: reference.to_owned(),
        amount: Some(proto::Money {
            currency: "NOK".into(),
            value: 1000,
        }),
        user_flow: proto::UserFlow::PushMessage.into(),
        customer: Some(proto::Customer {
            phone_number: "4791234567".into(),
        }),
        payment_description: "Taxi ride".into(),
        ..Default::default()
    }
}

/// Both ways of creating, ready to use.
#[derive(Clone)]
struct Creators {
    direct: Direct,
    grpc: Vec<PaymentServiceClient<Channel>>,
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Creators {
    async fn new(ctx: &Ctx<'_>, paygate: &Paygate, channels: usize) -> anyhow::Result<Self> {
        let emulator = format!("http://{}", paygate.emulator.addr);
        let mut grpc = Vec::new();
        for _ in 0..channels.max(1) {
            grpc.push(PaymentServiceClient::new(channel(paygate.grpc_addr).await?));
        }
        Ok(Self {
            direct: Direct::connect(&emulator).await?,
            grpc,
            prefix: format!("bc-{}-", ctx.run_id).into(),
            next: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Creates one payment with a fresh reference; returns how long the call took.
    async fn create(&self, side: Side, worker: usize) -> anyhow::Result<Duration> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let reference = format!("{}{n}", self.prefix);
        let started = Instant::now();
        match side {
            Side::Direct => self.direct.create(&reference).await?,
            Side::Paygate => {
                let mut client = self.grpc[worker % self.grpc.len()].clone();
                client
                    .create_payment_request(grpc_request(&reference))
                    .await?;
            }
        }
        Ok(started.elapsed())
    }
}

/// Fixed 200/s, alternating one-second blocks of direct and paygate calls (so drift and
/// background noise hit both alike); latency of each call from just before it is sent.
pub async fn overhead(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let sizes = &ctx.sizes;
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "create-overhead", &[]).await?;
    let result = overhead_on(ctx, &paygate).await;
    paygate.stop().await;
    let (direct, through, errors) = result?;
    let (d, p) = (Latency::of(&direct), Latency::of(&through));
    let added_p50 = p.p50_us - d.p50_us;
    let added_p99 = p.p99_us - d.p99_us;
    let fsync = ctx.fsync_p50_us.unwrap_or(f64::NAN);
    // The journal entry and the result each need one durable write.
    let budget = 2.0 * fsync + 300.0;
    let name = "create-overhead";
    let mut rows = vec![
        Row::new(name, "direct call latency", d.short()),
        Row::new(name, "through paygate latency", p.short()),
        Row::new(name, "added latency p50", fmt_us(added_p50))
            .baseline(format!(
                "2 × fdatasync p50 {} + 0.3 ms = {}",
                fmt_us(fsync),
                fmt_us(budget)
            ))
            .ratio(report::ratio(added_p50, budget))
            .target(
                "≤ 1× (2 × fdatasync + 0.3 ms)",
                added_p50 <= budget,
                ctx.tiny,
            ),
        Row::new(name, "paygate / direct p50", fmt_us(p.p50_us))
            .baseline(format!("direct p50 {}", fmt_us(d.p50_us)))
            .ratio(report::ratio(p.p50_us, d.p50_us)),
        Row::new(name, "added latency p99", fmt_us(added_p99))
            .baseline(format!("direct p99 {}", fmt_us(d.p99_us)))
            .ratio(report::ratio(p.p99_us, d.p99_us)),
    ];
    rows.extend(Row::failures(name, "failed calls", errors));
    Ok(ScenarioReport {
        figures: json!({
            "rate_per_s": sizes.overhead_rate,
            "seconds_per_side": sizes.overhead_secs,
            "warmup_calls_per_side": sizes.overhead_warmup,
            "direct": d,
            "paygate": p,
            "added_p50_us": report::round1(added_p50),
            "added_p90_us": report::round1(p.p90_us - d.p90_us),
            "added_p99_us": report::round1(added_p99),
            "fdatasync_p50_us": fsync,
            "added_p50_budget_us": report::round1(budget),
            "errors": errors,
            "cdf_us": {
                "direct": report::percentiles(&direct),
                "paygate": report::percentiles(&through),
            },
        }),
        rows,
        notes: vec![
            "Both sides run at the same fixed rate in alternating 1 s blocks; latency is measured \
             per call from just before it is sent to its answer. The emulator and paygate run on \
             the server CPU (separate processes); the callers on the load CPU. The budget for the \
             added p50 is two durable writes (journal entry, result) at the run's fdatasync p50 \
             plus 0.3 ms."
                .into(),
        ],
        ratios: vec![
            Ratio::lower(
                "create_overhead_p50_ratio",
                report::ratio(p.p50_us, d.p50_us),
                "create-overhead: paygate p50 / direct p50",
            ),
            Ratio::lower(
                "create_overhead_added_p50_to_budget",
                report::ratio(added_p50, budget),
                "create-overhead: added p50 / (2 × fdatasync + 0.3 ms)",
            ),
        ],
        charts: vec![(
            "create-overhead.latency-cdf".into(),
            Chart {
                title: format!(
                    "create-overhead: CreatePaymentRequest latency at {}/s",
                    sizes.overhead_rate
                ),
                x_label: "latency (ms, log)".into(),
                y_label: "percentile".into(),
                series: vec![
                    plots::cdf("emulator directly (REST)", &report::percentiles(&direct)),
                    plots::cdf("through paygate (gRPC)", &report::percentiles(&through)),
                ],
                log_x: true,
                y_from_zero: true,
                legend_top: false,
            },
        )],
    })
}

async fn overhead_on(
    ctx: &Ctx<'_>,
    paygate: &Paygate,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>, u64)> {
    let sizes = &ctx.sizes;
    let creators = Creators::new(ctx, paygate, 1).await?;
    for side in [Side::Direct, Side::Paygate] {
        for _ in 0..sizes.overhead_warmup {
            creators.create(side, 0).await?;
        }
    }
    let mut direct = report::histogram()?;
    let mut through = report::histogram()?;
    let mut errors = 0u64;
    let rate = u64::from(sizes.overhead_rate.max(1));
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let blocks = 2 * sizes.overhead_secs;
    let progress = Progress::start(
        "create-overhead (alternating)",
        Duration::from_secs(u64::from(blocks)),
    );
    for block in 0..blocks {
        let side = if block % 2 == 0 {
            Side::Direct
        } else {
            Side::Paygate
        };
        let start = tokio::time::Instant::now();
        let mut calls = Vec::with_capacity(usize::try_from(rate).unwrap_or(0));
        for i in 0..rate {
            tokio::time::sleep_until(start + period * u32::try_from(i).unwrap_or(0)).await;
            let (creators, progress) = (creators.clone(), progress.clone());
            calls.push(tokio::spawn(async move {
                let result = creators.create(side, 0).await;
                match &result {
                    Ok(_) => progress.add(1),
                    Err(_) => progress.error(),
                }
                result
            }));
        }
        for call in calls {
            match call.await? {
                Ok(took) => {
                    let h = if side == Side::Direct {
                        &mut direct
                    } else {
                        &mut through
                    };
                    report::record(h, took);
                }
                Err(_) => errors += 1,
            }
        }
    }
    progress.finish();
    Ok((direct, through, errors))
}

/// Closed loop at several concurrency levels, each for a while, direct and through paygate
/// alternately; the maximum completed rate of each side is compared.
pub async fn throughput(ctx: &Ctx<'_>) -> anyhow::Result<ScenarioReport> {
    let paygate = Paygate::start(ctx, &Backend::Sqlite, "create-throughput", &[]).await?;
    let result = throughput_on(ctx, &paygate).await;
    paygate.stop().await;
    let levels = result?;
    let best = |side: Side| {
        levels
            .iter()
            .filter(|l| l.side == side)
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
    };
    let name = "create-throughput";
    let (Some(d), Some(p)) = (best(Side::Direct), best(Side::Paygate)) else {
        anyhow::bail!("no concurrency level was measured");
    };
    let r = report::ratio(p.rate, d.rate);
    let rows = vec![
        Row::new(name, "direct max", fmt_rate(d.rate))
            .baseline(format!("at {} in flight", d.concurrency)),
        Row::new(name, "through paygate max (durable)", fmt_rate(p.rate))
            .baseline(format!("direct {}", fmt_rate(d.rate)))
            .ratio(r)
            .target("≥ 50 % of direct", r >= 0.5, ctx.tiny),
        Row::new(name, "through paygate latency at max", p.latency.short())
            .baseline(format!("direct {}", d.latency.short())),
    ];
    let mut rows = rows;
    for side in [Side::Direct, Side::Paygate] {
        let failed = levels
            .iter()
            .filter(|l| l.side == side)
            .map(|l| l.errors)
            .sum();
        rows.extend(Row::failures(
            name,
            &format!("{} failed calls", side.name()),
            failed,
        ));
    }
    Ok(ScenarioReport {
        figures: json!({
            "levels": levels.iter().map(Level::json).collect::<Vec<_>>(),
            "direct_max_per_s": report::round1(d.rate),
            "paygate_max_per_s": report::round1(p.rate),
            "ratio": report::round3(r),
        }),
        rows,
        notes: vec![
            "Closed loop: N callers, each sending the next create when the previous is answered; \
             paygate over 4 gRPC connections. Durable: paygate's SQLite runs WAL with \
             synchronous=FULL (its own setting)."
                .into(),
        ],
        ratios: vec![Ratio::higher(
            "create_throughput_ratio",
            r,
            "create-throughput: paygate max / direct max",
        )],
        charts: vec![(
            "create-throughput.latency-cdf".into(),
            Chart {
                title: "create-throughput: latency at each side's best level".into(),
                x_label: "latency (ms, log)".into(),
                y_label: "percentile".into(),
                series: vec![
                    plots::cdf(
                        format!("direct, {} in flight", d.concurrency),
                        &d.percentiles,
                    ),
                    plots::cdf(
                        format!("paygate, {} in flight", p.concurrency),
                        &p.percentiles,
                    ),
                ],
                log_x: true,
                y_from_zero: true,
                legend_top: false,
            },
        )],
    })
}

struct Level {
    side: Side,
    concurrency: usize,
    rate: f64,
    ok: u64,
    errors: u64,
    latency: Latency,
    percentiles: Vec<(f64, f64)>,
}

impl Level {
    fn json(&self) -> Value {
        json!({
            "side": self.side.name(),
            "in_flight": self.concurrency,
            "per_s": report::round1(self.rate),
            "ok": self.ok,
            "errors": self.errors,
            "latency": self.latency,
        })
    }
}

async fn throughput_on(ctx: &Ctx<'_>, paygate: &Paygate) -> anyhow::Result<Vec<Level>> {
    let sizes = &ctx.sizes;
    let creators = Creators::new(ctx, paygate, 4).await?;
    let mut levels = Vec::new();
    for &concurrency in &sizes.throughput_levels {
        for side in [Side::Direct, Side::Paygate] {
            levels.push(closed_loop(&creators, side, concurrency, sizes).await?);
        }
    }
    Ok(levels)
}

async fn closed_loop(
    creators: &Creators,
    side: Side,
    concurrency: usize,
    sizes: &crate::Sizes,
) -> anyhow::Result<Level> {
    let warmup = Duration::from_secs_f64(sizes.throughput_warmup);
    let window = Duration::from_secs_f64(sizes.throughput_secs);
    let progress = Progress::start(
        format!("create-throughput {} ×{concurrency}", side.name()),
        warmup + window,
    );
    let start = Instant::now();
    let counted_from = start + warmup;
    let end = counted_from + window;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (creators, progress) = (creators.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = report::histogram()?;
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                match creators.create(side, worker).await {
                    Ok(took) => {
                        progress.add(1);
                        if sent >= counted_from {
                            ok += 1;
                            report::record(&mut h, took);
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        progress.error();
                    }
                }
            }
            anyhow::Ok((h, ok, errors))
        }));
    }
    let mut latency = report::histogram()?;
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (h, o, e) = t.await??;
        report::merge(&mut latency, &h)?;
        ok += o;
        errors += e;
    }
    progress.finish();
    Ok(Level {
        side,
        concurrency,
        rate: ok as f64 / window.as_secs_f64(),
        ok,
        errors,
        latency: Latency::of(&latency),
        percentiles: report::percentiles(&latency),
    })
}
