//! Who may call the gRPC API, and what each caller may do.
//!
//! Callers authenticate with a bearer token (`authorization: Bearer TOKEN`) or, with mutual TLS,
//! a client certificate. Each caller has a name (for logs and the audit trail) and scopes:
//! `payments`, `events`, `pii`, `customers`, `qr`. Tokens compare in constant time. Several
//! tokens may share a name, which is how a token is rotated: add the new one, move the callers,
//! remove the old one.

use std::{
    fmt,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::config;

/// What a caller may do. Without `Pii`, answers and events carry no phone number or Vipps `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// CreatePaymentRequest, GetPayment, Capture/Cancel/RefundPayment, ListPaymentEvents.
    Payments,
    /// StreamPaymentEvents.
    Events,
    /// Phone numbers and Vipps `sub` in answers and events.
    Pii,
    /// GetCustomer, DeleteCustomer, ErasePhoneNumber.
    Customers,
    /// MerchantQrService.
    Qr,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Payments,
        Scope::Events,
        Scope::Pii,
        Scope::Customers,
        Scope::Qr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payments => "payments",
            Self::Events => "events",
            Self::Pii => "pii",
            Self::Customers => "customers",
            Self::Qr => "qr",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A set of scopes (five bits).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const ALL: Scopes = Scopes(0b1_1111);

    pub fn has(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u8) != 0
    }

    fn with(self, scope: Scope) -> Self {
        Self(self.0 | 1 << scope as u8)
    }

    /// `payments+events`; Err names the word that is not a scope.
    fn parse(text: &str) -> Result<Self, String> {
        text.split('+')
            .map(str::trim)
            .try_fold(Self::default(), |set, word| {
                Scope::parse(word).map(|s| set.with(s)).ok_or_else(|| {
                    let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                    format!("unknown scope {word:?} (known: {})", known.join(", "))
                })
            })
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = Scope::ALL
            .into_iter()
            .filter(|s| self.has(*s))
            .map(Scope::as_str)
            .collect();
        write!(f, "{}", names.join("+"))
    }
}

/// The authenticated caller, put into request extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scopes: Scopes,
}

impl Caller {
    /// Who calls an open API (emulator mode, or explicitly allowed): every scope.
    fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            scopes: Scopes::ALL,
        }
    }

    /// The caller of a request, as the interceptor recorded it.
    pub fn of<T>(request: &Request<T>) -> Self {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            // Not reachable: every service sits behind the interceptor, which always inserts one.
            .unwrap_or_else(|| Self {
                name: "unknown".into(),
                scopes: Scopes::default(),
            })
    }

    /// PERMISSION_DENIED naming the missing scope.
    pub fn require(&self, scope: Scope) -> Result<(), Status> {
        if self.scopes.has(scope) {
            return Ok(());
        }
        metrics::counter!("paygate_grpc_permission_denied_total", "scope" => scope.as_str())
            .increment(1);
        Err(Status::permission_denied(format!(
            "caller {:?} lacks the scope {:?} this call needs",
            self.name,
            scope.as_str()
        )))
    }

    /// Whether answers to this caller may carry phone numbers and Vipps `sub`.
    pub fn sees_pii(&self) -> bool {
        self.scopes.has(Scope::Pii)
    }
}

/// One token entry: caller name, token bytes, scopes.
struct Entry {
    name: String,
    token: Vec<u8>,
    scopes: Scopes,
}

impl fmt::Debug for Entry {
    /// Never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***:{:?}", self.name, self.scopes)
    }
}

/// Parses `name:TOKEN` or `name:TOKEN:scope+scope` entries (commas or newlines). An entry
/// without scopes has every scope and is reported in the second list, so paygate can warn.
/// Errors name the entry by position and caller name, never by token.
fn parse_tokens(text: &str) -> Result<(Vec<Entry>, Vec<String>), String> {
    let mut entries = Vec::new();
    let mut unscoped = Vec::new();
    for (i, entry) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
        .enumerate()
    {
        let mut parts = entry.splitn(3, ':').map(str::trim);
        let (Some(name), Some(token)) = (parts.next(), parts.next()) else {
            return Err(format!("entry {} is not name:TOKEN[:scope+scope]", i + 1));
        };
        if name.is_empty() || token.len() < 16 {
            return Err(format!(
                "entry {} needs a name and a token of at least 16 characters",
                i + 1
            ));
        }
        let scopes = match parts.next() {
            None => {
                unscoped.push(name.to_owned());
                Scopes::ALL
            }
            Some(list) => {
                Scopes::parse(list).map_err(|why| format!("entry {} ({name}): {why}", i + 1))?
            }
        };
        entries.push(Entry {
            name: name.to_owned(),
            token: token.as_bytes().to_vec(),
            scopes,
        });
    }
    Ok((entries, unscoped))
}

/// `name:scope+scope,name2:scope`: the scopes of mutual-TLS callers by certificate name.
fn parse_client_scopes(text: &str) -> Result<Vec<(String, Scopes)>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let (name, list) = entry
                .split_once(':')
                .ok_or_else(|| format!("entry {} is not name:scope+scope", i + 1))?;
            let scopes = Scopes::parse(list)
                .map_err(|why| format!("entry {} ({}): {why}", i + 1, name.trim()))?;
            Ok((name.trim().to_owned(), scopes))
        })
        .collect()
}

