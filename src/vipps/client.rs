//! The transport under every Vipps call: common headers, the access token, retries, the
//! 401-refresh, body limits and per-attempt tracing. The endpoints themselves are in `api.rs`.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::{Method, StatusCode};
use url::Url;

use super::config::VippsConfig;
use super::error::{classify, redact_digits, Problem, Refusal, VippsError};
use super::retry::{parse_retry_after, Budget};
use super::token::{parse_token_response, FetchedToken, TokenCache};
use crate::config::Secret;

/// Bodies beyond this are not read: a hostile or broken upstream cannot exhaust memory.
/// Real answers are a few KiB (a list of QR codes is the largest).
const MAX_BODY: usize = 1024 * 1024;

/// Client for the Vipps MobilePay APIs. Cheap to clone; clones share the token and the
/// connection pool.
#[derive(Clone)]
pub struct VippsClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    config: VippsConfig,
    /// Subscription key, MSN and system headers: the same on every request, built once.
    common_headers: HeaderMap,
    client_id: HeaderValue,
    client_secret: HeaderValue,
    /// Visible to the tests, which seed it.
    pub(super) token: TokenCache,
}

impl fmt::Debug for VippsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VippsClient")
            .field("base_url", &self.inner.config.base_url.as_str())
            .field("msn", &self.inner.config.msn)
            .finish_non_exhaustive()
    }
}

/// One API request as the endpoints describe it.
pub(crate) struct Call<'a> {
    /// Operation name for tracing, e.g. `create_payment`.
    pub(crate) op: &'static str,
    pub(crate) method: Method,
    /// Path segments after the base URL; each is percent-encoded on its own, so a reference
    /// or id containing `/`, `?` or spaces stays one segment.
    pub(crate) segments: &'a [&'a str],
    /// Serialized once, so every attempt sends exactly the same bytes.
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) idempotency_key: Option<&'a str>,
    /// Per-call headers (QR `Accept` and `Size`).
    pub(crate) headers: HeaderMap,
    /// Whether repeating the request after a lost answer is harmless: GET/PUT/DELETE, and POSTs
    /// with an Idempotency-Key. Others are retried only when Vipps surely did not act on them
    /// (connect error, 429).
    pub(crate) idempotent: bool,
    /// A DELETE whose earlier attempt may have succeeded: a 404 on a later attempt means done.
    pub(crate) gone_ok_after_retry: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(op: &'static str, method: Method, segments: &'a [&'a str]) -> Self {
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE);
        Self {
            op,
            method,
            segments,
            body: None,
            idempotency_key: None,
            headers: HeaderMap::new(),
            idempotent,
            gone_ok_after_retry: false,
        }
    }
}

/// A final answer from Vipps: a 2xx (body possibly unreadable) or a final 4xx refusal.
struct Received {
    status: StatusCode,
    /// `Err` only for a 2xx whose body could not be read in full; other bodies may be cut.
    body: Result<Vec<u8>, String>,
    attempt: u32,
}

/// What `send` needs to describe and build attempts.
struct Attempts<'a> {
    op: &'static str,
    method: &'a Method,
    url: &'a Url,
    idempotent: bool,
}

