//! The real paygate binary as a child process on the server CPU, configured through its
//! environment only, with a fresh database (a SQLite file in the run's temp dir, or a new
//! PostgreSQL database dropped afterwards) and the Vipps emulator in a process of its own
//! (`VIPPS_BASE_URL`), so a production build without the built-in emulator works too.
//!
//! Everything the suite learns from paygate comes through its public interfaces: gRPC, the
//! webhook endpoint, `/readyz` and the Prometheus text on `/metrics`.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::{
    servers::{Kind, ServerProc},
    Ctx,
};

/// The webhook secret paygate is configured with (`VIPPS_WEBHOOK_SECRET`), so the suite can sign.
pub const SECRET: &str = "paygate-bench-webhook-secret-0123456789";

/// Where the paygate binary is: the option (`--paygate`), else `PAYGATE_BIN`, else `paygate`
/// next to this executable (the same target dir). Fails with one line saying what to do.
pub fn locate(option: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (path, how) = if let Some(p) = option {
        (p.to_path_buf(), "--paygate")
    } else if let Some(p) = std::env::var_os("PAYGATE_BIN").filter(|p| !p.is_empty()) {
        (PathBuf::from(p), "PAYGATE_BIN")
    } else {
        let exe = std::env::current_exe().context("locating paygate-bench itself")?;
        let dir = exe.parent().context("paygate-bench has no directory")?;
        (dir.join("paygate"), "next to paygate-bench")
    };
    anyhow::ensure!(
        path.is_file(),
        "no paygate binary at {} ({how}): build it (cargo build --release -p paygate) or pass --paygate PATH / PAYGATE_BIN",
        path.display()
    );
    Ok(path)
}

/// Which database paygate runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// An admin URL; a fresh database is created beside it for the run.
    Postgres(String),
}

/// A running paygate (and the emulator it talks to).
pub struct Paygate {
    child: Child,
    pub pid: u32,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub emulator: ServerProc,
    http: reqwest::Client,
    database: Option<FreshDatabase>,
    log: PathBuf,
}

impl Paygate {
    /// Starts paygate on the server CPU and waits until `/readyz` answers 200. `tag` names its
    /// files; `extra` adds or overrides environment variables.
    pub async fn start(
        ctx: &Ctx<'_>,
        backend: &Backend,
        tag: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let emulator = ServerProc::start(
            &ctx.layout,
            Kind::Emulator,
            &[],
            &ctx.dir.join(format!("{tag}-emulator.log")),
        )
        .await?;
        let (url, database) = match backend {
            Backend::Sqlite => {
                let path = ctx.dir.join(format!("{tag}.db"));
                (format!("sqlite://{}?mode=rwc", path.display()), None)
            }
            Backend::Postgres(admin) => {
                let db = FreshDatabase::create(admin, "paygate_bench").await?;
                (db.url.clone(), Some(db))
            }
        };
        let grpc_addr = free_addr()?;
        let http_addr = free_addr()?;
        let log = ctx.dir.join(format!("{tag}-paygate.log"));
        let mut command = Command::new(&ctx.paygate);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PAYGATE_GRPC_ADDR", grpc_addr.to_string())
            .env("PAYGATE_HTTP_ADDR", http_addr.to_string())
            .env("DATABASE_URL", &url)
            .env("VIPPS_BASE_URL", format!("http://{}", emulator.addr))
            .env("VIPPS_CLIENT_ID", "paygate-bench")
            .env("VIPPS_CLIENT_SECRET", "paygate-bench")
            .env("VIPPS_SUBSCRIPTION_KEY", "paygate-bench")
            .env("VIPPS_MSN", "123456")
            .env("VIPPS_WEBHOOK_SECRET", SECRET)
            // The URL the suite signs webhooks for (a real Vipps needs it; loopback may be http).
            .env(
                "PAYGATE_WEBHOOK_PUBLIC_URL",
                format!("http://{http_addr}/webhooks/vipps"),
            )
            .env("PAYGATE_ALLOW_UNAUTHENTICATED", "true")
            .env("PAYGATE_SHUTDOWN_GRACE_MS", "2000")
            .env("RUST_LOG", ctx.paygate_log_level.as_str())
            .envs(ctx.paygate_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = match ctx.layout.spawn_server(&mut command) {
            Ok(child) => child,
            Err(e) => {
                emulator.stop().await;
                if let Some(db) = database {
                    db.drop_it().await;
                }
                return Err(e).with_context(|| format!("starting {}", ctx.paygate.display()));
            }
        };
        let mut paygate = Self {
            pid: child.id(),
            child,
            grpc_addr,
            http_addr,
            emulator,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            database,
            log,
        };
        if let Err(e) = paygate.wait_ready(Duration::from_secs(60)).await {
            let why = format!("{e:#}; paygate's log: {}", crate::tail(&paygate.log, 8));
            paygate.stop().await;
            anyhow::bail!("paygate did not become ready: {why}");
        }
        Ok(paygate)
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!("it exited ({status})");
            }
            if let Ok(r) = self
                .http
                .get(format!("http://{}/readyz", self.http_addr))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "not ready within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// paygate's `/metrics`, parsed (`name{labels}` → value).
    pub async fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.http_addr))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(parse_metrics(&text))
    }

    /// The webhook counters paygate exports.
    pub async fn webhook_counters(&self) -> anyhow::Result<WebhookCounters> {
        let m = self.metrics().await?;
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0) as u64;
        Ok(WebhookCounters {
            accepted: get("paygate_webhooks_accepted_total"),
            duplicate: get("paygate_webhooks_duplicate_total"),
            appended_webhook: get("paygate_events_appended_total{source=\"webhook\"}"),
            appended_all: m
                .iter()
                .filter(|(k, _)| k.starts_with("paygate_events_appended_total"))
                .map(|(_, v)| *v as u64)
                .sum(),
        })
    }

    /// Waits until the webhook counters stop moving (in-flight requests done), bounded.
    pub async fn settled_counters(&self) -> anyhow::Result<WebhookCounters> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = self.webhook_counters().await?;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.webhook_counters().await?;
            if now == last || Instant::now() > deadline {
                return Ok(now);
            }
            last = now;
        }
    }

    /// SIGTERM (paygate drains and exits), killed after 15 s; then the emulator and the
    /// PostgreSQL database go.
    pub async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child;
        let _ = tokio::task::spawn_blocking(move || {
            for _ in 0..150 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("  (paygate did not stop within 15 s of SIGTERM; killed)");
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
        self.emulator.stop().await;
        if let Some(db) = self.database.take() {
            db.drop_it().await;
        }
    }
}