/// Checks callers; cheap to clone (one per service).
#[derive(Clone)]
pub struct Authenticator {
    /// None: no bearer tokens configured.
    tokens: Option<Arc<RwLock<Vec<Entry>>>>,
    /// Mutual TLS is on: a verified client certificate identifies the caller.
    mutual_tls: bool,
    /// Scopes of certificate names; None: every certificate the CA signed has every scope.
    client_scopes: Option<Arc<Vec<(String, Scopes)>>>,
}

impl Authenticator {
    /// Builds the token list (a configuration error names the key and the entry, never a
    /// token); with a tokens file, a task re-reads it when it changes.
    pub fn from_config(auth: &config::Auth, tls: &config::Tls) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        if let Some(inline) = &auth.tokens {
            let (parsed, unscoped) = parse_tokens(inline.expose())
                .map_err(|m| anyhow::anyhow!("invalid configuration: PAYGATE_API_TOKENS: {m}"))?;
            warn_unscoped("PAYGATE_API_TOKENS", &unscoped);
            entries.extend(parsed);
        }
        if let Some(path) = &auth.tokens_file {
            let (parsed, unscoped) = read_file(path)?;
            warn_unscoped("PAYGATE_API_TOKENS_FILE", &unscoped);
            entries.extend(parsed);
        }
        let client_scopes = auth
            .tls_client_scopes
            .as_deref()
            .map(parse_client_scopes)
            .transpose()
            .map_err(|m| anyhow::anyhow!("invalid configuration: PAYGATE_TLS_CLIENT_SCOPES: {m}"))?
            .map(Arc::new);
        let mutual_tls = tls.is_mutual();
        if client_scopes.is_some() && !mutual_tls {
            anyhow::bail!(
                "invalid configuration: PAYGATE_TLS_CLIENT_SCOPES: needs mutual TLS (PAYGATE_TLS_CLIENT_CA)"
            );
        }
        let tokens = (auth.tokens.is_some() || auth.tokens_file.is_some())
            .then(|| Arc::new(RwLock::new(entries)));
        if let (Some(shared), Some(path)) = (&tokens, auth.tokens_file.clone()) {
            spawn_reload(path, auth.tokens.clone(), Arc::downgrade(shared));
        }
        Ok(Self {
            tokens,
            mutual_tls,
            client_scopes,
        })
    }

    /// Neither tokens nor client certificates identify callers.
    pub fn is_open(&self) -> bool {
        self.tokens.is_none() && !self.mutual_tls
    }

    /// The caller presenting `header` (the `authorization` value) and, with mutual TLS,
    /// the client certificate chain. With tokens configured a token is required.
    fn identify(
        &self,
        header: Option<&str>,
        certificates: Option<&[tonic::transport::CertificateDer<'static>]>,
    ) -> Result<Caller, Status> {
        if let Some(tokens) = &self.tokens {
            return check_token(tokens, header);
        }
        if self.mutual_tls {
            return self.certificate_caller(certificates);
        }
        Ok(Caller::anonymous())
    }

    /// The caller named by the client certificate's SAN or CN, with its mapped scopes.
    fn certificate_caller(
        &self,
        certificates: Option<&[tonic::transport::CertificateDer<'static>]>,
    ) -> Result<Caller, Status> {
        let names = certificates
            .and_then(|chain| chain.first())
            .map(|leaf| certificate_names(leaf.as_ref()))
            .unwrap_or_default();
        let Some(mapping) = &self.client_scopes else {
            let name = names
                .into_iter()
                .next()
                .unwrap_or_else(|| "client-certificate".into());
            return Ok(Caller {
                name,
                scopes: Scopes::ALL,
            });
        };
        names
            .iter()
            .find_map(|n| {
                mapping
                    .iter()
                    .find(|(mapped, _)| mapped == n)
                    .map(|(name, scopes)| Caller {
                        name: name.clone(),
                        scopes: *scopes,
                    })
            })
            // A certificate the CA signed but the mapping does not name: known, but no scopes.
            .map_or_else(
                || {
                    Ok(Caller {
                        name: names.into_iter().next().unwrap_or_default(),
                        scopes: Scopes::default(),
                    })
                },
                Ok,
            )
    }
}

/// Compares against every token so the time taken does not tell which one nearly matched.
fn check_token(tokens: &RwLock<Vec<Entry>>, header: Option<&str>) -> Result<Caller, Status> {
    let presented = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Status::unauthenticated("missing bearer token (authorization: Bearer TOKEN)")
        })?;
    let tokens = tokens
        .read()
        .map_err(|_| Status::internal("token list unavailable"))?;
    let mut found = None;
    for entry in tokens.iter() {
        if bool::from(presented.as_bytes().ct_eq(&entry.token)) {
            found = Some(Caller {
                name: entry.name.clone(),
                scopes: entry.scopes,
            });
        }
    }
    found.ok_or_else(|| Status::unauthenticated("unknown bearer token"))
}

