//! paygate's benchmark suite (BENCHMARKS.md): `paygate-bench <scenario> [--size tiny] [--out FILE]`.
//!
//! Every scenario starts the **real paygate binary** as a child process on one CPU and drives it
//! through its public interfaces only (gRPC, the webhook endpoint, `/metrics`) from another CPU,
//! and measures a baseline in the same run so the figures are read as ratios. The webhook load
//! comes from wrk replaying pre-signed webhooks; the baselines (verify-only endpoint, durable
//! SQLite and PostgreSQL group-commit floors, a bare tonic stream server, the Vipps emulator
//! called directly) are processes of this binary (`__serve`), started on the same CPU as
//! paygate. It prints a live progress line on stderr, a table at the end, writes every figure to
//! a JSON file (default `bench-results/<scenario>.json`) and SVG charts beside it, and compares
//! the run's ratios with a recorded run (default: the JSON file it is about to replace).
//!
//! Scenarios: create-overhead, create-throughput, webhook-ingest, delivery-latency, subscribers,
//! catch-up, or `all`.

mod catchup;
mod compare;
mod create;
mod delivery;
mod grpc;
mod http1;
mod ingest;
mod machine;
mod paygate;
mod pin;
mod plots;
mod progress;
mod report;
mod servers;
mod streams;
mod subscribers;
mod webhook;
mod wrk;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use report::Row;

/// The scenarios, in the order `all` runs them.
pub const SCENARIOS: [&str; 6] = [
    "create-overhead",
    "create-throughput",
    "webhook-ingest",
    "delivery-latency",
    "subscribers",
    "catch-up",
];

/// The hidden command of the child that holds streams for `subscribers`.
pub const CHILD_STREAM_CLIENT: &str = "__stream-client";
/// The hidden command of the baseline servers and the emulator (`__serve <kind>`).
pub const CHILD_SERVE: &str = "__serve";

/// How big the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Size {
    /// Seconds per scenario: CI's smoke run (figures are not comparable with targets).
    Tiny,
    /// The sizes the targets are stated at.
    #[default]
    Default,
}

impl Size {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "default" | "full" => Ok(Self::Default),
            "tiny" => Ok(Self::Tiny),
            other => anyhow::bail!("unknown size {other:?}: use tiny or default"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Default => "default",
        }
    }
}

/// What to run and where to write.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub size: Size,
    /// The JSON file (default `bench-results/<scenario>.json`).
    pub out: Option<PathBuf>,
    /// The paygate binary (else `PAYGATE_BIN`, else `paygate` next to this executable).
    pub paygate: Option<PathBuf>,
    /// PostgreSQL admin URL (else `BENCH_DATABASE_URL`, else the local default; `none` skips).
    pub database_url: Option<String>,
    /// The recorded run to compare ratios with (default: the output file, read before it is
    /// overwritten); `none` skips the comparison.
    pub compare: Option<PathBuf>,
}

/// What a run produced.
pub struct Outcome {
    pub path: PathBuf,
    pub json: Value,
    pub rows: Vec<Row>,
}

/// Sizes of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sizes {
    pub fsync_secs: f64,
    pub overhead_rate: u32,
    pub overhead_secs: u32,
    pub overhead_warmup: u32,
    pub throughput_levels: Vec<usize>,
    pub throughput_secs: f64,
    pub throughput_warmup: f64,
    /// Distinct pre-signed webhooks wrk replays per side (each sent once).
    pub ingest_webhooks: u64,
    /// Replayed first, not measured.
    pub ingest_warmup_webhooks: u64,
    pub ingest_connections: usize,
    pub wrk_threads: usize,
    pub delivery_rate: u64,
    pub delivery_secs: f64,
    pub delivery_warmup: f64,
    pub delivery_subscribers: usize,
    pub delivery_post_connections: usize,
    pub streams: usize,
    pub stream_connections: usize,
    pub stream_steps: usize,
    pub stream_settle_secs: f64,
    pub catchup_events: u64,
}