/// paygate's webhook counters from `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounters {
    pub accepted: u64,
    pub duplicate: u64,
    /// `paygate_events_appended_total{source="webhook"}`.
    pub appended_webhook: u64,
    /// Every source.
    pub appended_all: u64,
}

impl WebhookCounters {
    pub fn since(&self, before: &Self) -> Self {
        Self {
            accepted: self.accepted.saturating_sub(before.accepted),
            duplicate: self.duplicate.saturating_sub(before.duplicate),
            appended_webhook: self
                .appended_webhook
                .saturating_sub(before.appended_webhook),
            appended_all: self.appended_all.saturating_sub(before.appended_all),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "paygate_webhooks_accepted_total": self.accepted,
            "paygate_webhooks_duplicate_total": self.duplicate,
            "paygate_events_appended_total{source=\"webhook\"}": self.appended_webhook,
            "paygate_events_appended_total (all sources)": self.appended_all,
        })
    }
}

/// Prometheus text format → `name{labels}` (labels as printed) → value. Comments skipped.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.trim().rsplit_once(' ')?;
            Some((key.trim().to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A free loopback port, for paygate's listeners (the small race with other processes is
/// accepted: paygate then fails to bind and says so).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The PostgreSQL admin URL for the run: the option, `BENCH_DATABASE_URL`, else the local
/// default; `none` skips PostgreSQL.
pub fn postgres_admin_url(option: Option<&str>) -> Option<String> {
    let url = option
        .map(str::to_owned)
        .or_else(|| std::env::var("BENCH_DATABASE_URL").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    (url != "none").then_some(url)
}

/// A database created for one run and dropped afterwards.
pub struct FreshDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl FreshDatabase {
    pub async fn create(admin: &str, prefix: &str) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin}"))?;
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(admin)?;
        url.set_path(&name);
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    pub async fn drop_it(self) {
        use sqlx::Connection as _;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::Executor::execute(
                &mut conn,
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str(),
            )
            .await;
            let _ = conn.close().await;
        }
    }
}

/// PostgreSQL's durability settings, to show the figures were taken with durable commits.
pub async fn postgres_durability(admin: &str) -> anyhow::Result<Value> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    let mut out = serde_json::Map::new();
    for setting in [
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "server_version",
    ] {
        let (value,): (String,) = sqlx::query_as(&format!("SHOW {setting}"))
            .fetch_one(&mut conn)
            .await?;
        out.insert(setting.into(), value.into());
    }
    let _ = conn.close().await;
    Ok(out.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let m = parse_metrics(
            "# HELP x y\n# TYPE paygate_webhooks_accepted_total counter\n\
             paygate_webhooks_accepted_total 12\n\
             paygate_events_appended_total{source=\"webhook\"} 7\n\n",
        );
        assert_eq!(m["paygate_webhooks_accepted_total"], 12.0);
        assert_eq!(m["paygate_events_appended_total{source=\"webhook\"}"], 7.0);
    }
}
