//! The two runtimes of a scenario: the server runtime (paygate, the emulator and the baselines)
//! and the load runtime (the clients), each with a fixed number of worker threads, pinned to
//! disjoint CPUs where the machine has at least two.
//!
//! Pinning uses `taskset` (no `unsafe` here, and no extra crate): the thread that builds a
//! runtime pins itself first, and every thread it starts (tokio workers, and through them the
//! blocking pool and sqlx's SQLite worker threads) inherits that CPU set.

use std::{process::Command, time::Duration};

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::runtime::{Builder, Runtime};

use super::machine;

pub struct Rig {
    pub server: Runtime,
    pub load: Runtime,
    pub layout: Value,
}

impl Rig {
    /// Builds both runtimes and pins the calling (orchestrating) thread with the load.
    pub fn build() -> anyhow::Result<Self> {
        let allowed = parse_cpu_list(&machine::cpus_allowed_list().unwrap_or_default());
        let want_pin = std::env::var("BENCH_PIN").map_or(true, |v| v != "0");
        let pin = want_pin && allowed.len() >= 2;
        let split = (allowed.len() / 2).max(1).min(allowed.len());
        let (server_cpus, load_cpus) = allowed.split_at(split);
        let threads = |key: &str| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(1)
        };
        let server_threads = threads("BENCH_SERVER_THREADS");
        let load_threads = threads("BENCH_LOAD_THREADS");
        let (server, server_pin) = runtime_on(
            "bench-server",
            server_threads,
            pin.then(|| server_cpus.to_vec()),
        )?;
        let (load, load_pin) =
            runtime_on("bench-load", load_threads, pin.then(|| load_cpus.to_vec()))?;
        let own_pin = if pin {
            pin_current(load_cpus)
        } else {
            Err("not pinned".into())
        };
        let describe = |threads: usize, cpus: &[usize], pinned: &Result<(), String>| {
            json!({
                "worker_threads": threads,
                "cpus": if pinned.is_ok() { cpu_list(cpus) } else { "any".into() },
                "pinning": match pinned { Ok(()) => "taskset".to_owned(), Err(e) => e.clone() },
            })
        };
        Ok(Self {
            layout: json!({
                "server": describe(server_threads, server_cpus, &server_pin),
                "load": describe(load_threads, load_cpus, &load_pin),
                "orchestrator_pinned_with_load": own_pin.is_ok(),
            }),
            server,
            load,
        })
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        let s = &self.layout;
        format!(
            "server runtime: {} worker(s) on CPUs {}; load runtime: {} worker(s) on CPUs {}",
            s["server"]["worker_threads"],
            s["server"]["cpus"].as_str().unwrap_or("?"),
            s["load"]["worker_threads"],
            s["load"]["cpus"].as_str().unwrap_or("?"),
        )
    }

    pub fn shutdown(self) {
        self.load.shutdown_timeout(Duration::from_secs(2));
        self.server.shutdown_timeout(Duration::from_secs(2));
    }
}

fn runtime_on(
    name: &'static str,
    threads: usize,
    cpus: Option<Vec<usize>>,
) -> anyhow::Result<(Runtime, Result<(), String>)> {
    std::thread::Builder::new()
        .name(format!("{name}-init"))
        .spawn(move || {
            let pinned = match &cpus {
                Some(cpus) => pin_current(cpus),
                None => Err("not pinned (fewer than 2 CPUs, or BENCH_PIN=0)".into()),
            };
            let runtime = Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .enable_all()
                .build();
            runtime.map(|r| (r, pinned))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("building the {name} runtime panicked"))?
        .with_context(|| format!("building the {name} runtime"))
}

/// Pins the calling thread to `cpus` with `taskset -p -c`.
pub fn pin_current(cpus: &[usize]) -> Result<(), String> {
    let link = std::fs::read_link("/proc/thread-self").map_err(|e| e.to_string())?;
    let tid = link
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or("no thread id")?
        .to_owned();
    let out = Command::new("taskset")
        .args(["-p", "-c", &cpu_list(cpus), &tid])
        .output()
        .map_err(|e| format!("taskset unavailable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `0-2,5` → [0, 1, 2, 5].
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(c) = part.parse() {
                    out.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(cpu_list(&[0, 3]), "0,3");
    }
}
