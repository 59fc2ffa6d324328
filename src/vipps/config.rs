//! Settings of the Vipps client: where to call, who we are, and how hard to try.

use std::time::Duration;

use url::Url;

use crate::config::{self, Secret};

/// How long and how often a call is retried after a transient failure
/// (connect error, timeout, 429, 5xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total time budget of one call, all attempts and waits included. A caller behind a
    /// gRPC deadline needs an answer, even "unknown", in bounded time.
    pub max_elapsed: Duration,
    /// Upper bound of the first backoff; later ones double (full jitter picks 0..=bound).
    pub initial_backoff: Duration,
    /// The backoff bound stops doubling here.
    pub max_backoff: Duration,
    /// Attempts in total (the first one included); 1 disables retries.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_elapsed: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_attempts: 6,
        }
    }
}

/// Everything [`super::VippsClient::new`] needs. `Debug` is safe to log: secrets print as `***`.
#[derive(Debug, Clone)]
pub struct VippsConfig {
    /// `https://apitest.vipps.no`, `https://api.vipps.no`, or the emulator. A path prefix is kept.
    pub base_url: Url,
    /// `client_id` header of the access-token call (not secret, but not logged either).
    pub client_id: String,
    pub client_secret: Secret,
    /// `Ocp-Apim-Subscription-Key`: sent on every call, token call included.
    pub subscription_key: Secret,
    /// `Merchant-Serial-Number`: the sales unit all calls act for.
    pub msn: String,
    /// `Vipps-System-Name` (max 30 characters).
    pub system_name: String,
    /// `Vipps-System-Version` (max 30 characters).
    pub system_version: String,
    /// Limit of one HTTP attempt, connect and body included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl VippsConfig {
    /// A config with the documented defaults: system name `paygate`, this crate's version,
    /// 10 s per attempt, and [`RetryPolicy::default`].
    pub fn new(
        base_url: Url,
        client_id: impl Into<String>,
        client_secret: Secret,
        subscription_key: Secret,
        msn: impl Into<String>,
    ) -> Self {
        Self {
            base_url,
            client_id: client_id.into(),
            client_secret,
            subscription_key,
            msn: msn.into(),
            system_name: "paygate".to_owned(),
            system_version: env!("CARGO_PKG_VERSION").to_owned(),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

impl VippsConfig {
    /// The client for the real Vipps API, with the configured time limits.
    pub fn remote(remote: &config::RemoteVipps, limits: &config::Vipps) -> Self {
        Self::new(
            remote.base_url.clone(),
            remote.client_id.clone(),
            remote.client_secret.clone(),
            remote.subscription_key.clone(),
            remote.msn.clone(),
        )
        .with_limits(limits)
    }

    /// The client for an emulator at `base_url` (it accepts any credentials).
    #[cfg(feature = "emulator")]
    pub fn emulator(base_url: Url, limits: &config::Vipps) -> Self {
        Self::new(
            base_url,
            "paygate-emulator",
            Secret::new("emulator-secret"),
            Secret::new("emulator-subscription-key"),
            "123456",
        )
        .with_limits(limits)
    }

    fn with_limits(mut self, limits: &config::Vipps) -> Self {
        self.request_timeout = limits.timeout;
        self.retry.max_elapsed = limits.retry_budget;
        self
    }
}
