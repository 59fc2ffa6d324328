//! Wiring: `Application::build(config)` connects the parts and binds both listeners (port 0
//! picks a free port, which is how the tests start it); `run(shutdown)` serves until the
//! shutdown future completes, then drains.

use std::{future::Future, net::SocketAddr};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{
    auth::Authenticator,
    config::Config,
    events::{EventLog, SubscriberSlots},
    grpc::{self, StreamSettings},
    health::Readiness,
    http,
    payments::Payments,
    qr::MerchantQrs,
    store::Store,
    telemetry,
    vipps::{VippsClient, VippsConfig},
    webhooks::{self, Verifier, WebhookIngest},
};

/// A built, not yet running, paygate.
pub struct Application {
    config: Config,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    auth: Authenticator,
    payments: Payments,
    vipps: VippsClient,
    verifier: Verifier,
    /// Where Vipps posts webhooks (the public URL, or the local sidecar in emulator mode).
    webhook_url: Url,
    /// The in-process emulator, when no real Vipps is configured.
    #[cfg(feature = "emulator")]
    emulator: Option<vipps_emulator::RunningEmulator>,
}

impl Application {
    /// Connects (and migrates) the database, starts the emulator if no real Vipps is
    /// configured, builds the Vipps client and binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        telemetry::prometheus::install();
        let auth = Authenticator::from_config(&config.auth, &config.tls)?;
        if auth.is_open() {
            tracing::warn!("the gRPC API is OPEN: no PAYGATE_API_TOKENS and no mutual TLS");
        }
        let store = Store::connect(&config.database)
            .await
            .context("connecting to DATABASE_URL")?;
        store.migrate().await.context("migrating the database")?;
        store
            .release_orphaned_leases()
            .await
            .context("releasing send leases of a crashed predecessor")?;
        #[cfg(feature = "emulator")]
        let (vipps_config, emulator) = match config.vipps.remote() {
            Some(remote) => (VippsConfig::remote(&remote, &config.vipps), None),
            None => {
                let running = start_emulator(config.vipps.emulator_addr).await?;
                let url = Url::parse(&running.base_url()).context("emulator URL")?;
                (VippsConfig::emulator(url, &config.vipps), Some(running))
            }
        };
        #[cfg(not(feature = "emulator"))]
        let vipps_config = match config.vipps.remote() {
            Some(remote) => VippsConfig::remote(&remote, &config.vipps),
            None => anyhow::bail!("invalid configuration: VIPPS_BASE_URL: is required"),
        };
        let vipps = VippsClient::new(vipps_config).context("building the Vipps client")?;
        let log = EventLog::start(store)
            .await
            .context("starting the event log")?;
        let payments = Payments::new(log, vipps.clone());
        let grpc_addr = config.listen.grpc_addr;
        let grpc_listener = TcpListener::bind(grpc_addr)
            .await
            .with_context(|| format!("binding PAYGATE_GRPC_ADDR {grpc_addr}"))?;
        let http_addr = config.listen.http_addr;
        let http_listener = TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("binding PAYGATE_HTTP_ADDR {http_addr}"))?;
        let webhook_url = match &config.webhooks.public_url {
            Some(url) => url.clone(),
            None => local_webhook_url(http_listener.local_addr()?)?,
        };
        let verifier = Verifier::new(&webhook_url, config.webhooks.max_skew);
        if let Some(secret) = &config.webhooks.secret {
            verifier.set_secrets(vec![secret.expose().to_owned()]);
        }
        Ok(Self {
            config,
            grpc_listener,
            http_listener,
            auth,
            payments,
            vipps,
            verifier,
            webhook_url,
            #[cfg(feature = "emulator")]
            emulator,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The in-process emulator, if paygate runs against it.
    #[cfg(feature = "emulator")]
    pub fn emulator(&self) -> Option<&vipps_emulator::RunningEmulator> {
        self.emulator.as_ref()
    }

    /// Serves gRPC and HTTP until `shutdown` completes, then drains and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        let trigger = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let store = self.payments.event_log().store().clone();
        self.spawn_background_work(&store, &token);

        let readiness = Readiness::new(
            self.payments.event_log(),
            self.config.database.writer_stall,
            self.verifier.clone(),
        );
        let services = grpc::Services {
            payments: self.payments.clone(),
            qrs: MerchantQrs::new(self.vipps.clone()),
            auth: self.auth.clone(),
            readiness: readiness.clone(),
            streams: StreamSettings {
                heartbeat: self.config.grpc.heartbeat,
                shutdown: token.clone(),
                subscribers: SubscriberSlots::new(self.config.grpc.max_subscribers),
            },
        };
        let grpc = grpc::serve(
            self.grpc_listener,
            services,
            &self.config.grpc,
            &self.config.tls,
            token.clone().cancelled_owned(),
        );
        let ingest = WebhookIngest {
            verifier: self.verifier.clone(),
            log: self.payments.event_log().clone(),
        };
        let router = http::router(
            http::HttpState::new(readiness.clone(), ingest),
            &self.config.http,
        );
        let http = async {
            http::serve(self.http_listener, router, &self.config.http, token.clone()).await;
            anyhow::Ok(())
        };

        tracing::info!(webhook_url = %self.webhook_url, "paygate is serving");
        let servers = async { tokio::join!(grpc, http) };
        tokio::pin!(servers);
        // Serve until the shutdown signal; from then on, in-flight work gets the grace period.
        let grace = self.config.listen.shutdown_grace;
        let (grpc_result, http_result) = tokio::select! {
            results = &mut servers => results,
            () = token.cancelled() => {
                readiness.drain();
                tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: draining in-flight work");
                match tokio::time::timeout(grace, &mut servers).await {
                    Ok(results) => results,
                    Err(_) => {
                        tracing::warn!("grace period over; exiting with work still in flight");
                        (Ok(()), Ok(()))
                    }
                }
            }
        };
        #[cfg(feature = "emulator")]
        if let Some(emulator) = self.emulator {
            emulator.shutdown().await;
        }
        store.close().await;
        grpc_result?;
        http_result?;
        tracing::info!("paygate stopped");
        Ok(())
    }

    /// The tasks that run beside the servers until shutdown: profile fetching, the
    /// reconciler, and (unless the secret is configured by hand) webhook registration.
    fn spawn_background_work(&self, store: &Store, token: &CancellationToken) {
        tokio::spawn(self.payments.clone().run_profile_worker(token.clone()));
        tokio::spawn(
            self.payments
                .clone()
                .run_reconciler(self.config.reconcile, token.clone()),
        );
        tokio::spawn(crate::store::retention::run(
            store.clone(),
            self.config.database.retention,
            self.config.database.unknown_event_retention,
            token.clone(),
        ));
        if self.config.webhooks.secret.is_none() {
            tokio::spawn(webhooks::keep_registered(
                self.vipps.clone(),
                store.clone(),
                self.webhook_url.to_string(),
                self.verifier.clone(),
                token.clone(),
            ));
        }
    }
}

