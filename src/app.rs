//! Wiring: `Application::build(config)` binds the listeners and connects everything;
//! `run(shutdown)` serves until the shutdown future completes.

use std::{future::Future, net::SocketAddr};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{
    config::{self, Config, VippsTarget},
    emulator::{Emulator, EmulatorConfig, RunningEmulator},
    events::EventLog,
    grpc::{self, PaymentApi},
    http,
    payments::Payments,
    store::Store,
    vipps::VippsClient,
};

/// A built, not yet running, paygate.
pub struct Application {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    payments: Payments,
    /// The in-process emulator, when no real Vipps is configured.
    emulator: Option<RunningEmulator>,
}

impl Application {
    /// Connects the database (migrating it), starts the emulator if needed, builds the Vipps
    /// client and binds both listeners. Port 0 binds a free port (tests).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database_url)
            .await
            .with_context(|| "connecting to DATABASE_URL")?;
        store.migrate().await.context("migrating the database")?;
        let (vipps_config, emulator) = match &config.vipps {
            VippsTarget::Remote(cfg) => ((**cfg).clone(), None),
            VippsTarget::Emulator { addr } => {
                let running = Emulator::new(EmulatorConfig::default())
                    .start(*addr)
                    .await
                    .with_context(|| format!("starting the built-in Vipps emulator on {addr}"))?;
                tracing::warn!(
                    url = %running.base_url(),
                    "VIPPS_BASE_URL is not set: using the BUILT-IN VIPPS EMULATOR. No real money moves. \
                     Set VIPPS_BASE_URL and credentials to talk to Vipps."
                );
                let url = Url::parse(&running.base_url()).context("emulator URL")?;
                let cfg = config::emulator_vipps_config(
                    url,
                    config.vipps_timeout,
                    config.vipps_retry_budget,
                );
                (cfg, Some(running))
            }
        };
        let vipps = VippsClient::new(vipps_config).context("building the Vipps client")?;
        let payments = Payments::new(EventLog::new(store), vipps);
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding PAYGATE_GRPC_ADDR {}", config.grpc_addr))?;
        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding PAYGATE_HTTP_ADDR {}", config.http_addr))?;
        Ok(Self {
            grpc_listener,
            http_listener,
            payments,
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
    pub fn emulator(&self) -> Option<&RunningEmulator> {
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

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building gRPC reflection")?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building gRPC reflection")?;
        let grpc_token = token.clone();
        let grpc = tonic::transport::Server::builder()
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(PaymentApi::new(self.payments.clone()).into_server())
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc_listener),
                grpc_token.cancelled_owned(),
            );

        let http_token = token.clone();
        let router = http::router(http::HttpState::new(self.payments.clone()));
        let http = axum::serve(self.http_listener, router)
            .with_graceful_shutdown(http_token.cancelled_owned());

        tracing::info!("paygate is serving");
        let (grpc_result, http_result) = tokio::join!(grpc, async { http.await });
        if let Some(emulator) = self.emulator {
            emulator.shutdown().await;
        }
        grpc_result.context("gRPC server")?;
        http_result.context("HTTP server")?;
        Ok(())
    }
}
