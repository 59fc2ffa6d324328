//! Who may call the gRPC API: bearer tokens (`authorization: Bearer TOKEN`), each with a caller
//! name for logs. Tokens compare in constant time. Several tokens may share a name, which is how
//! a token is rotated: add the new one, move the callers, remove the old one.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::config;

/// The authenticated caller's name, put into request extensions.
#[derive(Debug, Clone)]
pub struct Caller(#[allow(dead_code)] pub String); // read by the audit trail (next change)

/// Parses `name:TOKEN,name2:TOKEN2` (commas or newlines). Errors never quote a token.
pub fn parse_tokens(text: &str) -> Result<TokenList, String> {
    let mut out = Vec::new();
    for (i, entry) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
        .enumerate()
    {
        let Some((name, token)) = entry.split_once(':') else {
            return Err(format!("entry {} is not name:TOKEN", i + 1));
        };
        let (name, token) = (name.trim(), token.trim());
        if name.is_empty() || token.len() < 16 {
            return Err(format!(
                "entry {} needs a name and a token of at least 16 characters",
                i + 1
            ));
        }
        out.push((name.to_owned(), token.as_bytes().to_vec()));
    }
    Ok(out)
}

/// Caller names and their tokens.
type TokenList = Vec<(String, Vec<u8>)>;

/// Checks bearer tokens; cheap to clone (one per service).
#[derive(Clone)]
pub struct Authenticator {
    /// None: the API is open (emulator mode, mutual TLS only, or explicitly allowed).
    tokens: Option<Arc<RwLock<TokenList>>>,
}

impl Authenticator {
    /// Builds the token list; with a tokens file, a task re-reads it when it changes.
    pub fn from_config(config: &config::Auth) -> anyhow::Result<Self> {
        let mut tokens = Vec::new();
        if let Some(inline) = &config.tokens {
            tokens.extend(
                parse_tokens(inline.expose())
                    .map_err(|m| anyhow::anyhow!("PAYGATE_API_TOKENS: {m}"))?,
            );
        }
        if let Some(path) = &config.tokens_file {
            tokens.extend(read_file(path)?);
        }
        if config.tokens.is_none() && config.tokens_file.is_none() {
            return Ok(Self { tokens: None });
        }
        let shared = Arc::new(RwLock::new(tokens));
        if let Some(path) = config.tokens_file.clone() {
            let inline = config.tokens.clone();
            let target = Arc::downgrade(&shared);
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
                        Ok(mut fresh) => {
                            if let Some(inline) = &inline {
                                fresh.extend(parse_tokens(inline.expose()).unwrap_or_default());
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
        Ok(Self {
            tokens: Some(shared),
        })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// The caller's name if `header` (the `authorization` value) carries a known token.
    pub fn check(&self, header: Option<&str>) -> Result<Option<String>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let presented = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("missing bearer token (authorization: Bearer TOKEN)")
            })?;
        let tokens = tokens
            .read()
            .map_err(|_| Status::internal("token list unavailable"))?;
        // Compare against every token so the time taken does not tell which one nearly matched.
        let mut found = None;
        for (name, token) in tokens.iter() {
            if bool::from(presented.as_bytes().ct_eq(token)) {
                found = Some(name.clone());
            }
        }
        found
            .map(Some)
            .ok_or_else(|| Status::unauthenticated("unknown bearer token"))
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.check(header) {
            Ok(Some(name)) => {
                request.extensions_mut().insert(Caller(name));
                Ok(request)
            }
            Ok(None) => Ok(request),
            Err(status) => {
                metrics::counter!("paygate_grpc_unauthenticated_total").increment(1);
                Err(status)
            }
        }
    }
}

fn read_file(path: &str) -> anyhow::Result<TokenList> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("PAYGATE_API_TOKENS_FILE {path}: {e}"))?;
    parse_tokens(&text).map_err(|m| anyhow::anyhow!("PAYGATE_API_TOKENS_FILE {path}: {m}"))
}

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_check() {
        let parsed =
            parse_tokens("fare-system:aaaaaaaaaaaaaaaa, booking:bbbbbbbbbbbbbbbb").unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(parse_tokens("nocolon").is_err());
        assert!(parse_tokens("x:short").is_err());
        let err = parse_tokens("a:bbbbbbbbbbbbbbbb,c:short").unwrap_err();
        assert!(!err.contains("short"), "never quotes a token");
        let auth = Authenticator {
            tokens: Some(Arc::new(RwLock::new(parsed))),
        };
        assert_eq!(
            auth.check(Some("Bearer bbbbbbbbbbbbbbbb"))
                .unwrap()
                .as_deref(),
            Some("booking")
        );
        assert!(auth.check(Some("Bearer bbbbbbbbbbbbbbbc")).is_err());
        assert!(auth.check(Some("bbbbbbbbbbbbbbbb")).is_err());
        assert!(auth.check(None).is_err());
        let open = Authenticator { tokens: None };
        assert_eq!(open.check(None).unwrap(), None);
    }
}
