//! The machine the figures were taken on (CPU, memory, load, the disk's fsync rate) and what a
//! process costs (CPU time, resident memory), read with `sysinfo`.

use std::{
    fs::OpenOptions,
    io::Write as _,
    os::unix::fs::FileExt as _,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sysinfo::{CpuRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use crate::report::{self, Latency};

/// CPU, memory, kernel and build.
pub fn describe() -> Value {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
    );
    let model = sys
        .cpus()
        .first()
        .map_or_else(|| "unknown".to_owned(), |c| c.brand().trim().to_owned());
    json!({
        "cpu_model": model,
        "logical_cpus": sys.cpus().len(),
        "cpus_allowed": core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        "memory_mib": sys.total_memory() / (1024 * 1024),
        "kernel": System::kernel_version().unwrap_or_default(),
        "os": System::long_os_version().unwrap_or_default(),
        "loadavg_at_start": loadavg(),
        "build": build_profile(),
        "suite_version": env!("CARGO_PKG_VERSION"),
        "temp_dir": std::env::temp_dir().display().to_string(),
    })
}

/// `release` or `debug` (of this suite; the paygate binary's profile is its own).
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The 1-, 5- and 15-minute load averages (a busy shared machine shows here).
pub fn loadavg() -> String {
    let l = System::load_average();
    format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen)
}

/// CPU time and resident memory of one process (all its threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStat {
    /// User + system CPU time, milliseconds (the kernel counts in 10 ms ticks).
    pub cpu_ms: u64,
    /// Resident set size, bytes.
    pub rss: u64,
}

/// Reads `pid`'s CPU time and RSS; None once it is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let mut sys = System::new();
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .without_tasks(),
    );
    sys.process(pid).map(|p| ProcStat {
        cpu_ms: p.accumulated_cpu_time(),
        rss: p.memory(),
    })
}

/// CPU time this process has used so far (all threads), microseconds, from `getrusage`.
pub fn own_cpu_us() -> u64 {
    rusage_us(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// CPU time of this process's children that have been waited for, microseconds.
pub fn children_cpu_us() -> u64 {
    rusage_us(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
}

fn rusage_us(who: nix::sys::resource::UsageWho) -> u64 {
    nix::sys::resource::getrusage(who).map_or(0, |u| {
        let us = |t: nix::sys::time::TimeVal| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
                + u64::try_from(t.tv_usec()).unwrap_or(0)
        };
        us(u.user_time()) + us(u.system_time())
    })
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
        "method": "write 4 KiB + fdatasync in a loop, in the run's temp dir (same file system as the databases)",
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

/// The probe's append p50, microseconds (the fdatasync a WAL commit waits for).
pub fn fsync_p50_us(probe: &Value) -> Option<f64> {
    probe["append"]["latency"]["p50_us"].as_f64()
}

/// One-line fsync summary for the console.
pub fn fsync_line(probe: &Value) -> String {
    let f = |k: &str| {
        (
            probe[k]["per_s"].as_f64().unwrap_or(0.0),
            probe[k]["latency"]["p50_us"].as_f64().unwrap_or(0.0),
        )
    };
    let (a, am) = f("append");
    let (o, om) = f("overwrite");
    format!(
        "fdatasync 4 KiB: append {} (p50 {}), overwrite {} (p50 {})",
        report::fmt_rate(a),
        report::fmt_us(am),
        report::fmt_rate(o),
        report::fmt_us(om)
    )
}
