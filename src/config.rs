//! One typed configuration, loaded from defaults < config file < environment, validated at start.
//!
//! The config file (`--config FILE` or `PAYGATE_CONFIG`) holds `KEY=VALUE` lines with the same
//! keys as the environment, so operators learn one set of names.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use url::Url;

use crate::vipps::{RetryPolicy, Secret, VippsConfig};

/// A configuration key whose value is wrong, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

/// Where Vipps is: the real API, or the emulator paygate starts in-process.
#[derive(Debug, Clone)]
pub enum VippsTarget {
    /// `VIPPS_BASE_URL` set: call it with the given credentials.
    Remote(Box<VippsConfig>),
    /// `VIPPS_BASE_URL` unset: start the built-in emulator on this address.
    Emulator { addr: SocketAddr },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// paygate's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PAYGATE_GRPC_ADDR`: where the gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// `PAYGATE_HTTP_ADDR`: where the HTTP sidecar (webhooks, health, metrics) listens.
    pub http_addr: SocketAddr,
    /// `DATABASE_URL`: `sqlite://…` (embedded default) or `postgres://…`.
    pub database_url: String,
    pub vipps: VippsTarget,
    /// `PAYGATE_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `VIPPS_TIMEOUT_MS`: limit of one HTTP attempt to Vipps.
    pub vipps_timeout: Duration,
    /// `VIPPS_RETRY_BUDGET_MS`: total time of one Vipps call, retries included.
    pub vipps_retry_budget: Duration,
    /// `PAYGATE_WEBHOOK_PUBLIC_URL`: where Vipps posts webhooks (None: the local sidecar, emulator mode).
    pub webhook_public_url: Option<Url>,
    /// `VIPPS_WEBHOOK_SECRET`: secret of a webhook registered by hand (skips registration).
    pub webhook_secret: Option<Secret>,
    /// `PAYGATE_WEBHOOK_MAX_SKEW_SECS`: how far x-ms-date may be from now.
    pub webhook_max_skew: Duration,
    /// `PAYGATE_HEARTBEAT_MS`: heartbeat period of event streams.
    pub heartbeat: Duration,
    /// Who may call the gRPC API.
    pub auth: AuthConfig,
    /// Optional (mutual) TLS for gRPC.
    pub tls: Option<TlsConfig>,
    /// Limits of the gRPC server.
    pub limits: GrpcLimits,
    /// `PAYGATE_SHUTDOWN_GRACE_MS`: how long in-flight work may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: export traces over OTLP/gRPC when set.
    pub otlp_endpoint: Option<String>,
    /// `PAYGATE_RECONCILE_FIRST_MS`, `PAYGATE_RECONCILE_TICK_MS`, `PAYGATE_RESEND_AFTER_MS`.
    pub reconcile: crate::payments::ReconcileSettings,
}

/// Caller authentication for gRPC.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `PAYGATE_API_TOKENS`: `name:TOKEN,name2:TOKEN2`.
    pub tokens: Option<Secret>,
    /// `PAYGATE_API_TOKENS_FILE`: the same format in a file (a mounted secret), re-read on change.
    pub tokens_file: Option<String>,
    /// `PAYGATE_ALLOW_UNAUTHENTICATED`: run without tokens or mTLS against a real Vipps.
    pub allow_unauthenticated: bool,
}

/// `PAYGATE_TLS_CERT` / `PAYGATE_TLS_KEY` (PEM files); `PAYGATE_TLS_CLIENT_CA` turns on mutual TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
}

/// Limits of the gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// `PAYGATE_GRPC_MAX_MESSAGE_BYTES` (default 1 MiB).
    pub max_message_bytes: usize,
    /// `PAYGATE_GRPC_MAX_CONCURRENT_STREAMS` per connection (default 1024; event streams count).
    pub max_concurrent_streams: u32,
    /// `PAYGATE_GRPC_TIMEOUT_MS`: unary request deadline (default 30 s).
    pub request_timeout: Duration,
    /// `PAYGATE_GRPC_CONCURRENCY_LIMIT`: requests in progress per connection (default 1024).
    pub concurrency_limit: usize,
}

