//! One typed configuration. Every key is declared exactly once, below: its environment name,
//! default and meaning live in one `#[arg]` attribute, which is also what `paygate config` prints
//! and what the README's configuration table is checked against.
//!
//! Sources, strongest first: the environment, then a `KEY=VALUE` file (`--config FILE` or
//! `PAYGATE_CONFIG`, same names), then the defaults. Cross-key rules (a real Vipps needs
//! credentials, https for public URLs, …) are checked in `validate`. This module is a leaf: it
//! imports nothing from the rest of paygate; the other modules read their section of it.

use std::{collections::HashMap, fmt, net::SocketAddr, time::Duration};

use clap::{error::ContextKind, ArgMatches, Args, Command, FromArgMatches};
use url::Url;

/// A configuration key whose value is wrong, and why. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// A secret string (client secret, subscription key, tokens) that never prints: `Debug` and
/// `Display` show `***`, so a whole configuration can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// paygate's whole configuration, in sections.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub database: Database,
    #[command(flatten)]
    pub vipps: Vipps,
    #[command(flatten)]
    pub webhooks: Webhooks,
    #[command(flatten)]
    pub grpc: Grpc,
    #[command(flatten)]
    pub http: Http,
    #[command(flatten)]
    pub auth: Auth,
    #[command(flatten)]
    pub tls: Tls,
    #[command(flatten)]
    pub reconcile: Reconcile,
    #[command(flatten)]
    pub telemetry: Telemetry,
}

/// Where paygate listens.
#[derive(Debug, Clone, Args)]
pub struct Listen {
    /// gRPC listen address.
    #[arg(
        long,
        env = "PAYGATE_GRPC_ADDR",
        value_name = "PAYGATE_GRPC_ADDR",
        default_value = "0.0.0.0:50051"
    )]
    pub grpc_addr: SocketAddr,
    /// HTTP sidecar: /webhooks/vipps, /healthz, /readyz, /metrics.
    #[arg(
        long,
        env = "PAYGATE_HTTP_ADDR",
        value_name = "PAYGATE_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub http_addr: SocketAddr,
    /// Time in-flight RPCs and webhooks get at SIGTERM (ms).
    #[arg(long, env = "PAYGATE_SHUTDOWN_GRACE_MS", value_name = "PAYGATE_SHUTDOWN_GRACE_MS", default_value = "20000", value_parser = millis)]
    pub shutdown_grace: Duration,
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct Database {
    /// sqlite://… (one replica) or postgres://… (several replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "sqlite://paygate.db?mode=rwc"
    )]
    pub url: String,
    /// Longest a database statement may run (PostgreSQL statement_timeout and idle-in-transaction limit; SQLite busy wait) (ms).
    #[arg(long = "db-statement-timeout-ms", env = "PAYGATE_DB_STATEMENT_TIMEOUT_MS", value_name = "PAYGATE_DB_STATEMENT_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub statement_timeout: Duration,
    /// Readiness fails while the event writer has not finished a commit it was given for this long (ms).
    #[arg(long = "writer-stall-ms", env = "PAYGATE_WRITER_STALL_MS", value_name = "PAYGATE_WRITER_STALL_MS", default_value = "15000", value_parser = millis)]
    pub writer_stall: Duration,
    /// Events, finished operations and final payments older than this are deleted, e.g. 400d or 30s.
    #[arg(long, env = "PAYGATE_RETENTION", value_name = "PAYGATE_RETENTION", default_value = "400d", value_parser = age)]
    pub retention: Duration,
    /// Webhook events for references paygate never created are kept this long, e.g. 7d.
    #[arg(long, env = "PAYGATE_UNKNOWN_EVENT_RETENTION", value_name = "PAYGATE_UNKNOWN_EVENT_RETENTION", default_value = "7d", value_parser = age)]
    pub unknown_event_retention: Duration,
}