impl Sizes {
    /// The sizes of `size`, with `BENCH_SET="field=value,…"` applied (e.g.
    /// `BENCH_SET=streams=2000,ingest_webhooks=20000`; names as in the JSON's `sizes`).
    fn with_overrides(size: Size) -> anyhow::Result<Self> {
        let sizes = Self::of(size);
        let Ok(set) = std::env::var("BENCH_SET") else {
            return Ok(sizes);
        };
        let mut value = serde_json::to_value(&sizes)?;
        for pair in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, raw) = pair
                .split_once('=')
                .with_context(|| format!("BENCH_SET: {pair:?} is not field=value"))?;
            let slot = value
                .get_mut(key.trim())
                .with_context(|| format!("BENCH_SET: no size named {key:?}"))?;
            *slot = serde_json::from_str(raw.trim())
                .with_context(|| format!("BENCH_SET: bad value for {key}"))?;
        }
        serde_json::from_value(value).context("BENCH_SET")
    }

    fn of(size: Size) -> Self {
        match size {
            Size::Default => Self {
                fsync_secs: 2.0,
                overhead_rate: 200,
                overhead_secs: 15,
                overhead_warmup: 200,
                throughput_levels: vec![16, 64, 256],
                throughput_secs: 5.0,
                throughput_warmup: 1.0,
                ingest_webhooks: 80_000,
                ingest_warmup_webhooks: 4_000,
                ingest_connections: 64,
                wrk_threads: 1,
                delivery_rate: 1_000,
                delivery_secs: 10.0,
                delivery_warmup: 1.0,
                delivery_subscribers: 100,
                delivery_post_connections: 16,
                streams: 10_000,
                stream_connections: 100,
                stream_steps: 10,
                stream_settle_secs: 1.0,
                catchup_events: 100_000,
            },
            Size::Tiny => Self {
                fsync_secs: 0.2,
                overhead_rate: 200,
                overhead_secs: 1,
                overhead_warmup: 10,
                throughput_levels: vec![16],
                throughput_secs: 1.0,
                throughput_warmup: 0.2,
                ingest_webhooks: 2_000,
                ingest_warmup_webhooks: 200,
                ingest_connections: 16,
                wrk_threads: 1,
                delivery_rate: 1_000,
                delivery_secs: 1.0,
                delivery_warmup: 0.2,
                delivery_subscribers: 20,
                delivery_post_connections: 4,
                streams: 200,
                stream_connections: 10,
                stream_steps: 4,
                stream_settle_secs: 0.3,
                catchup_events: 5_000,
            },
        }
    }
}

/// What every scenario gets.
pub(crate) struct Ctx<'a> {
    pub layout: pin::Layout,
    pub sizes: Sizes,
    pub options: &'a Options,
    /// The run's temp dir (databases, replay files, logs).
    pub dir: PathBuf,
    /// Short random id: references of this run are unique.
    pub run_id: String,
    /// Tiny runs are not judged against targets.
    pub tiny: bool,
    /// The paygate binary under test.
    pub paygate: PathBuf,
    /// paygate's `RUST_LOG` (`BENCH_PAYGATE_LOG`, default `warn`).
    pub paygate_log_level: String,
    /// More of paygate's environment (`BENCH_PAYGATE_ENV=KEY=VALUE,…`), set after the suite's
    /// own keys: the child starts from an empty environment, so an A/B of a setting goes here.
    pub paygate_env: Vec<(String, String)>,
    /// The run's fdatasync p50 (append), microseconds.
    pub fsync_p50_us: Option<f64>,
}

/// `KEY=VALUE,KEY=VALUE` (empty: none); a malformed entry stops the run before it starts.
fn paygate_env(list: &str) -> anyhow::Result<Vec<(String, String)>> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.to_owned()))
            }
            _ => anyhow::bail!("BENCH_PAYGATE_ENV: {entry:?} is not KEY=VALUE"),
        })
        .collect()
}