impl VippsClient {
    pub fn new(config: VippsConfig) -> Result<Self, VippsError> {
        let mut config = config;
        if !matches!(config.base_url.scheme(), "http" | "https")
            || config.base_url.cannot_be_a_base()
        {
            return Err(VippsError::Config(format!(
                "base URL must be http(s): {}",
                config.base_url
            )));
        }
        config.base_url.set_query(None);
        config.base_url.set_fragment(None);
        if config.retry.max_attempts == 0 {
            return Err(VippsError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }

        let mut common_headers = HeaderMap::new();
        common_headers.insert(
            "Ocp-Apim-Subscription-Key",
            header_value("subscription key", config.subscription_key.expose(), true)?,
        );
        common_headers.insert(
            "Merchant-Serial-Number",
            header_value("MSN", &config.msn, false)?,
        );
        common_headers.insert(
            "Vipps-System-Name",
            header_value("system name", &config.system_name, false)?,
        );
        common_headers.insert(
            "Vipps-System-Version",
            header_value("system version", &config.system_version, false)?,
        );
        let client_id = header_value("client id", &config.client_id, true)?;
        let client_secret = header_value("client secret", config.client_secret.expose(), true)?;

        let http = reqwest::Client::builder()
            // The APIs never redirect; following one would resend the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("paygate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VippsError::Config(format!("HTTP client: {e}")))?;

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                common_headers,
                client_id,
                client_secret,
                token: TokenCache::default(),
            }),
        })
    }

    /// The longest one call may take: the token call's budget, the API call's budget (a token
    /// refreshed after a 401 shares it) and one more token budget; every attempt is cut at its
    /// budget's end. A send lease must outlast it.
    pub fn longest_call(&self) -> std::time::Duration {
        self.inner.config.retry.max_elapsed * 3
    }

    /// Runs `call`: token, headers, retries, and one token refresh on 401. Returns the status
    /// and body of a 2xx.
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<(u16, Vec<u8>), VippsError> {
        let url = self.url(call.segments)?;
        let key = call.idempotency_key.map(idempotency_key).transpose()?;
        let mut token = self.access_token().await?;
        // Starts after the first token, so a slow token endpoint does not eat the call's budget.
        let mut budget = Budget::start(&self.inner.config.retry);
        let mut attempt = 0;
        let mut refreshed = false;
        let attempts = Attempts {
            op: call.op,
            method: &call.method,
            url: &url,
            idempotent: call.idempotent,
        };
        loop {
            let bearer = bearer(&token)?;
            let build = || {
                let mut req = self
                    .inner
                    .http
                    .request(call.method.clone(), url.clone())
                    .headers(self.inner.common_headers.clone())
                    .headers(call.headers.clone())
                    .header(AUTHORIZATION, bearer.clone());
                if let Some(key) = &key {
                    req = req.header("Idempotency-Key", key.clone());
                }
                match &call.body {
                    Some(body) => req
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone()),
                    // hyper omits the length of an empty body; gateways may answer 411 without it.
                    None if call.method == Method::POST || call.method == Method::PUT => {
                        req.header(CONTENT_LENGTH, "0")
                    }
                    None => req,
                }
            };
            let received = self
                .send(&attempts, &mut budget, &mut attempt, build)
                .await?;
            let status = received.status.as_u16();
            if received.status.is_success() {
                return received
                    .body
                    .map(|body| (status, body))
                    .map_err(|message| VippsError::Decode { status, message });
            }
            if status == 401 && !refreshed {
                // The token may have been revoked or expired early: one fresh token, one retry.
                refreshed = true;
                self.inner.token.invalidate(&token).await;
                token = self.access_token().await?;
                metrics::counter!("paygate_vipps_retries_total").increment(1);
                continue;
            }
            if status == 404 && call.gone_ok_after_retry && received.attempt > 1 {
                return Ok((status, Vec::new()));
            }
            let body = received.body.unwrap_or_default();
            return Err(VippsError::Rejected {
                status,
                problem: Problem::from_body(status, &body),
            });
        }
    }

    async fn access_token(&self) -> Result<Secret, VippsError> {
        self.inner.token.get(|| self.fetch_token()).await
    }

    /// `POST /accesstoken/get` with an empty body; transient failures are retried like any call.
    async fn fetch_token(&self) -> Result<FetchedToken, VippsError> {
        let url = self.url(&["accesstoken", "get"])?;
        let mut budget = Budget::start(&self.inner.config.retry);
        let mut attempt = 0;
        let attempts = Attempts {
            op: "access_token",
            method: &Method::POST,
            url: &url,
            // Several tokens may be valid at once, so asking again is harmless.
            idempotent: true,
        };
        let build = || {
            self.inner
                .http
                .post(url.clone())
                .headers(self.inner.common_headers.clone())
                .header("client_id", self.inner.client_id.clone())
                .header("client_secret", self.inner.client_secret.clone())
                .header(CONTENT_LENGTH, "0")
        };
        let received = self
            .send(&attempts, &mut budget, &mut attempt, build)
            .await
            .map_err(|e| match e {
                VippsError::Unavailable { status, message } => VippsError::Auth { status, message },
                VippsError::RateLimited { .. } => VippsError::Auth {
                    status: Some(429),
                    message: "token endpoint rate limited".into(),
                },
                other => other,
            })?;
        let status = received.status.as_u16();
        if !received.status.is_success() {
            let problem = Problem::from_body(status, &received.body.unwrap_or_default());
            return Err(VippsError::Auth {
                status: Some(status),
                message: format!("token request refused: {problem}"),
            });
        }
        let body = received.body.map_err(|message| VippsError::Auth {
            status: Some(status),
            message,
        })?;
        let fetched =
            parse_token_response(&body, SystemTime::now()).map_err(|message| VippsError::Auth {
                status: Some(status),
                message,
            })?;
        metrics::counter!("paygate_vipps_token_refreshes_total").increment(1);
        Ok(fetched)
    }

    /// Sends attempts until a final answer (2xx or a final refusal) or the budget runs out;
    /// 429, transient refusals, 5xx and transport errors are retried while the budget lasts.
    /// Every attempt is built by `build`, so each carries the same headers and body.
    async fn send(
        &self,
        a: &Attempts<'_>,
        budget: &mut Budget<'_>,
        attempt: &mut u32,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Received, VippsError> {
        loop {
            *attempt += 1;
            let started = Instant::now();
            let timeout = budget.attempt_timeout(self.inner.config.request_timeout);
            let result = build().timeout(timeout).send().await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            let status_label = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
            metrics::counter!("paygate_vipps_requests_total", "api" => a.op, "status" => status_label).increment(1);
            metrics::histogram!("paygate_vipps_request_duration_seconds", "api" => a.op)
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(
                op = a.op,
                method = %a.method,
                path = a.url.path(),
                status,
                attempt = *attempt,
                attempt_ms = millis(started.elapsed()),
                elapsed_ms = millis(budget.elapsed()),
                error = result.as_ref().err().map(describe),
                "Vipps API attempt"
            );

            // Each arm either returns a final answer or yields the error to give up with and
            // the Retry-After to honour before trying again.
            let (give_up, retry_after) = match result {
                Err(e) => {
                    let message = describe(&e);
                    let error = VippsError::Unavailable {
                        status: None,
                        message,
                    };
                    // A connect error means the request never left; anything later may
                    // have reached Vipps.
                    if !e.is_connect() && !a.idempotent {
                        return Err(error);
                    }
                    (error, None)
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let body = read_capped(resp).await.and_then(|(body, complete)| {
                            if complete {
                                Ok(body)
                            } else {
                                Err(format!("body larger than {MAX_BODY} bytes"))
                            }
                        });
                        return Ok(Received {
                            status,
                            body,
                            attempt: *attempt,
                        });
                    }
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    // Error bodies are only for diagnostics: a cut or failed read is fine.
                    let body = read_capped(resp).await.map(|(b, _)| b).unwrap_or_default();
                    match status.as_u16() {
                        429 => {
                            let problem = Problem::from_body(429, &body);
                            let error = VippsError::RateLimited {
                                retry_after,
                                problem: Some(problem),
                            };
                            (error, retry_after)
                        }
                        s @ 500..=599 => {
                            let problem = Problem::from_body(s, &body);
                            let error = VippsError::Unavailable {
                                status: Some(s),
                                message: problem.to_string(),
                            };
                            if !a.idempotent {
                                return Err(error);
                            }
                            (error, None)
                        }
                        s @ 400..=499 => {
                            let problem = Problem::from_body(s, &body);
                            match classify(s, &problem) {
                                // Not decided: retried with the same key and bytes.
                                Refusal::Transient => {
                                    (VippsError::Busy { status: s, problem }, retry_after)
                                }
                                Refusal::Final | Refusal::RateLimited => {
                                    return Ok(Received {
                                        status,
                                        body: Ok(body),
                                        attempt: *attempt,
                                    })
                                }
                            }
                        }
                        s => {
                            return Err(VippsError::Unavailable {
                                status: Some(s),
                                message: format!("unexpected HTTP status {status}"),
                            })
                        }
                    }
                }
            };
            match budget.next_delay(retry_after) {
                Some(delay) => {
                    metrics::counter!("paygate_vipps_retries_total").increment(1);
                    tokio::time::sleep(delay).await;
                }
                None => return Err(give_up),
            }
        }
    }

    /// Base URL plus `segments`, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, VippsError> {
        let mut url = self.inner.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| VippsError::Config("base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads at most `MAX_BODY` bytes; `true` when the whole body was read.
async fn read_capped(mut resp: reqwest::Response) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body failed: {}", describe(&e)))?
    {
        let room = MAX_BODY - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The error and its causes on one line ("connection refused" lives in a source, not in the
/// top-level message). Contains the URL, never headers.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout: "
    } else if e.is_connect() {
        "connect error: "
    } else {
        ""
    };
    let mut text = format!("{kind}{e}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    redact_digits(&text)
}

fn header_value(what: &str, value: &str, sensitive: bool) -> Result<HeaderValue, VippsError> {
    // The value is not quoted in the error: it may be a secret.
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| VippsError::Config(format!("{what} is not a valid HTTP header value")))?;
    v.set_sensitive(sensitive);
    Ok(v)
}

fn bearer(token: &Secret) -> Result<HeaderValue, VippsError> {
    header_value("access token", &format!("Bearer {}", token.expose()), true).map_err(|_| {
        VippsError::Auth {
            status: None,
            message: "access token is not a valid header value".into(),
        }
    })
}

/// Vipps allows at most 50 characters; a key that cannot be sent is refused before sending.
fn idempotency_key(key: &str) -> Result<HeaderValue, VippsError> {
    let ok = (1..=50).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(VippsError::Config(
            "Idempotency-Key must be 1–50 visible ASCII characters".into(),
        ));
    }
    header_value("Idempotency-Key", key, false)
}

/// Header names used by the QR endpoints.
pub(crate) const SIZE: HeaderName = HeaderName::from_static("size");
