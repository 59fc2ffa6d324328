//! Wiring: `Application::build(config)` binds the listeners and connects everything;
//! `run(shutdown)` serves until the shutdown future completes.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{
    auth::Authenticator,
    config::{self, Config, GrpcLimits, TlsConfig, VippsTarget},
    emulator::{Emulator, EmulatorConfig, RunningEmulator},
    events::EventLog,
    grpc::{self, CustomerApi, MerchantQrApi, PaymentApi, StreamSettings},
    health::Readiness,
    http, observability,
    payments::Payments,
    qr::MerchantQrs,
    store::Store,
    vipps::VippsClient,
    webhooks::{self, Verifier, WebhookIngest, WebhookStats},
};

/// A built, not yet running, paygate.
pub struct Application {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    payments: Payments,
    vipps: VippsClient,
    verifier: Verifier,
    webhook_url: Url,
    register_webhook: bool,
    webhook_stats: Arc<WebhookStats>,
    heartbeat: Duration,
    auth: Authenticator,
    tls: Option<TlsConfig>,
    limits: GrpcLimits,
    grace: Duration,
    reconcile: crate::payments::ReconcileSettings,
    shutdown: CancellationToken,
    /// The in-process emulator, when no real Vipps is configured.
    emulator: Option<RunningEmulator>,
}