/// The Vipps API (or the built-in emulator when no base URL is set).
#[derive(Debug, Clone, Args)]
pub struct Vipps {
    /// Vipps API base, e.g. https://apitest.vipps.no or https://api.vipps.no (unset: built-in emulator).
    #[arg(
        long = "vipps-base-url",
        env = "VIPPS_BASE_URL",
        value_name = "VIPPS_BASE_URL"
    )]
    pub base_url: Option<Url>,
    /// Access-token client_id (required with VIPPS_BASE_URL).
    #[arg(
        long = "vipps-client-id",
        env = "VIPPS_CLIENT_ID",
        value_name = "VIPPS_CLIENT_ID"
    )]
    pub client_id: Option<String>,
    /// Access-token client_secret (required with VIPPS_BASE_URL).
    #[arg(long = "vipps-client-secret", env = "VIPPS_CLIENT_SECRET", value_name = "VIPPS_CLIENT_SECRET", value_parser = secret, hide_env_values = true)]
    pub client_secret: Option<Secret>,
    /// Ocp-Apim-Subscription-Key (required with VIPPS_BASE_URL).
    #[arg(long = "vipps-subscription-key", env = "VIPPS_SUBSCRIPTION_KEY", value_name = "VIPPS_SUBSCRIPTION_KEY", value_parser = secret, hide_env_values = true)]
    pub subscription_key: Option<Secret>,
    /// Merchant-Serial-Number, 4-7 digits (required with VIPPS_BASE_URL).
    #[arg(long = "vipps-msn", env = "VIPPS_MSN", value_name = "VIPPS_MSN")]
    pub msn: Option<String>,
    /// Limit of one HTTP attempt to Vipps (ms).
    #[arg(long = "vipps-timeout-ms", env = "VIPPS_TIMEOUT_MS", value_name = "VIPPS_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub timeout: Duration,
    /// Total time one Vipps call may take, retries included (ms).
    #[arg(long = "vipps-retry-budget-ms", env = "VIPPS_RETRY_BUDGET_MS", value_name = "VIPPS_RETRY_BUDGET_MS", default_value = "10000", value_parser = millis)]
    pub retry_budget: Duration,
    /// Where the built-in emulator listens (emulator mode).
    #[arg(
        long,
        env = "PAYGATE_EMULATOR_ADDR",
        value_name = "PAYGATE_EMULATOR_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub emulator_addr: SocketAddr,
}

/// The real Vipps API's settings, once validated.
#[derive(Debug, Clone)]
pub struct RemoteVipps {
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub subscription_key: Secret,
    pub msn: String,
}

impl Vipps {
    /// The real Vipps API, or None for emulator mode (`validate` guarantees the credentials).
    pub fn remote(&self) -> Option<RemoteVipps> {
        Some(RemoteVipps {
            base_url: self.base_url.clone()?,
            client_id: self.client_id.clone()?,
            client_secret: self.client_secret.clone()?,
            subscription_key: self.subscription_key.clone()?,
            msn: self.msn.clone()?,
        })
    }
}

/// Webhooks from Vipps.
#[derive(Debug, Clone, Args)]
pub struct Webhooks {
    /// The https URL Vipps posts webhooks to (required with VIPPS_BASE_URL; emulator mode: the local sidecar).
    #[arg(
        long = "webhook-public-url",
        env = "PAYGATE_WEBHOOK_PUBLIC_URL",
        value_name = "PAYGATE_WEBHOOK_PUBLIC_URL"
    )]
    pub public_url: Option<Url>,
    /// Secret of a webhook registered by hand (unset: paygate registers its own).
    #[arg(long = "webhook-secret", env = "VIPPS_WEBHOOK_SECRET", value_name = "VIPPS_WEBHOOK_SECRET", value_parser = secret, hide_env_values = true)]
    pub secret: Option<Secret>,
    /// How far x-ms-date may be from now (s).
    #[arg(long = "webhook-max-skew-secs", env = "PAYGATE_WEBHOOK_MAX_SKEW_SECS", value_name = "PAYGATE_WEBHOOK_MAX_SKEW_SECS", default_value = "300", value_parser = seconds)]
    pub max_skew: Duration,
}

