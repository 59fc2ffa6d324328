//! `paygate bench <scenario> [--size tiny] [--out FILE]`: the benchmark suite (BENCHMARKS.md).
//!
//! Every scenario starts paygate in this process on a dedicated *server* runtime and drives it
//! from a separate *load* runtime (one worker thread each by default, pinned to different CPUs
//! where possible, see `rig`), and measures a baseline in the same run so the figures are read as
//! ratios. It prints a live progress line on stderr, a table at the end, and writes every figure
//! to a JSON file (default `bench-results/<scenario>.json`).
//!
//! Scenarios: create-overhead, create-throughput, webhook-ingest, delivery-latency, subscribers,
//! catch-up, or `all`. Environment: `BENCH_DATABASE_URL` (PostgreSQL admin URL for the
//! PostgreSQL ingest run; `none` skips it; default `postgres://postgres@127.0.0.1:5432/test`),
//! `BENCH_PIN=0` (no CPU pinning), `BENCH_SERVER_THREADS` / `BENCH_LOAD_THREADS` (default 1),
//! `BENCH_CLIENT_EXE` (binary for the child stream client of `subscribers`).

mod bare;
mod catchup;
mod create;
mod delivery;
mod http1;
mod ingest;
mod machine;
mod progress;
mod raw;
mod report;
mod rig;
mod streams;
mod subscribers;
mod target;
mod webhook;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
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

/// The hidden scenario a child process runs to hold streams for `subscribers`.
pub const CHILD_SCENARIO: &str = "__stream-client";

/// Set in a child that runs one scenario for its parent (no fsync probe there).
const ISOLATED_ENV: &str = "PAYGATE_BENCH_ISOLATED";

/// Scenarios that measure this process's memory: run in a fresh process when a paygate binary
/// is at hand, since memory freed by earlier scenarios stays resident and would be reused.
const RUN_ISOLATED: [&str; 1] = ["subscribers"];

/// How big the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Size {
    /// Seconds per scenario: CI's smoke run (figures are not comparable with targets).
    Tiny,
    /// The sizes the targets are stated at (the whole suite in well under 10 minutes).
    #[default]
    Default,
}

impl Size {
    pub fn parse(s: Option<&str>) -> anyhow::Result<Self> {
        match s {
            None | Some("default" | "full") => Ok(Self::Default),
            Some("tiny") => Ok(Self::Tiny),
            Some(other) => anyhow::bail!("unknown size {other:?}: use tiny or default"),
        }
    }

    fn name(self) -> &'static str {
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
    /// PostgreSQL admin URL (else `BENCH_DATABASE_URL`, else the local default; `none` skips).
    pub database_url: Option<String>,
    /// A `paygate` binary to hold streams in a child process (else `BENCH_CLIENT_EXE`, else this
    /// executable if it is `paygate`, else in-process).
    pub client_exe: Option<PathBuf>,
}

/// What a run produced.
pub struct Outcome {
    /// Where the JSON was written.
    pub path: PathBuf,
    /// Every figure (the file's content).
    pub json: Value,
    /// The summary table's rows.
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
    pub ingest_connections: usize,
    pub ingest_secs: f64,
    pub ingest_warmup: f64,
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
    /// `BENCH_SET=streams=2000,ingest_secs=5`; field names as in the JSON's `sizes`).
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
                ingest_connections: 64,
                ingest_secs: 30.0,
                ingest_warmup: 2.0,
                delivery_rate: 1_000,
                delivery_secs: 10.0,
                delivery_warmup: 1.0,
                delivery_subscribers: 100,
                delivery_post_connections: 16,
                streams: 10_000,
                stream_connections: 100,
                stream_steps: 5,
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
                ingest_connections: 16,
                ingest_secs: 1.0,
                ingest_warmup: 0.2,
                delivery_rate: 1_000,
                delivery_secs: 1.0,
                delivery_warmup: 0.2,
                delivery_subscribers: 20,
                delivery_post_connections: 4,
                streams: 200,
                stream_connections: 10,
                stream_steps: 4,
                stream_settle_secs: 0.3,
                catchup_events: 20_000,
            },
        }
    }
}

/// What every scenario gets.
pub(crate) struct Ctx<'a> {
    /// The server runtime: paygate, the emulator and the baselines' servers run here.
    pub server: tokio::runtime::Handle,
    pub sizes: Sizes,
    pub options: &'a Options,
    /// The run's temp dir (databases).
    pub dir: PathBuf,
    /// Short random id: references of this run are unique.
    pub run_id: String,
    /// Tiny runs are not judged against targets.
    pub tiny: bool,
}

