//! paygate itself, built from a `Config` and served on the server runtime, with a fresh database
//! (a SQLite file in the run's temp dir, or a new PostgreSQL database dropped afterwards).

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{sync::oneshot, task::JoinHandle};

use super::Ctx;
use crate::{app::Application, config::Config, payments::Payments, webhooks::WebhookStats};

/// The webhook secret paygate is configured with (`VIPPS_WEBHOOK_SECRET`), so the suite can sign.
pub const SECRET: &str = "paygate-bench-webhook-secret-0123456789";

/// Which database paygate runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// An admin URL; a fresh database is created beside it for the run.
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// A running paygate.
pub struct Paygate {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub emulator_url: Option<String>,
    pub payments: Payments,
    pub stats: Arc<WebhookStats>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    database: Database,
}

enum Database {
    Sqlite,
    Postgres { admin: String, name: String },
}

impl Paygate {
    /// Builds and starts paygate on the server runtime (`tag` names its SQLite file).
    pub async fn start(ctx: &Ctx<'_>, backend: &Backend, tag: &str) -> anyhow::Result<Self> {
        let (url, database) = match backend {
            Backend::Sqlite => {
                let path = ctx.dir.join(format!("{tag}.db"));
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Database::Sqlite,
                )
            }
            Backend::Postgres(admin) => {
                let name = format!("paygate_bench_{}", uuid::Uuid::new_v4().simple());
                let url = create_database(admin, &name).await?;
                (
                    url,
                    Database::Postgres {
                        admin: admin.clone(),
                        name,
                    },
                )
            }
        };
        let values: HashMap<String, String> = [
            ("PAYGATE_GRPC_ADDR", "127.0.0.1:0"),
            ("PAYGATE_HTTP_ADDR", "127.0.0.1:0"),
            ("PAYGATE_EMULATOR_ADDR", "127.0.0.1:0"),
            ("VIPPS_WEBHOOK_SECRET", SECRET),
            ("DATABASE_URL", url.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let config = Config::from_values(&values)?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = ctx.server.spawn(async move {
            let app = Application::build(config).await?;
            let _ = ready_tx.send((
                app.grpc_addr(),
                app.http_addr(),
                app.emulator().map(|e| e.base_url()),
                app.payments().clone(),
                app.webhook_stats(),
            ));
            app.run(async {
                let _ = stopped.await;
            })
            .await
        });
        let Ok((grpc_addr, http_addr, emulator_url, payments, stats)) = ready_rx.await else {
            let why = match task.await {
                Ok(Err(e)) => format!("{e:#}"),
                Ok(Ok(())) => "stopped at once".into(),
                Err(e) => e.to_string(),
            };
            if let Database::Postgres { admin, name } = &database {
                let _ = drop_database(admin, name).await;
            }
            anyhow::bail!("paygate did not start: {why}");
        };
        Ok(Self {
            grpc_addr,
            http_addr,
            emulator_url,
            payments,
            stats,
            stop: Some(stop),
            task: Some(task),
            database,
        })
    }

    /// Stops paygate (bounded wait) and drops its PostgreSQL database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut result = Ok(());
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(r)) => result = r,
                Ok(Err(e)) => result = Err(e.into()),
                Err(_) => eprintln!("  (paygate did not stop within 15 s; moving on)"),
            }
        }
        if let Database::Postgres { admin, name } = &self.database {
            drop_database(admin, name).await?;
        }
        result
    }
}

/// The PostgreSQL admin URL for the run: `BENCH_DATABASE_URL` (or the option), else the local
/// default; `none` skips PostgreSQL.
pub fn postgres_admin_url(option: Option<&str>) -> Option<String> {
    let url = option
        .map(str::to_owned)
        .or_else(|| std::env::var("BENCH_DATABASE_URL").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    (url != "none").then_some(url)
}

async fn create_database(admin: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {admin}"))?;
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await?;
    let _ = conn.close().await;
    let mut url = url::Url::parse(admin)?;
    url.set_path(name);
    Ok(url.to_string())
}

async fn drop_database(admin: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::Executor::execute(
        &mut conn,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
    )
    .await?;
    let _ = conn.close().await;
    Ok(())
}

/// PostgreSQL's durability settings, to show the figures were taken with durable commits.
pub async fn postgres_durability(admin: &str) -> anyhow::Result<serde_json::Value> {
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