/// The gRPC server and its event streams.
#[derive(Debug, Clone, Args)]
pub struct Grpc {
    /// Largest gRPC message accepted (bytes).
    #[arg(long = "grpc-max-message-bytes", env = "PAYGATE_GRPC_MAX_MESSAGE_BYTES", value_name = "PAYGATE_GRPC_MAX_MESSAGE_BYTES", default_value = "1048576", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_message_bytes: u32,
    /// HTTP/2 streams per connection (event streams count).
    #[arg(long = "grpc-max-concurrent-streams", env = "PAYGATE_GRPC_MAX_CONCURRENT_STREAMS", value_name = "PAYGATE_GRPC_MAX_CONCURRENT_STREAMS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Deadline of a unary RPC (ms).
    #[arg(long = "grpc-timeout-ms", env = "PAYGATE_GRPC_TIMEOUT_MS", value_name = "PAYGATE_GRPC_TIMEOUT_MS", default_value = "30000", value_parser = millis)]
    pub request_timeout: Duration,
    /// Requests in progress per connection.
    #[arg(long = "grpc-concurrency-limit", env = "PAYGATE_GRPC_CONCURRENCY_LIMIT", value_name = "PAYGATE_GRPC_CONCURRENCY_LIMIT", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency_limit: u32,
    /// Heartbeat period of StreamPaymentEvents (ms).
    #[arg(long, env = "PAYGATE_HEARTBEAT_MS", value_name = "PAYGATE_HEARTBEAT_MS", default_value = "15000", value_parser = millis)]
    pub heartbeat: Duration,
    /// Event streams open at once, over all connections; one more gets RESOURCE_EXHAUSTED.
    #[arg(long = "max-subscribers", env = "PAYGATE_MAX_SUBSCRIBERS", value_name = "PAYGATE_MAX_SUBSCRIBERS", default_value = "20000", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscribers: u32,
    /// HTTP/2 keepalive ping interval; a peer that does not answer within it is disconnected (ms).
    #[arg(long = "grpc-keepalive-ms", env = "PAYGATE_GRPC_KEEPALIVE_MS", value_name = "PAYGATE_GRPC_KEEPALIVE_MS", default_value = "30000", value_parser = millis)]
    pub keepalive: Duration,
}

/// The HTTP sidecar (webhooks, health, metrics).
#[derive(Debug, Clone, Args)]
pub struct Http {
    /// A client must send a request's headers within this time, or its connection is closed (ms, at most 30000).
    #[arg(long = "http-header-timeout-ms", env = "PAYGATE_HTTP_HEADER_TIMEOUT_MS", value_name = "PAYGATE_HTTP_HEADER_TIMEOUT_MS", default_value = "10000", value_parser = header_timeout)]
    pub header_timeout: Duration,
    /// Longest a webhook request may take, body and commit included; then 503 and Vipps retries (ms).
    #[arg(long = "webhook-timeout-ms", env = "PAYGATE_WEBHOOK_TIMEOUT_MS", value_name = "PAYGATE_WEBHOOK_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub webhook_timeout: Duration,
    /// Open sidecar connections at most; more are closed at once.
    #[arg(long = "http-max-connections", env = "PAYGATE_HTTP_MAX_CONNECTIONS", value_name = "PAYGATE_HTTP_MAX_CONNECTIONS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// Who may call the gRPC API.
#[derive(Debug, Clone, Args)]
pub struct Auth {
    /// gRPC callers: name:TOKEN,name2:TOKEN2 (tokens of at least 16 characters).
    #[arg(long = "api-tokens", env = "PAYGATE_API_TOKENS", value_name = "PAYGATE_API_TOKENS", value_parser = secret, hide_env_values = true)]
    pub tokens: Option<Secret>,
    /// The same from a file (a mounted secret), re-read when it changes.
    #[arg(
        long = "api-tokens-file",
        env = "PAYGATE_API_TOKENS_FILE",
        value_name = "PAYGATE_API_TOKENS_FILE"
    )]
    pub tokens_file: Option<String>,
    /// Scopes of mutual-TLS callers by certificate name (CN or SAN): name:scope+scope,name2:scope.
    #[arg(
        long = "tls-client-scopes",
        env = "PAYGATE_TLS_CLIENT_SCOPES",
        value_name = "PAYGATE_TLS_CLIENT_SCOPES"
    )]
    pub tls_client_scopes: Option<String>,
    /// Allow an open gRPC API with a real VIPPS_BASE_URL.
    #[arg(long, env = "PAYGATE_ALLOW_UNAUTHENTICATED", value_name = "PAYGATE_ALLOW_UNAUTHENTICATED", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub allow_unauthenticated: bool,
}