/// The `paygate bench` command. Runs on a thread of its own (it builds its own runtimes).
pub async fn run(
    scenario: String,
    size: Option<String>,
    out: Option<String>,
) -> anyhow::Result<()> {
    if scenario == CHILD_SCENARIO {
        return streams::child_main().await;
    }
    let options = Options {
        size: Size::parse(size.as_deref())?,
        out: out.map(PathBuf::from),
        ..Options::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench".into())
        .spawn(move || {
            let _ = tx.send(run_blocking(&scenario, &options));
        })?;
    rx.await.context("the benchmark thread stopped")??;
    Ok(())
}

/// Runs a scenario (or `all`) to the end: progress on stderr, the table on stdout, the JSON
/// written. Must not be called from inside a tokio runtime. Fails if any scenario failed (after
/// writing what the others measured).
pub fn run_blocking(scenario: &str, options: &Options) -> anyhow::Result<Outcome> {
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
    let name = scenario.to_owned();
    let options = options.clone();
    // A thread of its own, so pinning it never leaks into the caller's thread.
    std::thread::Builder::new()
        .name("bench-main".into())
        .spawn(move || orchestrate(&name, &list, &options))?
        .join()
        .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

/// Removes the run's temp dir when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn orchestrate(name: &str, list: &[&'static str], options: &Options) -> anyhow::Result<Outcome> {
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let sizes = Sizes::with_overrides(options.size)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let dir = TempDir(std::env::temp_dir().join(format!("paygate-bench-{run_id}")));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let machine = machine::describe();
    eprintln!(
        "paygate bench {name} — size {} — {} build — {} × {} — load average {}",
        options.size.name(),
        machine::build_profile(),
        machine["logical_cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine::loadavg().unwrap_or_default(),
    );
    if cfg!(debug_assertions) {
        eprintln!("  (debug build: figures are meaningless; use --release)");
    }
    let isolated = std::env::var_os(ISOLATED_ENV).is_some();
    let fsync = if isolated {
        json!({"skipped": "measured by the parent run"})
    } else {
        let probe = machine::fsync_probe(&dir.0, sizes.fsync_secs)?;
        eprintln!("  disk: {}", machine::fsync_line(&probe));
        probe
    };
    // The CPUs of the process (this thread gets pinned with the load later).
    let all_cpus = machine::cpus_allowed_list().unwrap_or_default();

    let mut scenarios = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for scenario in list {
        if RUN_ISOLATED.contains(scenario) && !isolated {
            if let Some(exe) = streams::client_exe(options.client_exe.as_ref()) {
                let _ = rig::pin_current(&rig::parse_cpu_list(&all_cpus));
                match run_isolated(&exe, scenario, options, &dir.0) {
                    Ok((entry, summary)) => {
                        if entry.get("error").is_some() {
                            failed.push(*scenario);
                        }
                        rows.extend(summary);
                        scenarios.insert((*scenario).to_owned(), entry);
                    }
                    Err(e) => {
                        eprintln!("\n{scenario} FAILED: {e:#}");
                        rows.push(
                            Row::new(scenario, "(scenario failed)", format!("{e:#}"))
                                .verdict("FAILED"),
                        );
                        scenarios
                            .insert((*scenario).to_owned(), json!({"error": format!("{e:#}")}));
                        failed.push(*scenario);
                    }
                }
                continue;
            }
        }
        let rig = rig::Rig::build()?;
        eprintln!("{scenario}: {}", rig.summary());
        let ctx = Ctx {
            server: rig.server.handle().clone(),
            sizes: sizes.clone(),
            options,
            dir: dir.0.clone(),
            run_id: run_id.clone(),
            tiny: options.size == Size::Tiny,
        };
        let load_before = machine::loadavg();
        let t = Instant::now();
        let result = rig.load.block_on(run_scenario(scenario, &ctx));
        let layout = rig.layout.clone();
        rig.shutdown();
        let seconds = report::round3(t.elapsed().as_secs_f64());
        match result {
            Ok(report) => {
                rows.extend(report.rows.iter().cloned());
                scenarios.insert(
                    (*scenario).to_owned(),
                    json!({
                        "figures": report.figures,
                        "summary": report.rows,
                        "notes": report.notes,
                        "seconds": seconds,
                        "loadavg_before": load_before,
                        "loadavg_after": machine::loadavg(),
                        "runtimes": layout,
                    }),
                );
            }
            Err(e) => {
                eprintln!("\n{scenario} FAILED: {e:#}");
                rows.push(
                    Row::new(scenario, "(scenario failed)", format!("{e:#}")).verdict("FAILED"),
                );
                scenarios.insert(
                    (*scenario).to_owned(),
                    json!({"error": format!("{e:#}"), "seconds": seconds, "runtimes": layout}),
                );
                failed.push(*scenario);
            }
        }
    }

    let json = json!({
        "suite": "paygate bench",
        "scenario": name,
        "size": options.size.name(),
        "started": started.to_rfc3339(),
        "seconds": report::round3(clock.elapsed().as_secs_f64()),
        "machine": machine,
        "fsync": fsync,
        "sizes": sizes,
        "scenarios": scenarios,
        "summary": rows,
        "targets_judged": options.size != Size::Tiny,
    });
    let path = options
        .out
        .clone()
        .unwrap_or_else(|| Path::new("bench-results").join(format!("{name}.json")));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;

    println!();
    println!("{}", report::table(&rows));
    if !isolated {
        println!("disk: {}", machine::fsync_line(&fsync));
    }
    if options.size == Size::Tiny {
        println!("(tiny size: smoke figures, not judged against the targets)");
    }
    println!(
        "every figure: {} ({:.0} s)",
        path.display(),
        clock.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {}", failed.join(", "));
    Ok(Outcome { path, json, rows })
}

/// Runs one scenario in a fresh `paygate bench` process; returns its JSON entry and rows.
fn run_isolated(
    exe: &Path,
    scenario: &str,
    options: &Options,
    dir: &Path,
) -> anyhow::Result<(Value, Vec<Row>)> {
    let out = dir.join(format!("{scenario}-isolated.json"));
    eprintln!("{scenario}: in a fresh process ({})", exe.display());
    let mut command = Command::new(exe);
    command
        .args(["bench", scenario, "--size", options.size.name(), "--out"])
        .arg(&out)
        .env(ISOLATED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = &options.database_url {
        command.env("BENCH_DATABASE_URL", url);
    }
    let status = command
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    let json: Value = serde_json::from_slice(
        &std::fs::read(&out).with_context(|| format!("{scenario} ({status}) wrote no figures"))?,
    )?;
    let mut entry = json["scenarios"][scenario].clone();
    let rows: Vec<Row> = serde_json::from_value(entry["summary"].clone()).unwrap_or_default();
    if let Some(e) = entry.as_object_mut() {
        e.insert("process".into(), "isolated".into());
    }
    Ok((entry, rows))
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