/// Every key paygate reads, with its default and meaning (the README's table mirrors this).
pub const KEYS: &[(&str, &str, &str)] = &[
    ("PAYGATE_GRPC_ADDR", "0.0.0.0:50051", "gRPC listen address"),
    (
        "PAYGATE_HTTP_ADDR",
        "0.0.0.0:8080",
        "HTTP sidecar listen address (webhooks, health)",
    ),
    (
        "DATABASE_URL",
        "sqlite://paygate.db?mode=rwc",
        "sqlite://… or postgres://…",
    ),
    (
        "VIPPS_BASE_URL",
        "(unset: built-in emulator)",
        "Vipps API base, e.g. https://apitest.vipps.no",
    ),
    (
        "VIPPS_CLIENT_ID",
        "(required with VIPPS_BASE_URL)",
        "access-token client_id",
    ),
    (
        "VIPPS_CLIENT_SECRET",
        "(required with VIPPS_BASE_URL)",
        "access-token client_secret",
    ),
    (
        "VIPPS_SUBSCRIPTION_KEY",
        "(required with VIPPS_BASE_URL)",
        "Ocp-Apim-Subscription-Key",
    ),
    (
        "VIPPS_MSN",
        "(required with VIPPS_BASE_URL)",
        "Merchant-Serial-Number, 4–7 digits",
    ),
    (
        "VIPPS_TIMEOUT_MS",
        "10000",
        "limit of one HTTP attempt to Vipps",
    ),
    (
        "VIPPS_RETRY_BUDGET_MS",
        "10000",
        "total time one Vipps call may take, retries included",
    ),
    (
        "PAYGATE_EMULATOR_ADDR",
        "127.0.0.1:8090",
        "where the built-in emulator listens (emulator mode)",
    ),
    ("PAYGATE_LOG_FORMAT", "text", "text or json"),
    (
        "PAYGATE_WEBHOOK_PUBLIC_URL",
        "(emulator mode: the local sidecar)",
        "public URL Vipps posts webhooks to",
    ),
    (
        "VIPPS_WEBHOOK_SECRET",
        "(unset: register automatically)",
        "secret of a webhook registered by hand",
    ),
    (
        "PAYGATE_WEBHOOK_MAX_SKEW_SECS",
        "300",
        "how far x-ms-date may be from now",
    ),
    (
        "PAYGATE_HEARTBEAT_MS",
        "15000",
        "heartbeat period of StreamPaymentEvents",
    ),
    (
        "PAYGATE_API_TOKENS",
        "(unset)",
        "gRPC callers: name:TOKEN,name2:TOKEN2",
    ),
    (
        "PAYGATE_API_TOKENS_FILE",
        "(unset)",
        "the same, from a file (re-read when it changes)",
    ),
    (
        "PAYGATE_ALLOW_UNAUTHENTICATED",
        "false",
        "allow an open gRPC API with a real VIPPS_BASE_URL",
    ),
    (
        "PAYGATE_TLS_CERT",
        "(unset)",
        "PEM server certificate for gRPC",
    ),
    ("PAYGATE_TLS_KEY", "(unset)", "PEM private key for gRPC"),
    (
        "PAYGATE_TLS_CLIENT_CA",
        "(unset)",
        "PEM CA: require client certificates (mutual TLS)",
    ),
    (
        "PAYGATE_GRPC_MAX_MESSAGE_BYTES",
        "1048576",
        "largest gRPC message accepted",
    ),
    (
        "PAYGATE_GRPC_MAX_CONCURRENT_STREAMS",
        "1024",
        "HTTP/2 streams per connection",
    ),
    (
        "PAYGATE_GRPC_TIMEOUT_MS",
        "30000",
        "deadline of a unary RPC",
    ),
    (
        "PAYGATE_GRPC_CONCURRENCY_LIMIT",
        "1024",
        "requests in progress per connection",
    ),
    (
        "PAYGATE_SHUTDOWN_GRACE_MS",
        "20000",
        "time in-flight work gets at shutdown",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "(unset)",
        "OTLP/gRPC endpoint for traces",
    ),
    (
        "PAYGATE_RECONCILE_FIRST_MS",
        "5000",
        "first poll of a CREATED payment after creation",
    ),
    (
        "PAYGATE_RECONCILE_TICK_MS",
        "1000",
        "how often the reconciler looks for due work",
    ),
    (
        "PAYGATE_RESEND_AFTER_MS",
        "10000",
        "re-send an operation with unknown outcome after this idle time",
    ),
];