/// TLS for gRPC: a server certificate, and with a client CA, mutual TLS.
#[derive(Debug, Clone, Args)]
pub struct Tls {
    /// PEM server certificate: gRPC over TLS.
    #[arg(
        long = "tls-cert",
        env = "PAYGATE_TLS_CERT",
        value_name = "PAYGATE_TLS_CERT"
    )]
    pub cert: Option<String>,
    /// PEM private key of the server certificate.
    #[arg(
        long = "tls-key",
        env = "PAYGATE_TLS_KEY",
        value_name = "PAYGATE_TLS_KEY"
    )]
    pub key: Option<String>,
    /// PEM CA: require client certificates it signed (mutual TLS).
    #[arg(
        long = "tls-client-ca",
        env = "PAYGATE_TLS_CLIENT_CA",
        value_name = "PAYGATE_TLS_CLIENT_CA"
    )]
    pub client_ca: Option<String>,
}

impl Tls {
    /// Whether callers must present a client certificate.
    pub fn is_mutual(&self) -> bool {
        self.cert.is_some() && self.client_ca.is_some()
    }
}

/// The reconciler: what paygate does when webhooks or answers do not arrive.
#[derive(Debug, Clone, Copy, Args)]
pub struct Reconcile {
    /// First poll of a CREATED payment after creation (ms).
    #[arg(long = "reconcile-first-ms", env = "PAYGATE_RECONCILE_FIRST_MS", value_name = "PAYGATE_RECONCILE_FIRST_MS", default_value = "5000", value_parser = millis)]
    pub first_after: Duration,
    /// How often the reconciler looks for due work (ms).
    #[arg(long = "reconcile-tick-ms", env = "PAYGATE_RECONCILE_TICK_MS", value_name = "PAYGATE_RECONCILE_TICK_MS", default_value = "1000", value_parser = millis)]
    pub tick: Duration,
    /// Re-send an operation whose outcome is unknown after this idle time (ms).
    #[arg(long = "resend-after-ms", env = "PAYGATE_RESEND_AFTER_MS", value_name = "PAYGATE_RESEND_AFTER_MS", default_value = "10000", value_parser = millis)]
    pub resend_after: Duration,
}

/// Logs and traces.
#[derive(Debug, Clone, Args)]
pub struct Telemetry {
    /// Log format: text or json.
    #[arg(
        long,
        env = "PAYGATE_LOG_FORMAT",
        value_name = "PAYGATE_LOG_FORMAT",
        default_value = "text",
        value_enum
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber syntax), e.g. info or paygate=debug.
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,
    /// Export traces over OTLP/gRPC to this endpoint.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    pub otlp_endpoint: Option<String>,
}

fn millis(s: &str) -> Result<Duration, String> {
    positive(s).map(Duration::from_millis)
}

fn seconds(s: &str) -> Result<Duration, String> {
    positive(s).map(Duration::from_secs)
}

fn positive(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "must be a positive whole number".to_owned())
}

/// A duration such as `400d`, `12h` or `30s`.
fn age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be a duration such as 400d, 12h or 30s".to_owned())
}

/// hyper's header read timer: at most 30 s, so a stalled client is cut off soon enough.
fn header_timeout(s: &str) -> Result<Duration, String> {
    let timeout = millis(s)?;
    if timeout > Duration::from_secs(30) {
        return Err("must be at most 30000".to_owned());
    }
    Ok(timeout)
}

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

impl Config {
    /// The clap command that declares every key (also printed by `paygate config`).
    pub fn command() -> Command {
        Self::augment_args(Command::new("paygate").no_binary_name(true))
    }

