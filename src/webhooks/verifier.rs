//! Who may post webhooks: a valid HMAC under one of our secrets, with a fresh date.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use url::Url;

use vipps_signature as signature;

/// Why a webhook was not accepted as authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("x-ms-date is not an RFC 1123 date")]
    BadDate,
    #[error("x-ms-date is too far from now")]
    StaleDate,
    #[error("no webhook secret is configured yet")]
    NoSecret,
    #[error("{0}")]
    Signature(#[from] signature::SignatureError),
}

impl VerifyError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::BadDate => "bad_date",
            Self::StaleDate => "stale_date",
            Self::NoSecret => "no_secret",
            Self::Signature(signature::SignatureError::ContentHashMismatch) => "content_hash",
            Self::Signature(signature::SignatureError::BadAuthorizationFormat) => {
                "bad_authorization"
            }
            Self::Signature(signature::SignatureError::SignatureMismatch) => "signature",
        }
    }
}

/// Checks signatures for the registered public URL. Host and path come from that URL, not from
/// the request: proxies rewrite `Host`, but Vipps signed what it was given at registration.
#[derive(Clone)]
pub struct Verifier {
    path_and_query: String,
    host: String,
    max_skew: Duration,
    /// Several secrets verify at once, so a secret can be rotated without losing webhooks.
    secrets: Arc<RwLock<Vec<String>>>,
}

/// The headers a webhook carries.
pub struct SignedRequest<'a> {
    pub date: Option<&'a str>,
    pub content_sha256: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

impl Verifier {
    pub fn new(public_url: &Url, max_skew: Duration) -> Self {
        let mut path_and_query = public_url.path().to_owned();
        if let Some(q) = public_url.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let host = match public_url.port() {
            Some(port) => format!("{}:{port}", public_url.host_str().unwrap_or_default()),
            None => public_url.host_str().unwrap_or_default().to_owned(),
        };
        Self {
            path_and_query,
            host,
            max_skew,
            secrets: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// Replaces the secrets (registration done, or rotation).
    pub fn set_secrets(&self, secrets: Vec<String>) {
        if let Ok(mut s) = self.secrets.write() {
            *s = secrets;
        }
    }

    pub fn has_secret(&self) -> bool {
        self.secrets.read().map(|s| !s.is_empty()).unwrap_or(false)
    }

    /// Verifies one request at time `now`.
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let date = req.date.ok_or(VerifyError::MissingHeader("x-ms-date"))?;
        let hash = req
            .content_sha256
            .ok_or(VerifyError::MissingHeader("x-ms-content-sha256"))?;
        let authorization = req
            .authorization
            .ok_or(VerifyError::MissingHeader("authorization"))?;
        let sent = DateTime::parse_from_rfc2822(date).map_err(|_| VerifyError::BadDate)?;
        let skew = (now - sent.with_timezone(&Utc)).abs();
        if skew.to_std().map_or(true, |s| s > self.max_skew) {
            return Err(VerifyError::StaleDate);
        }
        let secrets = self.secrets.read().map(|s| s.clone()).unwrap_or_default();
        if secrets.is_empty() {
            return Err(VerifyError::NoSecret);
        }
        let mut last = VerifyError::NoSecret;
        for secret in &secrets {
            match signature::verify(
                secret,
                &self.path_and_query,
                &self.host,
                date,
                hash,
                authorization,
                body,
            ) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "090a478d-37ff-4e77-970e-d457aeb26a3a";
    const DATE: &str = "Mon, 14 Aug 2023 12:48:47 GMT";
    const BODY: &str = r#"{"msn":"123456","reference":"acme-shop-123-order123abc","pspReference":"1234567891","name":"AUTHORIZED","amount":{"currency":"NOK","value":35000},"timestamp":"2023-08-14T12:48:46.260Z","idempotencyKey":"49ca711a9487112e1def","success":true}"#;

    fn verifier() -> Verifier {
        let v = Verifier::new(
            &Url::parse("https://example.com:8443/vipps/webhook?shop=1").unwrap(),
            Duration::from_secs(300),
        );
        v.set_secrets(vec!["old-secret".into(), SECRET.into()]);
        v
    }

    fn at(date: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc2822(date)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn request<'a>(date: &'a str, auth: &'a str) -> SignedRequest<'a> {
        SignedRequest {
            date: Some(date),
            content_sha256: Some("6sli/RDaTvUtT1bm+0gUUJxjYC8UlM9P72CdwZ11Vp0="),
            authorization: Some(auth),
        }
    }

    const AUTH: &str = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=aYVrqjoliKj9UFcoB2qb9vcvnCijyaFSTkGthBrr27w=";

    #[test]
    fn reference_vector_a_verifies_with_host_port_and_query_from_the_url() {
        assert_eq!(
            verifier().verify(&request(DATE, AUTH), BODY.as_bytes(), at(DATE)),
            Ok(())
        );
    }

    #[test]
    fn date_window() {
        let later = at(DATE) + chrono::Duration::seconds(301);
        assert_eq!(
            verifier().verify(&request(DATE, AUTH), BODY.as_bytes(), later),
            Err(VerifyError::StaleDate)
        );
        let early = at(DATE) - chrono::Duration::seconds(299);
        assert_eq!(
            verifier().verify(&request(DATE, AUTH), BODY.as_bytes(), early),
            Ok(())
        );
        assert_eq!(
            verifier().verify(&request("yesterday", AUTH), BODY.as_bytes(), at(DATE)),
            Err(VerifyError::BadDate)
        );
    }

    #[test]
    fn tampering_and_missing_parts_are_refused() {
        let v = verifier();
        let tampered = BODY.replace("35000", "35001");
        assert_eq!(
            v.verify(&request(DATE, AUTH), tampered.as_bytes(), at(DATE)),
            Err(VerifyError::Signature(
                signature::SignatureError::ContentHashMismatch
            ))
        );
        let bad_sig = AUTH.replace("aYVr", "bYVr");
        assert!(v
            .verify(&request(DATE, &bad_sig), BODY.as_bytes(), at(DATE))
            .is_err());
        let missing = SignedRequest {
            authorization: None,
            ..request(DATE, AUTH)
        };
        assert_eq!(
            v.verify(&missing, BODY.as_bytes(), at(DATE)),
            Err(VerifyError::MissingHeader("authorization"))
        );
        let other_host = Verifier::new(
            &Url::parse("https://example.com/vipps/webhook?shop=1").unwrap(),
            Duration::from_secs(300),
        );
        other_host.set_secrets(vec![SECRET.into()]);
        assert!(other_host
            .verify(&request(DATE, AUTH), BODY.as_bytes(), at(DATE))
            .is_err());
        let empty = Verifier::new(
            &Url::parse("https://example.com:8443/vipps/webhook?shop=1").unwrap(),
            Duration::from_secs(300),
        );
        assert_eq!(
            empty.verify(&request(DATE, AUTH), BODY.as_bytes(), at(DATE)),
            Err(VerifyError::NoSecret)
        );
    }
}