impl Config {
    /// Reads the process environment over an optional config file.
    pub fn load(file: Option<&str>) -> anyhow::Result<Self> {
        let mut values = HashMap::new();
        let file = file
            .map(str::to_owned)
            .or_else(|| std::env::var("PAYGATE_CONFIG").ok());
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("invalid configuration: cannot read config file {path}: {e}")
            })?;
            values.extend(parse_file(&text));
        }
        for key in KEYS.iter().map(|(k, _, _)| *k).chain(["RUST_LOG"]) {
            if let Ok(v) = std::env::var(key) {
                values.insert(key.to_owned(), v);
            }
        }
        Ok(Self::from_values(&values)?)
    }

    /// Builds the configuration from key/value pairs (what `load` gathers; tests call it directly).
    pub fn from_values(values: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |key: &str| values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let addr = |key: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
            get(key)
                .unwrap_or(default)
                .parse()
                .map_err(|_| invalid(key, "must be an address like 0.0.0.0:50051"))
        };
        let positive = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(key, "must be a positive whole number")),
            }
        };
        let millis =
            |key: &'static str, default: u64| positive(key, default).map(Duration::from_millis);
        let database_url = get("DATABASE_URL")
            .unwrap_or("sqlite://paygate.db?mode=rwc")
            .to_owned();
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            return Err(invalid(
                "DATABASE_URL",
                "must start with sqlite: or postgres:",
            ));
        }
        let timeout = millis("VIPPS_TIMEOUT_MS", 10_000)?;
        let budget = millis("VIPPS_RETRY_BUDGET_MS", 10_000)?;
        let vipps = match get("VIPPS_BASE_URL") {
            None => VippsTarget::Emulator {
                addr: addr("PAYGATE_EMULATOR_ADDR", "127.0.0.1:8090")?,
            },
            Some(base) => {
                let base_url = Url::parse(base)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http"))
                    .ok_or_else(|| invalid("VIPPS_BASE_URL", "must be an http(s) URL"))?;
                let required = |key: &'static str| {
                    get(key)
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(key, "is required when VIPPS_BASE_URL is set"))
                };
                let msn = required("VIPPS_MSN")?;
                if !(4..=7).contains(&msn.len()) || !msn.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("VIPPS_MSN", "must be 4 to 7 digits"));
                }
                let mut cfg = VippsConfig::new(
                    base_url,
                    required("VIPPS_CLIENT_ID")?,
                    Secret::new(required("VIPPS_CLIENT_SECRET")?),
                    Secret::new(required("VIPPS_SUBSCRIPTION_KEY")?),
                    msn,
                );
                cfg.request_timeout = timeout;
                cfg.retry = RetryPolicy {
                    max_elapsed: budget,
                    ..RetryPolicy::default()
                };
                VippsTarget::Remote(Box::new(cfg))
            }
        };
        let webhook_public_url = match get("PAYGATE_WEBHOOK_PUBLIC_URL") {
            None if matches!(vipps, VippsTarget::Remote(_))
                && get("VIPPS_WEBHOOK_SECRET").is_none() =>
            {
                return Err(invalid(
                    "PAYGATE_WEBHOOK_PUBLIC_URL",
                    "is required with VIPPS_BASE_URL: the https URL Vipps posts webhooks to",
                ))
            }
            None => None,
            Some(u) => Some(
                Url::parse(u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
                    .ok_or_else(|| {
                        invalid(
                            "PAYGATE_WEBHOOK_PUBLIC_URL",
                            "must be an absolute http(s) URL",
                        )
                    })?,
            ),
        };
        let allow_unauthenticated = match get("PAYGATE_ALLOW_UNAUTHENTICATED").unwrap_or("false") {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(invalid(
                    "PAYGATE_ALLOW_UNAUTHENTICATED",
                    "must be true or false",
                ))
            }
        };
        let auth = AuthConfig {
            tokens: get("PAYGATE_API_TOKENS").map(Secret::new),
            tokens_file: get("PAYGATE_API_TOKENS_FILE").map(str::to_owned),
            allow_unauthenticated,
        };
        if let Some(tokens) = &auth.tokens {
            crate::auth::parse_tokens(tokens.expose())
                .map_err(|m| invalid("PAYGATE_API_TOKENS", m))?;
        }
        let tls = match (get("PAYGATE_TLS_CERT"), get("PAYGATE_TLS_KEY")) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.to_owned(),
                key: key.to_owned(),
                client_ca: get("PAYGATE_TLS_CLIENT_CA").map(str::to_owned),
            }),
            (None, None) if get("PAYGATE_TLS_CLIENT_CA").is_some() => {
                return Err(invalid(
                    "PAYGATE_TLS_CLIENT_CA",
                    "needs PAYGATE_TLS_CERT and PAYGATE_TLS_KEY",
                ))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "PAYGATE_TLS_KEY",
                    "is required with PAYGATE_TLS_CERT",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "PAYGATE_TLS_CERT",
                    "is required with PAYGATE_TLS_KEY",
                ))
            }
        };
        let mutual_tls = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if matches!(vipps, VippsTarget::Remote(_))
            && auth.tokens.is_none()
            && auth.tokens_file.is_none()
            && !mutual_tls
            && !auth.allow_unauthenticated
        {
            return Err(invalid(
                "PAYGATE_API_TOKENS",
                "paygate moves real money with VIPPS_BASE_URL set: configure PAYGATE_API_TOKENS(_FILE) or \
                 mutual TLS (PAYGATE_TLS_CLIENT_CA), or set PAYGATE_ALLOW_UNAUTHENTICATED=true explicitly",
            ));
        }
        let log_format = match get("PAYGATE_LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(invalid("PAYGATE_LOG_FORMAT", "must be text or json")),
        };
        Ok(Self {
            grpc_addr: addr("PAYGATE_GRPC_ADDR", "0.0.0.0:50051")?,
            http_addr: addr("PAYGATE_HTTP_ADDR", "0.0.0.0:8080")?,
            database_url,
            vipps,
            log_format,
            vipps_timeout: timeout,
            vipps_retry_budget: budget,
            webhook_public_url,
            webhook_secret: get("VIPPS_WEBHOOK_SECRET").map(Secret::new),
            webhook_max_skew: Duration::from_secs(positive("PAYGATE_WEBHOOK_MAX_SKEW_SECS", 300)?),
            heartbeat: millis("PAYGATE_HEARTBEAT_MS", 15_000)?,
            auth,
            tls,
            limits: GrpcLimits {
                max_message_bytes: usize::try_from(positive(
                    "PAYGATE_GRPC_MAX_MESSAGE_BYTES",
                    1 << 20,
                )?)
                .unwrap_or(1 << 20),
                max_concurrent_streams: u32::try_from(positive(
                    "PAYGATE_GRPC_MAX_CONCURRENT_STREAMS",
                    1024,
                )?)
                .map_err(|_| invalid("PAYGATE_GRPC_MAX_CONCURRENT_STREAMS", "too large"))?,
                request_timeout: millis("PAYGATE_GRPC_TIMEOUT_MS", 30_000)?,
                concurrency_limit: usize::try_from(positive(
                    "PAYGATE_GRPC_CONCURRENCY_LIMIT",
                    1024,
                )?)
                .unwrap_or(1024),
            },
            shutdown_grace: millis("PAYGATE_SHUTDOWN_GRACE_MS", 20_000)?,
            otlp_endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT").map(str::to_owned),
            reconcile: crate::payments::ReconcileSettings {
                first_after: millis("PAYGATE_RECONCILE_FIRST_MS", 5_000)?,
                tick: millis("PAYGATE_RECONCILE_TICK_MS", 1_000)?,
                resend_after: millis("PAYGATE_RESEND_AFTER_MS", 10_000)?,
            },
        })
    }
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

