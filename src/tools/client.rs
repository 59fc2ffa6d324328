//! How the operator commands reach paygate: an address, a bearer token, TLS with a CA.

use anyhow::Context as _;
use tonic::{
    metadata::AsciiMetadataValue,
    service::interceptor::InterceptedService,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
    Request, Status,
};

/// Where paygate is and how to authenticate; flattened into each command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// paygate's gRPC address (https://… with --ca for TLS).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// API token (sent as `authorization: Bearer …`).
    #[arg(long, env = "PAYGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA that signed paygate's certificate (with an https address).
    #[arg(long, env = "PAYGATE_TLS_CA")]
    pub ca: Option<String>,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

impl Target {
    /// A connected channel with the token attached.
    pub async fn connect(&self) -> anyhow::Result<Authed> {
        // Bounded connects and HTTP/2 pings: a half-open connection (a paygate that vanished
        // mid-restart) is noticed and the command reconnects instead of waiting forever.
        let mut endpoint = Endpoint::from_shared(self.addr.clone())
            .with_context(|| format!("--addr {} is not a URL", self.addr))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading --ca {ca}"))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                .context("TLS settings")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to paygate at {}", self.addr))?;
        let token = self
            .token
            .as_deref()
            .map(|t| format!("Bearer {t}").parse::<AsciiMetadataValue>())
            .transpose()
            .context("the token must be printable ASCII")?;
        Ok(InterceptedService::new(channel, Bearer(token)))
    }
}