impl Application {
    /// Connects the database (migrating it), starts the emulator if needed, builds the Vipps
    /// client and binds both listeners. Port 0 binds a free port (tests).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        observability::install();
        let auth = Authenticator::from_config(&config.auth)?;
        if auth.is_open() && config.tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
            tracing::warn!("the gRPC API is OPEN: no PAYGATE_API_TOKENS and no mutual TLS");
        }
        let store = Store::connect(&config.database_url)
            .await
            .context("connecting to DATABASE_URL")?;
        store.migrate().await.context("migrating the database")?;
        let (vipps_config, emulator) = match &config.vipps {
            VippsTarget::Remote(cfg) => ((**cfg).clone(), None),
            VippsTarget::Emulator { addr } => {
                // Local development: redeliver failed webhooks quickly (Vipps itself backs off longer).
                let emulator_config = EmulatorConfig {
                    webhook_retry_initial: Duration::from_millis(100),
                    ..EmulatorConfig::default()
                };
                let running = Emulator::new(emulator_config)
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
        let log = EventLog::start(store)
            .await
            .context("starting the event log")?;
        let payments = Payments::new(log, vipps.clone());
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding PAYGATE_GRPC_ADDR {}", config.grpc_addr))?;
        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding PAYGATE_HTTP_ADDR {}", config.http_addr))?;

        let webhook_url = match &config.webhook_public_url {
            Some(url) => url.clone(),
            None => local_webhook_url(http_listener.local_addr()?)?,
        };
        let verifier = Verifier::new(&webhook_url, config.webhook_max_skew);
        if let Some(secret) = &config.webhook_secret {
            verifier.set_secrets(vec![secret.expose().to_owned()]);
        }
        Ok(Self {
            grpc_listener,
            http_listener,
            payments,
            vipps,
            verifier,
            webhook_url,
            register_webhook: config.webhook_secret.is_none(),
            webhook_stats: Arc::new(WebhookStats::default()),
            heartbeat: config.heartbeat,
            auth,
            tls: config.tls.clone(),
            limits: config.limits.clone(),
            grace: config.shutdown_grace,
            reconcile: config.reconcile,
            shutdown: CancellationToken::new(),
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

    /// The payment service (tests and tools drive it in-process).
    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    /// Counters of the webhook endpoint.
    pub fn webhook_stats(&self) -> Arc<WebhookStats> {
        self.webhook_stats.clone()
    }

    /// Serves gRPC and HTTP until `shutdown` completes, then drains and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = self.shutdown.clone();
        let trigger = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        tokio::spawn(self.payments.clone().run_profile_worker(token.clone()));
        tokio::spawn(
            self.payments
                .clone()
                .run_reconciler(self.reconcile, token.clone()),
        );
        if self.register_webhook {
            tokio::spawn(keep_registered(
                self.vipps.clone(),
                self.payments.event_log().store().clone(),
                self.webhook_url.to_string(),
                self.verifier.clone(),
                token.clone(),
            ));
        }

        let readiness = Readiness::new(
            self.payments.event_log().store().clone(),
            self.verifier.clone(),
        );
        let (reporter, health) = tonic_health::server::health_reporter();
        crate::health::register(&reporter).await;
        tokio::spawn(readiness.clone().report(reporter, token.clone()));

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building gRPC reflection")?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building gRPC reflection")?;
        let streams = StreamSettings {
            heartbeat: self.heartbeat,
            shutdown: token.clone(),
        };
        let max = self.limits.max_message_bytes;
        let auth = self.auth.clone();
        let payments = PaymentApi::new(self.payments.clone(), streams)
            .into_server()
            .max_decoding_message_size(max);
        let customers = CustomerApi::new(self.payments.clone())
            .into_server()
            .max_decoding_message_size(max);
        let qrs = MerchantQrApi::new(MerchantQrs::new(self.vipps.clone()))
            .into_server()
            .max_decoding_message_size(max);
        let mut builder = tonic::transport::Server::builder()
            .timeout(self.limits.request_timeout)
            .concurrency_limit_per_connection(self.limits.concurrency_limit)
            .max_concurrent_streams(Some(self.limits.max_concurrent_streams));
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls_config(tls)?).context("gRPC TLS")?;
        }
        // Health and reflection stay open (probes and grpcurl); the API needs a token.
        let grpc = builder
            .layer(observability::GrpcMetricsLayer)
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(tonic::service::interceptor::InterceptedService::new(
                payments,
                auth.clone(),
            ))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                customers,
                auth.clone(),
            ))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                qrs, auth,
            ))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc_listener),
                token.clone().cancelled_owned(),
            );

        let ingest = WebhookIngest {
            verifier: self.verifier.clone(),
            log: self.payments.event_log().clone(),
            stats: self.webhook_stats.clone(),
        };
        let router = http::router(http::HttpState::new(readiness.clone(), ingest));
        let http = axum::serve(self.http_listener, router)
            .with_graceful_shutdown(token.clone().cancelled_owned());

        tracing::info!(webhook_url = %self.webhook_url, "paygate is serving");
        let servers = async { tokio::join!(grpc, async { http.await }) };
        tokio::pin!(servers);
        // Serve until the shutdown signal; from then on, in-flight work gets the grace period.
        let (grpc_result, http_result) = tokio::select! {
            results = &mut servers => results,
            () = token.cancelled() => {
                readiness.drain();
                tracing::info!(grace_ms = self.grace.as_millis() as u64, "shutting down: draining in-flight work");
                match tokio::time::timeout(self.grace, &mut servers).await {
                    Ok(results) => results,
                    Err(_) => {
                        tracing::warn!("grace period over; exiting with work still in flight");
                        (Ok(()), Ok(()))
                    }
                }
            }
        };
        if let Some(emulator) = self.emulator {
            emulator.shutdown().await;
        }
        self.payments.event_log().store().close().await;
        grpc_result.context("gRPC server")?;
        http_result.context("HTTP server")?;
        tracing::info!("paygate stopped");
        Ok(())
    }
}

/// Server TLS from PEM files; with a client CA, clients must present a certificate it signed.
fn tls_config(tls: &TlsConfig) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |key: &str, path: &str| {
        std::fs::read(path)
            .with_context(|| format!("invalid configuration: {key}: cannot read {path}"))
    };
    let identity = Identity::from_pem(
        read("PAYGATE_TLS_CERT", &tls.cert)?,
        read("PAYGATE_TLS_KEY", &tls.key)?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("PAYGATE_TLS_CLIENT_CA", ca)?));
    }
    Ok(config)
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

/// Registers the webhook (retrying until it works), then re-checks it now and then so secrets
/// registered by another replica become known here too.
async fn keep_registered(
    vipps: VippsClient,
    store: Store,
    url: String,
    verifier: Verifier,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match webhooks::ensure_registered(&vipps, &store, &url).await {
            Ok(secrets) => {
                verifier.set_secrets(secrets);
                delay = Duration::from_secs(300);
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook registration failed; retrying");
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}
