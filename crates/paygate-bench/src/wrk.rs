//! wrk as the external load generator of the webhook scenarios: a Lua script replays a file of
//! pre-signed, distinct webhooks, each exactly once, over HTTP/1.1 keep-alive connections
//! (`wrk -t1 -c64`), and prints its summary (requests, duration, errors, latency percentiles)
//! as one JSON line. While it runs, the suite samples the server's accepted counter from its
//! `/metrics` every 100 ms (throughput over time) and reads the server's CPU time before and
//! after; wrk's own CPU time comes from `getrusage(RUSAGE_CHILDREN)` around its exit.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::{machine, progress::Progress, report, Ctx};

/// The replay script. Requests in the file are separated by NUL bytes. Each thread sends its own
/// `chunk` of them; after that it stops (requests still in flight then take the next ones from
/// its own `slack`, so nothing is ever sent twice). With more than one thread, the first to
/// finish stops them all.
const SCRIPT: &str = r#"-- paygate-bench: replay pre-signed requests from a file, each exactly once.
-- wrk's main thread sleeps for the whole -d duration even when every thread has stopped, so the
-- thread that finishes sends SIGINT to its own process (which ends that sleep), and the script
-- times its own window: from its first request to the moment it stops.
local ffi = require("ffi")
ffi.cdef[[
int kill(int pid, int sig);
int getpid(void);
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local file = os.getenv("BENCH_WRK_FILE")
local chunk = tonumber(os.getenv("BENCH_WRK_CHUNK"))
local slack = tonumber(os.getenv("BENCH_WRK_SLACK"))
local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS"))
local next_id = 0
local all = {}

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  all[#all + 1] = thread
end

local requests = {}
local sent = 0
t_start = 0
t_stop = 0

function init(args)
  local f = assert(io.open(file, "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while true do
    local nul = string.find(data, "\0", pos, true)
    if not nul then break end
    requests[#requests + 1] = string.sub(data, pos, nul - 1)
    pos = nul + 1
  end
  -- wrk calls request() once on the first thread to check it; that one is not sent.
  if id == 0 then sent = -1 end
end

function request()
  sent = sent + 1
  if sent < 1 then return requests[1] end
  if sent == 1 then t_start = now_us() end
  if sent <= chunk then return requests[id * chunk + sent] end
  if sent == chunk + 1 then
    t_stop = now_us()
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
  local extra = (sent - chunk - 1) % slack
  return requests[nthreads * chunk + id * slack + extra + 1]
end

function done(summary, latency, requests)
  local first, last = nil, 0
  for _, t in ipairs(all) do
    local a, b = t:get("t_start"), t:get("t_stop")
    if a and a > 0 and (first == nil or a < first) then first = a end
    if b and b > last then last = b end
  end
  local window = 0
  if first and last > first then window = last - first end
  local e = summary.errors
  local out = {}
  for _, p in ipairs({0.1, 1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 97.5,
                      99, 99.5, 99.9, 99.95, 99.99, 100}) do
    out[#out + 1] = string.format("[%g,%d]", p, latency:percentile(p))
  end
  io.write(string.format(
    'BENCH_WRK {"window_us":%d,"duration_us":%d,"requests":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"min_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"percentiles":[%s]}\n',
    window, summary.duration, summary.requests, e.connect, e.read, e.write, e.status,
    e.timeout, latency.min, latency.mean, latency.max, table.concat(out, ",")))
end
"#;

/// Fails with the instruction when wrk is not on PATH.
pub fn ensure_installed() -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("wrk").is_file()));
    anyhow::ensure!(
        found,
        "wrk is not installed (the webhook scenarios use it as the load generator): apt-get install -y wrk"
    );
    Ok(())
}

/// Where to read a server's accepted-webhook counter.
#[derive(Clone)]
pub struct Counter {
    pub metrics: SocketAddr,
    pub name: &'static str,
}

impl Counter {
    pub async fn read(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        let text = http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await?
            .text()
            .await?;
        Ok(crate::paygate::parse_metrics(&text)
            .get(self.name)
            .copied()
            .unwrap_or(0.0) as u64)
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct WrkResult {
    pub connections: usize,
    /// Responses (any status).
    pub requests: u64,
    pub duration_s: f64,
    /// Responses with status ≥ 400.
    pub non_2xx: u64,
    /// connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    /// (percentile, microseconds).
    pub percentiles: Vec<(f64, f64)>,
    pub mean_us: f64,
    /// wrk's own CPU time, microseconds.
    pub wrk_cpu_us: u64,
    /// (seconds since wrk started, the server's counter).
    pub samples: Vec<(f64, u64)>,
    /// The server's counter before and after (settled).
    pub counted: u64,
    /// The server's CPU time over the run, milliseconds.
    pub server_cpu_ms: u64,
}

impl WrkResult {
    /// 2xx answers per second (wrk's duration).
    pub fn rate(&self) -> f64 {
        self.requests.saturating_sub(self.non_2xx) as f64 / self.duration_s.max(1e-9)
    }

    pub fn ok(&self) -> u64 {
        self.requests.saturating_sub(self.non_2xx)
    }

    pub fn pct(&self, p: f64) -> f64 {
        self.percentiles
            .iter()
            .find(|(q, _)| (*q - p).abs() < 1e-9)
            .map_or(f64::NAN, |(_, us)| *us)
    }

    pub fn failed(&self) -> u64 {
        self.non_2xx + self.socket_errors.iter().sum::<u64>()
    }

    /// Server CPU per accepted webhook, microseconds.
    pub fn cpu_per_webhook_us(&self) -> f64 {
        self.server_cpu_ms as f64 * 1000.0 / self.counted.max(1) as f64
    }

    /// wrk's CPU as a share of one core over the run.
    pub fn wrk_cpu_share(&self) -> f64 {
        self.wrk_cpu_us as f64 / 1e6 / self.duration_s.max(1e-9)
    }

    /// Throughput over 0.5 s windows of samples: (mid-window seconds, per second).
    pub fn rate_over_time(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut from = 0;
        for (i, &(t, n)) in self.samples.iter().enumerate() {
            let (t0, n0) = self.samples[from];
            if t - t0 >= 0.5 || (i + 1 == self.samples.len() && t > t0) {
                out.push(((t0 + t) / 2.0, n.saturating_sub(n0) as f64 / (t - t0)));
                from = i;
            }
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "connections": self.connections,
            "responses": self.requests,
            "ok": self.ok(),
            "duration_s": report::round3(self.duration_s),
            "per_s": report::round1(self.rate()),
            "non_2xx": self.non_2xx,
            "socket_errors": {
                "connect": self.socket_errors[0], "read": self.socket_errors[1],
                "write": self.socket_errors[2], "timeout": self.socket_errors[3],
            },
            "latency_us": {
                "mean": self.mean_us,
                "p50": self.pct(50.0), "p90": self.pct(90.0), "p99": self.pct(99.0),
                "p999": self.pct(99.9), "max": self.pct(100.0),
                "percentiles": self.percentiles,
            },
            "server_counted": self.counted,
            "server_cpu_ms": self.server_cpu_ms,
            "server_cpu_per_webhook_us": report::round1(self.cpu_per_webhook_us()),
            "wrk_cpu_ms": self.wrk_cpu_us / 1000,
            "wrk_cpu_share_of_one_core": report::round3(self.wrk_cpu_share()),
            "samples_s_count": self.samples,
        })
    }
}

/// One replay: `count` requests from `file` (which holds `count + slack(connections)` of them)
/// to `target` over `connections` connections. `server_pid` is the process whose CPU is read.
#[allow(clippy::too_many_arguments)]
pub async fn replay(
    ctx: &Ctx<'_>,
    label: &str,
    target: SocketAddr,
    file: &Path,
    count: u64,
    connections: usize,
    counter: &Counter,
    server_pid: u32,
) -> anyhow::Result<WrkResult> {
    let threads = ctx.sizes.wrk_threads.max(1);
    let connections = connections.max(threads);
    let chunk = count / threads as u64;
    let script = ctx.dir.join("replay.lua");
    if !script.exists() {
        std::fs::write(&script, SCRIPT)?;
    }
    let http = reqwest::Client::new();
    let before = counter.read(&http).await?;
    let cpu_before = machine::proc_stat(server_pid).map_or(0, |s| s.cpu_ms);
    let children_before = machine::children_cpu_us();
    // An upper bound only: the script stops wrk once every request is sent.
    let limit = 30 + count / 500;
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{limit}s"))
        .args(["--timeout", "30s", "-s"])
        .arg(&script)
        .arg(format!("http://{target}/webhooks/vipps"))
        .env("BENCH_WRK_FILE", file)
        .env("BENCH_WRK_CHUNK", chunk.to_string())
        .env("BENCH_WRK_SLACK", slack(connections, threads).to_string())
        .env("BENCH_WRK_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = ctx
        .layout
        .spawn_load(&mut command)
        .context("starting wrk (apt-get install -y wrk)")?;
    let started = Instant::now();
    let progress = Progress::start(label, Duration::ZERO);
    let mut waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let mut samples = vec![(0.0, 0u64)];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let output = loop {
        tokio::select! {
            out = &mut waiting => break out??,
            _ = tick.tick() => {
                if let Ok(n) = counter.read(&http).await {
                    let n = n.saturating_sub(before);
                    samples.push((started.elapsed().as_secs_f64(), n));
                    progress.set(n);
                }
            }
        }
    };
    let wrk_cpu_us = machine::children_cpu_us().saturating_sub(children_before);
    let cpu_after = machine::proc_stat(server_pid).map_or(0, |s| s.cpu_ms);
    if let Ok(n) = counter.read(&http).await {
        samples.push((started.elapsed().as_secs_f64(), n.saturating_sub(before)));
    }
    progress.finish();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_WRK "))
        .with_context(|| {
            format!(
                "wrk printed no summary ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
    let v: Value = serde_json::from_str(line).context("wrk's summary")?;
    let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let percentiles = v["percentiles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    // In-flight requests answered after wrk stopped still count on the server: settle.
    let mut counted = counter.read(&http).await?.saturating_sub(before);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counter.read(&http).await?.saturating_sub(before);
        if now == counted {
            break;
        }
        counted = now;
    }
    Ok(WrkResult {
        connections,
        requests: num("requests") as u64,
        // The script's own window (first request to stop); wrk's duration if it has none.
        duration_s: if num("window_us") > 0.0 {
            num("window_us") / 1e6
        } else {
            num("duration_us") / 1e6
        },
        non_2xx: num("status") as u64,
        socket_errors: [
            num("connect") as u64,
            num("read") as u64,
            num("write") as u64,
            num("timeout") as u64,
        ],
        percentiles,
        mean_us: num("mean_us"),
        wrk_cpu_us,
        samples,
        counted,
        server_cpu_ms: cpu_after.saturating_sub(cpu_before),
    })
}

/// Extra distinct requests per thread for those still in flight when a thread stops.
pub fn slack(connections: usize, threads: usize) -> u64 {
    (2 * connections / threads.max(1)) as u64 + 8
}

/// How many requests a replay file for `count` needs.
pub fn file_len(count: u64, connections: usize, threads: usize) -> u64 {
    let threads = threads.max(1);
    let chunk = count / threads as u64;
    chunk * threads as u64 + slack(connections, threads) * threads as u64
}