/// Runs a hidden child command (`__serve <kind>`, `__stream-client`) if `args` name one.
pub fn child_command(args: &[String]) -> Option<anyhow::Result<()>> {
    match args.get(1).map(String::as_str) {
        Some(CHILD_STREAM_CLIENT) => Some(streams::child_main()),
        Some(CHILD_SERVE) => Some(match args.get(2) {
            Some(kind) => servers::serve_main(kind),
            None => Err(anyhow::anyhow!("__serve needs a kind")),
        }),
        _ => None,
    }
}

/// Removes the run's temp dir when dropped (`BENCH_KEEP=1` keeps it, with paygate's logs).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("(kept {})", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The last `n` lines of a log file, on one line (for error messages).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}

/// Runs a scenario (or `all`) to the end: progress on stderr, the table on stdout, the JSON and
/// the charts written. Fails if any scenario failed (after writing what the others measured).
pub fn run(scenario: &str, options: &Options) -> anyhow::Result<Outcome> {
    let list: Vec<&'static str> = if scenario == "all" {
        SCENARIOS.to_vec()
    } else if let Some(s) = SCENARIOS.iter().find(|s| **s == scenario) {
        vec![*s]
    } else {
        anyhow::bail!(
            "unknown scenario {scenario:?}: one of all, {}",
            SCENARIOS.join(", ")
        );
    };
    let paygate = paygate::locate(options.paygate.as_deref())?;
    if list
        .iter()
        .any(|s| ["webhook-ingest", "catch-up"].contains(s))
    {
        wrk::ensure_installed()?;
    }
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let sizes = Sizes::with_overrides(options.size)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let dir = TempDir(std::env::temp_dir().join(format!("paygate-bench-{run_id}")));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let path = options
        .out
        .clone()
        .unwrap_or_else(|| Path::new("bench-results").join(format!("{scenario}.json")));
    let reference = compare::load_reference(options.compare.as_deref(), &path);

    // Before this thread is pinned: the CPUs the process may use.
    let machine = machine::describe();
    let layout = pin::Layout::detect();
    layout.pin_load_thread();
    let runtime = layout.load_runtime(load_threads())?;
    eprintln!(
        "paygate-bench {scenario} — size {} — {} × {} — load average {} — {}",
        options.size.name(),
        machine["logical_cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine::loadavg(),
        layout.summary(),
    );
    eprintln!("  paygate: {}", paygate.display());
    if cfg!(debug_assertions) {
        eprintln!("  (debug build of the suite: its clients are slow; use --release)");
    }
    let paygate_env = paygate_env(&std::env::var("BENCH_PAYGATE_ENV").unwrap_or_default())?;
    if !paygate_env.is_empty() {
        let keys: Vec<_> = paygate_env.iter().map(|(k, _)| k.as_str()).collect();
        eprintln!("  paygate's extra environment: {}", keys.join(", "));
    }
    let fsync = machine::fsync_probe(&dir.0, sizes.fsync_secs)?;
    eprintln!("  disk: {}", machine::fsync_line(&fsync));
    let log_level = std::env::var("BENCH_PAYGATE_LOG").unwrap_or_else(|_| "warn".into());
    let ctx = Ctx {
        layout: layout.clone(),
        sizes: sizes.clone(),
        options,
        dir: dir.0.clone(),
        run_id,
        tiny: options.size == Size::Tiny,
        paygate: paygate.clone(),
        paygate_log_level: log_level.clone(),
        paygate_env,
        fsync_p50_us: machine::fsync_p50_us(&fsync),
    };

    let mut scenarios = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut charts = Vec::new();
    let mut failed = Vec::new();
    for name in &list {
        eprintln!("{name}:");
        let load_before = machine::loadavg();
        let t = Instant::now();
        let result = runtime.block_on(run_scenario(name, &ctx));
        let seconds = report::round3(t.elapsed().as_secs_f64());
        match result {
            Ok(report) => {
                rows.extend(report.rows.iter().cloned());
                scenarios.insert(
                    (*name).to_owned(),
                    json!({
                        "figures": report.figures,
                        "summary": report.rows,
                        "ratios": report.ratios,
                        "notes": report.notes,
                        "seconds": seconds,
                        "loadavg_before": load_before,
                        "loadavg_after": machine::loadavg(),
                    }),
                );
                ratios.extend(report.ratios);
                charts.extend(report.charts);
            }
            Err(e) => {
                eprintln!("\n{name} FAILED: {e:#}");
                rows.push(Row::new(name, "(scenario failed)", format!("{e:#}")).verdict("FAILED"));
                scenarios.insert(
                    (*name).to_owned(),
                    json!({"error": format!("{e:#}"), "seconds": seconds}),
                );
                failed.push(*name);
            }
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));

    let comparison = compare::compare(reference.as_ref(), options.size, &ratios);
    let mut chart_files = Vec::new();
    for (name, chart) in &charts {
        let file = plots::path_beside(&path, name);
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        match plots::draw(&file, chart) {
            Ok(()) => chart_files.push(file.display().to_string()),
            Err(e) => eprintln!("  chart {name}: {e:#}"),
        }
    }
    let json = json!({
        "suite": "paygate-bench",
        "scenario": scenario,
        "size": options.size.name(),
        "started": started.to_rfc3339(),
        "seconds": report::round3(clock.elapsed().as_secs_f64()),
        "machine": machine,
        "layout": layout.json(),
        "paygate": {"binary": paygate.display().to_string(), "rust_log": log_level},
        "fsync": fsync,
        "sizes": sizes,
        "loadavg_at_end": machine::loadavg(),
        "scenarios": scenarios,
        "summary": rows,
        "ratios": ratios,
        "comparison": comparison.json,
        "charts": chart_files,
        "targets_judged": options.size != Size::Tiny,
    });
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;

    println!();
    println!("{}", report::table(&rows));
    println!("disk: {}", machine::fsync_line(&fsync));
    if !comparison.rows.is_empty() {
        println!();
        println!("{}", report::table(&comparison.rows));
    } else if let Some(why) = comparison.json["skipped"].as_str() {
        println!("(no comparison with a recorded run: {why})");
    }
    if options.size == Size::Tiny {
        println!("(tiny size: smoke figures, not judged against the targets)");
    }
    println!(
        "every figure: {} and {} chart(s) beside it ({:.0} s)",
        path.display(),
        chart_files.len(),
        clock.elapsed().as_secs_f64()
    );
    let mut all_rows = rows;
    all_rows.extend(comparison.rows);
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {}", failed.join(", "));
    Ok(Outcome {
        path,
        json,
        rows: all_rows,
    })
}

fn load_threads() -> usize {
    std::env::var("BENCH_LOAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

async fn run_scenario(scenario: &str, ctx: &Ctx<'_>) -> anyhow::Result<report::ScenarioReport> {
    match scenario {
        "create-overhead" => create::overhead(ctx).await,
        "create-throughput" => create::throughput(ctx).await,
        "webhook-ingest" => ingest::run(ctx).await,
        "delivery-latency" => delivery::run(ctx).await,
        "subscribers" => subscribers::run(ctx).await,
        "catch-up" => catchup::run(ctx).await,
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn paygate_env_is_key_value_pairs() {
        assert!(super::paygate_env("").unwrap().is_empty());
        assert_eq!(
            super::paygate_env("PAYGATE_RECONCILE_FIRST_MS=60000, A=b=c").unwrap(),
            [
                ("PAYGATE_RECONCILE_FIRST_MS".to_owned(), "60000".to_owned()),
                ("A".to_owned(), "b=c".to_owned())
            ]
        );
        assert!(super::paygate_env("NOVALUE").is_err());
        assert!(super::paygate_env("=x").is_err());
    }
}
