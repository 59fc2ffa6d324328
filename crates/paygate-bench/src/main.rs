//! `paygate-bench`: paygate's benchmark suite against the real paygate binary (BENCHMARKS.md).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use paygate_bench::{Options, Size};

/// Benchmarks the paygate binary through its public API, against baselines measured in the
/// same run; writes the figures as JSON and SVG charts.
#[derive(Parser)]
#[command(name = "paygate-bench", version)]
struct Cli {
    /// create-overhead, create-throughput, webhook-ingest, delivery-latency, subscribers,
    /// catch-up, or all.
    scenario: String,
    /// `tiny` (seconds per scenario, for CI) or `default`.
    #[arg(long, default_value = "default")]
    size: String,
    /// The JSON file with every figure (default bench-results/<scenario>.json); the charts are
    /// written beside it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The paygate binary to benchmark (default: `paygate` next to this executable).
    #[arg(long, env = "PAYGATE_BIN")]
    paygate: Option<PathBuf>,
    /// PostgreSQL admin URL for the PostgreSQL ingest runs (`none` skips them).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// The recorded run whose ratios this run is compared with (default: the --out file as it
    /// was before this run; `none`: no comparison).
    #[arg(long)]
    compare: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(result) = paygate_bench::child_command(&args) {
        return exit(result);
    }
    let cli = Cli::parse();
    let options = match Size::parse(&cli.size) {
        Ok(size) => Options {
            size,
            out: cli.out,
            paygate: cli.paygate,
            database_url: cli.database_url,
            compare: cli.compare,
        },
        Err(e) => return exit(Err(e)),
    };
    exit(paygate_bench::run(&cli.scenario, &options).map(|_| ()))
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paygate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