    /// Every key: (environment name, default or None, meaning).
    pub fn keys() -> Vec<(String, Option<String>, String)> {
        Self::command()
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_string_lossy().into_owned();
                let default = a
                    .get_default_values()
                    .first()
                    .map(|d| d.to_string_lossy().into_owned());
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                Some((env, default, help))
            })
            .collect()
    }

    /// Reads the environment over an optional `KEY=VALUE` file (`PAYGATE_CONFIG` when `file`
    /// is None).
    pub fn load(file: Option<&str>) -> Result<Self, ConfigError> {
        let path = file
            .map(str::to_owned)
            .or_else(|| std::env::var("PAYGATE_CONFIG").ok());
        let from_file = match path {
            Some(path) => parse_file(&std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "PAYGATE_CONFIG",
                    format!("cannot read config file {path}: {e}"),
                )
            })?),
            None => HashMap::new(),
        };
        // The environment wins: a file value only fills a key the environment leaves unset.
        let command = Self::command();
        let args = arguments(&command, &from_file, |key| std::env::var_os(key).is_none())?;
        Self::parse(command, args)
    }

    /// Builds the configuration from key/value pairs only, ignoring the environment (tests).
    pub fn from_values(values: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let command = Self::command().mut_args(|a| a.env(None));
        let args = arguments(&Self::command(), values, |_| true)?;
        Self::parse(command, args)
    }

    fn parse(command: Command, args: Vec<String>) -> Result<Self, ConfigError> {
        let matches: ArgMatches = command
            .try_get_matches_from(args)
            .map_err(|e| clap_error(&e))?;
        let config = Self::from_arg_matches(&matches).map_err(|e| clap_error(&e))?;
        config.validate()?;
        Ok(config)
    }

    /// The rules that involve several keys.
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must start with sqlite: or postgres:",
            ));
        }
        let remote = self.vipps.base_url.is_some();
        if let Some(base) = &self.vipps.base_url {
            https_unless_loopback("VIPPS_BASE_URL", base)?;
            let v = &self.vipps;
            for (key, set) in [
                ("VIPPS_CLIENT_ID", v.client_id.is_some()),
                ("VIPPS_CLIENT_SECRET", v.client_secret.is_some()),
                ("VIPPS_SUBSCRIPTION_KEY", v.subscription_key.is_some()),
                ("VIPPS_MSN", v.msn.is_some()),
            ] {
                if !set {
                    return Err(invalid(key, "is required when VIPPS_BASE_URL is set"));
                }
            }
            let msn = v.msn.as_deref().unwrap_or_default();
            if !(4..=7).contains(&msn.len()) || !msn.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("VIPPS_MSN", "must be 4 to 7 digits"));
            }
        } else if !cfg!(feature = "emulator") {
            return Err(invalid(
                "VIPPS_BASE_URL",
                "is required: this paygate was built without the Vipps emulator (cargo feature `emulator`)",
            ));
        }
        match &self.webhooks.public_url {
            Some(url) => https_unless_loopback("PAYGATE_WEBHOOK_PUBLIC_URL", url)?,
            // The signature covers the URL: without the public one, paygate would verify every
            // real webhook against its own loopback address and refuse them all.
            None if remote => return Err(invalid(
                "PAYGATE_WEBHOOK_PUBLIC_URL",
                "is required with VIPPS_BASE_URL (also with VIPPS_WEBHOOK_SECRET): the https URL \
                     Vipps posts webhooks to, which their signature covers",
            )),
            None => {}
        }
        match (&self.tls.cert, &self.tls.key, &self.tls.client_ca) {
            (Some(_), None, _) => {
                return Err(invalid(
                    "PAYGATE_TLS_KEY",
                    "is required with PAYGATE_TLS_CERT",
                ))
            }
            (None, Some(_), _) => {
                return Err(invalid(
                    "PAYGATE_TLS_CERT",
                    "is required with PAYGATE_TLS_KEY",
                ))
            }
            (None, None, Some(_)) => {
                return Err(invalid(
                    "PAYGATE_TLS_CLIENT_CA",
                    "needs PAYGATE_TLS_CERT and PAYGATE_TLS_KEY",
                ))
            }
            _ => {}
        }
        let a = &self.auth;
        if remote
            && a.tokens.is_none()
            && a.tokens_file.is_none()
            && !self.tls.is_mutual()
            && !a.allow_unauthenticated
        {
            return Err(invalid(
                "PAYGATE_API_TOKENS",
                "paygate moves real money with VIPPS_BASE_URL set: configure PAYGATE_API_TOKENS(_FILE) or \
                 mutual TLS (PAYGATE_TLS_CLIENT_CA), or set PAYGATE_ALLOW_UNAUTHENTICATED=true explicitly",
            ));
        }
        Ok(())
    }
}