/// DNS and URI subject alternative names, then the common name, of a DER certificate.
fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) => names.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            names.push(cn.to_owned());
        }
    }
    names
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let certificates = request.peer_certs();
        match self.identify(header, certificates.as_deref().map(Vec::as_slice)) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(status) => {
                metrics::counter!("paygate_grpc_unauthenticated_total").increment(1);
                Err(status)
            }
        }
    }
}

fn warn_unscoped(key: &str, names: &[String]) {
    for name in names {
        tracing::warn!(
            key,
            caller = %name,
            "API token entry without scopes: it may do everything (payments+events+pii+customers+qr); \
             give it only the scopes it needs (name:TOKEN:scope+scope)"
        );
    }
}

/// Re-reads the tokens file when it changes (a rotated secret), keeping the inline tokens.
fn spawn_reload(
    path: String,
    inline: Option<config::Secret>,
    target: std::sync::Weak<RwLock<Vec<Entry>>>,
) {
    tokio::spawn(async move {
        let mut seen = modified(&path);
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let Some(target) = target.upgrade() else {
                return;
            };
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match read_file(&path) {
                Ok((mut fresh, unscoped)) => {
                    warn_unscoped("PAYGATE_API_TOKENS_FILE", &unscoped);
                    if let Some(inline) = &inline {
                        fresh.extend(
                            parse_tokens(inline.expose())
                                .map(|p| p.0)
                                .unwrap_or_default(),
                        );
                    }
                    if let Ok(mut t) = target.write() {
                        *t = fresh;
                    }
                    tracing::info!("API tokens reloaded from PAYGATE_API_TOKENS_FILE");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "API tokens file unreadable; keeping the old tokens")
                }
            }
        }
    });
}

fn read_file(path: &str) -> anyhow::Result<(Vec<Entry>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("invalid configuration: PAYGATE_API_TOKENS_FILE {path}: {e}")
    })?;
    parse_tokens(&text)
        .map_err(|m| anyhow::anyhow!("invalid configuration: PAYGATE_API_TOKENS_FILE {path}: {m}"))
}

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn authenticator(text: &str) -> Authenticator {
        Authenticator {
            tokens: Some(Arc::new(RwLock::new(parse_tokens(text).unwrap().0))),
            mutual_tls: false,
            client_scopes: None,
        }
    }

    #[test]
    fn tokens_parse_and_check() {
        let (parsed, unscoped) =
            parse_tokens("fare-system:aaaaaaaaaaaaaaaa, booking:bbbbbbbbbbbbbbbb:events").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(unscoped, ["fare-system"]);
        assert!(parse_tokens("nocolon").is_err());
        assert!(parse_tokens("x:short").is_err());
        let err = parse_tokens("a:bbbbbbbbbbbbbbbb,c:short").unwrap_err();
        assert!(!err.contains("short"), "never quotes a token");
        let auth = authenticator("fare-system:aaaaaaaaaaaaaaaa, booking:bbbbbbbbbbbbbbbb:events");
        let booking = auth
            .identify(Some("Bearer bbbbbbbbbbbbbbbb"), None)
            .unwrap();
        assert_eq!(booking.name, "booking");
        assert!(booking.scopes.has(Scope::Events));
        assert!(!booking.scopes.has(Scope::Pii));
        assert_eq!(
            auth.identify(Some("Bearer aaaaaaaaaaaaaaaa"), None)
                .unwrap()
                .scopes,
            Scopes::ALL
        );
        assert!(auth
            .identify(Some("Bearer bbbbbbbbbbbbbbbc"), None)
            .is_err());
        assert!(auth.identify(Some("bbbbbbbbbbbbbbbb"), None).is_err());
        assert!(auth.identify(None, None).is_err());
        let open = Authenticator {
            tokens: None,
            mutual_tls: false,
            client_scopes: None,
        };
        assert_eq!(open.identify(None, None).unwrap().scopes, Scopes::ALL);
    }

    #[test]
    fn an_unknown_scope_names_the_entry_not_the_token() {
        let err = parse_tokens("fare:aaaaaaaaaaaaaaaa:payments+refunds").unwrap_err();
        assert!(err.contains("entry 1 (fare)"), "{err}");
        assert!(err.contains("\"refunds\""), "{err}");
        assert!(!err.contains("aaaaaaaaaaaaaaaa"), "{err}");
        assert!(parse_client_scopes("backoffice:payments+pii+customers").is_ok());
        assert!(parse_client_scopes("backoffice:everything")
            .unwrap_err()
            .contains("backoffice"));
    }

    #[test]
    fn a_missing_scope_is_permission_denied_naming_it() {
        let caller = Caller {
            name: "ride-events".into(),
            scopes: Scopes::parse("events").unwrap(),
        };
        assert!(caller.require(Scope::Events).is_ok());
        let denied = caller.require(Scope::Payments).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("\"payments\""),
            "{}",
            denied.message()
        );
        assert!(!caller.sees_pii());
    }
}
