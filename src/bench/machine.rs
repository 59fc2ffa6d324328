//! The machine the figures were taken on: CPU, memory, load, the disk's fsync rate, and RSS.

use std::{
    fs::OpenOptions,
    io::Write as _,
    os::unix::fs::FileExt as _,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::report::{self, Latency};

/// CPU, memory, kernel and build.
pub fn describe() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    json!({
        "cpu_model": model,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpus_allowed": cpus_allowed_list(),
        "memory_mib": mem_kib.map(|k| k / 1024),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        "loadavg_at_start": loadavg(),
        "build": build_profile(),
        "paygate_version": env!("CARGO_PKG_VERSION"),
        "temp_dir": std::env::temp_dir().display().to_string(),
    })
}

/// `release` or `debug` (figures from a debug build mean little).
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The 1-, 5- and 15-minute load averages (a busy shared machine shows here).
pub fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The CPUs this process may run on, as the kernel lists them (e.g. `0-1`).
pub fn cpus_allowed_list() -> Option<String> {
    status_field("/proc/self/status", "Cpus_allowed_list:")
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_field("/proc/self/status", "VmRSS:")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

pub fn status_field(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
}

/// Writes 4 KiB and `fdatasync`s it, in a loop, for `secs` each: appending (what a WAL
/// does) and overwriting one block in place.
pub fn fsync_probe(dir: &Path, secs: f64) -> anyhow::Result<Value> {
    let path = dir.join("fsync-probe.bin");
    let block = [0x5a_u8; 4096];
    let span = Duration::from_secs_f64(secs);

    let mut append = OpenOptions::new().create(true).append(true).open(&path)?;
    let appended = timed(span, || {
        append.write_all(&block)?;
        append.sync_data()
    })?;
    drop(append);

    let overwrite = OpenOptions::new().write(true).open(&path)?;
    let overwritten = timed(span, || {
        overwrite.write_all_at(&block, 0)?;
        overwrite.sync_data()
    })?;
    drop(overwrite);
    let _ = std::fs::remove_file(&path);
    Ok(json!({
        "method": "write 4 KiB + fdatasync in a loop, in the benchmark's temp dir (same file system as the databases)",
        "append": appended,
        "overwrite": overwritten,
    }))
}

fn timed(span: Duration, mut op: impl FnMut() -> std::io::Result<()>) -> anyhow::Result<Value> {
    let mut h = report::histogram()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < span {
        let t = Instant::now();
        op()?;
        report::record(&mut h, t.elapsed());
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "ops": n,
        "per_s": report::round1(n as f64 / secs),
        "latency": Latency::of(&h),
    }))
}

/// One-line fsync summary for the table and the console.
pub fn fsync_line(probe: &Value) -> String {
    let f = |k: &str| {
        (
            probe[k]["per_s"].as_f64().unwrap_or(0.0),
            probe[k]["latency"]["mean_us"].as_f64().unwrap_or(0.0),
        )
    };
    let (a, am) = f("append");
    let (o, om) = f("overwrite");
    format!(
        "fdatasync 4 KiB: append {} (mean {}), overwrite {} (mean {})",
        report::fmt_rate(a),
        report::fmt_us(am),
        report::fmt_rate(o),
        report::fmt_us(om)
    )
}