/// Applies pending database migrations (`paygate migrate`; `build` does it too).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database)
        .await
        .context("connecting to DATABASE_URL")?;
    store.migrate().await.context("migrating the database")?;
    store.close().await;
    Ok(())
}

/// Starts the built-in emulator (no VIPPS_BASE_URL): local development and tests.
#[cfg(feature = "emulator")]
async fn start_emulator(addr: SocketAddr) -> anyhow::Result<vipps_emulator::RunningEmulator> {
    // Local development: redeliver failed webhooks quickly (Vipps itself backs off longer).
    let config = vipps_emulator::EmulatorConfig {
        webhook_retry_initial: std::time::Duration::from_millis(100),
        ..vipps_emulator::EmulatorConfig::default()
    };
    let running = vipps_emulator::Emulator::new(config)
        .start(addr)
        .await
        .with_context(|| format!("starting the built-in Vipps emulator on {addr}"))?;
    tracing::warn!(
        url = %running.base_url(),
        "VIPPS_BASE_URL is not set: using the BUILT-IN VIPPS EMULATOR. No real money moves. \
         Set VIPPS_BASE_URL and credentials to talk to Vipps."
    );
    Ok(running)
}

/// The sidecar's own webhook URL (emulator mode): loopback when listening on all interfaces.
fn local_webhook_url(addr: SocketAddr) -> anyhow::Result<Url> {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    Ok(Url::parse(&format!(
        "http://{host}:{}/webhooks/vipps",
        addr.port()
    ))?)
}