/// Vipps talks https only; plain http is fine for a loopback host (the emulator, a local proxy).
fn https_unless_loopback(key: &str, url: &Url) -> Result<(), ConfigError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        _ if url.host().is_none() => Err(invalid(key, "must be an absolute https URL")),
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(
            key,
            "must use https (plain http only for a loopback host): Vipps delivers and answers over https only",
        )),
        _ => Err(invalid(key, "must be an https URL")),
    }
}

/// Command-line arguments for the keys in `values` that `wanted` accepts. Unknown keys are
/// ignored (a shared file may hold other programs' settings).
fn arguments(
    command: &Command,
    values: &HashMap<String, String>,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, ConfigError> {
    let mut args = Vec::new();
    for arg in command.get_arguments() {
        let Some(key) = arg.get_env().map(|k| k.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(value) = values.get(&key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        if wanted(&key) {
            let long = arg
                .get_long()
                .ok_or_else(|| invalid(&key, "has no command-line name"))?;
            args.push(format!("--{long}={value}"));
        }
    }
    Ok(args)
}

/// A clap parse error as one line naming the key (never the value: it may be a secret).
fn clap_error(e: &clap::Error) -> ConfigError {
    let arg = e
        .get(ContextKind::InvalidArg)
        .map(ToString::to_string)
        .unwrap_or_default();
    let key = arg
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or_else(|| arg.clone(), |(key, _)| key.to_owned());
    let why = e
        .get(ContextKind::Custom)
        .map(ToString::to_string)
        .or_else(|| {
            e.get(ContextKind::ValidValue)
                .map(|v| format!("must be one of {v}"))
        })
        .unwrap_or_else(|| match e.kind() {
            clap::error::ErrorKind::InvalidValue | clap::error::ErrorKind::ValueValidation => {
                "has an invalid value".to_owned()
            }
            _ => e.kind().to_string(),
        });
    invalid(&key, why)
}

/// `KEY=VALUE` lines; blank lines and `#` comments ignored; optional quotes around values.
fn parse_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim().trim_matches('"').trim_matches('\'');
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_values(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[cfg(feature = "emulator")]
    #[test]
    fn defaults_to_emulator_and_sqlite() {
        let c = cfg(&[]).unwrap();
        assert!(c.vipps.remote().is_none());
        assert_eq!(c.database.url, "sqlite://paygate.db?mode=rwc");
        assert_eq!(c.listen.grpc_addr.port(), 50051);
        assert_eq!(c.grpc.heartbeat, Duration::from_secs(15));
    }

    /// `cargo build --no-default-features`: a paygate without the emulator needs a real Vipps.
    #[cfg(not(feature = "emulator"))]
    #[test]
    fn without_the_emulator_vipps_base_url_is_required() {
        let e = cfg(&[]).unwrap_err();
        assert_eq!(e.key, "VIPPS_BASE_URL");
        assert!(e.message.contains("without the Vipps emulator"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            cfg(&[("PAYGATE_GRPC_ADDR", "nope")]).unwrap_err().key,
            "PAYGATE_GRPC_ADDR"
        );
        assert_eq!(
            cfg(&[("PAYGATE_HEARTBEAT_MS", "0")]).unwrap_err().key,
            "PAYGATE_HEARTBEAT_MS"
        );
        assert_eq!(
            cfg(&[("PAYGATE_LOG_FORMAT", "xml")]).unwrap_err().key,
            "PAYGATE_LOG_FORMAT"
        );
        let e = cfg(&[("VIPPS_BASE_URL", "https://apitest.vipps.no")]).unwrap_err();
        assert_eq!(e.key, "VIPPS_CLIENT_ID");
        assert_eq!(
            cfg(&[("DATABASE_URL", "mysql://x")]).unwrap_err().key,
            "DATABASE_URL"
        );
        let e = cfg(&[
            ("VIPPS_BASE_URL", "https://apitest.vipps.no"),
            ("VIPPS_MSN", "12ab"),
            ("VIPPS_CLIENT_ID", "a"),
            ("VIPPS_CLIENT_SECRET", "hunter2-secret"),
            ("VIPPS_SUBSCRIPTION_KEY", "c"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "VIPPS_MSN");
        assert!(!e.to_string().contains("hunter2"));
    }

    fn remote(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = vec![
            ("VIPPS_BASE_URL", "https://apitest.vipps.no"),
            ("VIPPS_MSN", "123456"),
            ("VIPPS_CLIENT_ID", "a"),
            ("VIPPS_CLIENT_SECRET", "b"),
            ("VIPPS_SUBSCRIPTION_KEY", "c"),
            ("PAYGATE_API_TOKENS", "fare:0123456789abcdef0123"),
        ];
        pairs.extend_from_slice(extra);
        cfg(&pairs)
    }

    /// Reproduced: a hand-registered secret without the public URL started, then verified every
    /// real webhook against a loopback URL and refused them all.
    #[test]
    fn a_real_vipps_needs_the_public_webhook_url_even_with_a_secret() {
        let e = remote(&[("VIPPS_WEBHOOK_SECRET", "s3cret-webhook-secret")]).unwrap_err();
        assert_eq!(e.key, "PAYGATE_WEBHOOK_PUBLIC_URL");
        assert!(remote(&[
            ("VIPPS_WEBHOOK_SECRET", "s3cret-webhook-secret"),
            (
                "PAYGATE_WEBHOOK_PUBLIC_URL",
                "https://pay.example.com/webhooks/vipps"
            ),
        ])
        .is_ok());
    }

    /// Reproduced: plain http to a real host started; Vipps only delivers to https.
    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let public = |url: &'static str| remote(&[("PAYGATE_WEBHOOK_PUBLIC_URL", url)]);
        assert_eq!(
            public("http://paygate.example.com/webhooks/vipps")
                .unwrap_err()
                .key,
            "PAYGATE_WEBHOOK_PUBLIC_URL"
        );
        assert!(public("http://127.0.0.1:8080/webhooks/vipps").is_ok());
        assert!(public("http://localhost:8080/webhooks/vipps").is_ok());
        assert!(public("https://pay.example.com/webhooks/vipps").is_ok());
        let base = |url: &'static str| {
            remote(&[
                ("VIPPS_BASE_URL", url),
                ("PAYGATE_WEBHOOK_PUBLIC_URL", "https://pay.example.com/w"),
            ])
        };
        assert_eq!(
            base("http://api.vipps.no").unwrap_err().key,
            "VIPPS_BASE_URL"
        );
        assert!(base("http://[::1]:8090").is_ok());
        assert!(base("https://api.vipps.no").is_ok());
    }

    /// A secret's bad value is never echoed (clap's own errors quote values).
    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let c = cfg(&[
            ("VIPPS_BASE_URL", "https://apitest.vipps.no"),
            ("VIPPS_MSN", "123456"),
            ("VIPPS_CLIENT_ID", "a"),
            ("VIPPS_CLIENT_SECRET", "hunter2-client-secret"),
            ("VIPPS_SUBSCRIPTION_KEY", "hunter2-subscription-key"),
            ("VIPPS_WEBHOOK_SECRET", "hunter2-webhook-secret"),
            (
                "PAYGATE_WEBHOOK_PUBLIC_URL",
                "https://pay.example.com/webhooks/vipps",
            ),
            ("PAYGATE_API_TOKENS", "fare:hunter2-token-0123456789"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// The README's configuration table lists every key with its default.
    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../README.md");
        for (key, default, _) in Config::keys() {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{key}`")))
                .unwrap_or_else(|| panic!("{key} missing from the README's configuration table"));
            if let Some(default) = default {
                assert!(
                    row.contains(&format!("`{default}`")),
                    "the README row of {key} does not give its default `{default}`: {row}"
                );
            }
        }
    }

    #[test]
    fn file_format() {
        let m = parse_file("# c\nA=1\n B = \"two\" \n\nbad line\n");
        assert_eq!(m.get("A").unwrap(), "1");
        assert_eq!(m.get("B").unwrap(), "two");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn every_key_has_a_long_name_and_help() {
        let command = Config::command();
        for arg in command.get_arguments() {
            assert!(
                arg.get_env().is_some(),
                "{:?} reads no environment key",
                arg.get_id()
            );
            assert!(arg.get_long().is_some());
            assert!(arg.get_help().is_some(), "{:?} has no help", arg.get_id());
        }
        assert!(command
            .get_arguments()
            .any(|a| a.get_env().is_some_and(|e| e == "PAYGATE_GRPC_ADDR")));
    }
}