/// The Vipps client settings for the in-process emulator (any credentials are accepted there).
pub fn emulator_vipps_config(
    base_url: Url,
    timeout: Duration,
    retry_budget: Duration,
) -> VippsConfig {
    let mut cfg = VippsConfig::new(
        base_url,
        "paygate-emulator",
        Secret::new("emulator-secret"),
        Secret::new("emulator-subscription-key"),
        "123456",
    );
    cfg.request_timeout = timeout;
    cfg.retry = RetryPolicy {
        max_elapsed: retry_budget,
        ..RetryPolicy::default()
    };
    cfg
}

#[cfg(test)]
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

    #[test]
    fn defaults_to_emulator_and_sqlite() {
        let c = cfg(&[]).unwrap();
        assert!(matches!(c.vipps, VippsTarget::Emulator { .. }));
        assert_eq!(c.database_url, "sqlite://paygate.db?mode=rwc");
        assert_eq!(c.grpc_addr.port(), 50051);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            cfg(&[("PAYGATE_GRPC_ADDR", "nope")]).unwrap_err().key,
            "PAYGATE_GRPC_ADDR"
        );
        let e = cfg(&[("VIPPS_BASE_URL", "https://apitest.vipps.no")]).unwrap_err();
        assert_eq!(e.key, "VIPPS_MSN");
        assert_eq!(
            cfg(&[("DATABASE_URL", "mysql://x")]).unwrap_err().key,
            "DATABASE_URL"
        );
        let e = cfg(&[
            ("VIPPS_BASE_URL", "https://apitest.vipps.no"),
            ("VIPPS_MSN", "12ab"),
            ("VIPPS_CLIENT_ID", "a"),
            ("VIPPS_CLIENT_SECRET", "b"),
            ("VIPPS_SUBSCRIPTION_KEY", "c"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "VIPPS_MSN");
        assert!(!e.to_string().contains("b\""));
    }

    /// Every key the loader reads is listed in KEYS (which `load` uses and the README mirrors).
    #[test]
    fn every_read_key_is_documented() {
        let source = include_str!("config.rs");
        let listed: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
        for quoted in source.split('"').skip(1).step_by(2) {
            let is_key = quoted.len() > 4
                && quoted.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                && ["PAYGATE_", "VIPPS_", "OTEL_", "DATABASE_"]
                    .iter()
                    .any(|p| quoted.starts_with(p));
            if is_key && quoted != "PAYGATE_CONFIG" {
                assert!(listed.contains(&quoted), "{quoted} is read but not in KEYS");
            }
        }
    }

    /// The README's configuration table lists every key.
    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../README.md");
        for (key, _, _) in KEYS {
            assert!(
                readme.contains(&format!("`{key}`")) || readme.contains(key),
                "{key} missing from README"
            );
        }
    }

    #[test]
    fn file_format() {
        let m = parse_file("# c\nA=1\n B = \"two\" \n\nbad line\n");
        assert_eq!(m.get("A").unwrap(), "1");
        assert_eq!(m.get("B").unwrap(), "two");
        assert_eq!(m.len(), 2);
    }
}
