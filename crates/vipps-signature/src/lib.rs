//! HMAC-SHA256 request authentication for Vipps webhooks (REFERENCE.md §3).
//!
//! Pure functions shared by the emulator (which signs) and paygate's webhook
//! receiver (which verifies), so both sides agree on one implementation that is
//! pinned to the official test vector below.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of the `Authorization` header value; the signed header list is fixed by Vipps.
const AUTHORIZATION_PREFIX: &str =
    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=";

/// The two header values a sender must attach (besides `x-ms-date` and `Host`,
/// which the caller already knows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// Value for `x-ms-content-sha256`.
    pub content_hash: String,
    /// Value for `Authorization`.
    pub authorization: String,
}

/// Why a webhook request failed authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The body was altered, or the `x-ms-content-sha256` header is not its hash.
    #[error("x-ms-content-sha256 does not match the request body")]
    ContentHashMismatch,
    /// The `Authorization` header is not `HMAC-SHA256 SignedHeaders=…&Signature=…`.
    #[error("Authorization header is not in the Vipps HMAC-SHA256 format")]
    BadAuthorizationFormat,
    /// Wrong secret, or path, host or date differ from what was signed.
    #[error("webhook signature does not match")]
    SignatureMismatch,
}

/// Standard Base64 (with padding) of SHA-256 over the raw body bytes.
pub fn content_hash(body: &[u8]) -> String {
    BASE64.encode(Sha256::digest(body))
}

/// The three-line string that is signed: method, request target, and the
/// `date;host;hash` line. No trailing newline.
pub fn string_to_sign(path_and_query: &str, date: &str, host: &str, content_hash: &str) -> String {
    format!("POST\n{path_and_query}\n{date};{host};{content_hash}")
}

/// Signs a webhook request. `secret` is used as UTF-8 bytes exactly as the
/// register call returned it: Vipps does NOT Base64-decode it, although it looks
/// like Base64 (the decoded key gives a different, wrong signature).
pub fn sign(
    secret: &str,
    path_and_query: &str,
    host: &str,
    date: &str,
    body: &[u8],
) -> SignedHeaders {
    let content_hash = content_hash(body);
    let signature = BASE64.encode(hmac(
        secret,
        &string_to_sign(path_and_query, date, host, &content_hash),
    ));
    SignedHeaders {
        content_hash,
        authorization: format!("{AUTHORIZATION_PREFIX}{signature}"),
    }
}

/// Verifies a received webhook request. Both comparisons run in constant time
/// so that a forger learns nothing from response timing.
pub fn verify(
    secret: &str,
    path_and_query: &str,
    host: &str,
    date: &str,
    content_sha256_header: &str,
    authorization_header: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    let expected = sign(secret, path_and_query, host, date, body);
    if !bool::from(
        expected
            .content_hash
            .as_bytes()
            .ct_eq(content_sha256_header.trim().as_bytes()),
    ) {
        return Err(SignatureError::ContentHashMismatch);
    }
    let received = authorization_header.trim();
    if !received.starts_with(AUTHORIZATION_PREFIX) || received.len() == AUTHORIZATION_PREFIX.len() {
        return Err(SignatureError::BadAuthorizationFormat);
    }
    if bool::from(expected.authorization.as_bytes().ct_eq(received.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::SignatureMismatch)
    }
}

fn hmac(secret: &str, message: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the
    // fallback keeps this function total without an `expect`.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    const OFFICIAL_SECRET: &str =
        "A0+AeKBRG2KRGvnNwJpQlb6IJFk48CKXCIcrLoHncVJKDILsQSxS6NWCccwWm6r6FhGKhiHTBsG2wo/xU6FY/A==";
    const OFFICIAL_PATH: &str = "/e2cee29b-012e-4f1d-8ef4-e95fd74a7a63";
    const OFFICIAL_HOST: &str = "webhook.site";
    const OFFICIAL_DATE: &str = "Thu, 30 Mar 2023 08:38:32 GMT";
    const OFFICIAL_BODY: &[u8] =
        br#"{"some-unique-content":"ee6e441b-cc4a-46f8-895d-a5af79bcc233/hello-world"}"#;
    const OFFICIAL_HASH: &str = "lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4=";
    const OFFICIAL_AUTH: &str =
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U=";

    const EXTRA_SECRET: &str = "090a478d-37ff-4e77-970e-d457aeb26a3a";
    const EXTRA_DATE: &str = "Mon, 14 Aug 2023 12:48:47 GMT";
    const BODY_A: &[u8] = br#"{"msn":"123456","reference":"acme-shop-123-order123abc","pspReference":"1234567891","name":"AUTHORIZED","amount":{"currency":"NOK","value":35000},"timestamp":"2023-08-14T12:48:46.260Z","idempotencyKey":"49ca711a9487112e1def","success":true}"#;

    fn auth(signature: &str) -> String {
        format!("{AUTHORIZATION_PREFIX}{signature}")
    }

    #[test]
    fn official_vector() {
        assert_eq!(content_hash(OFFICIAL_BODY), OFFICIAL_HASH);
        assert_eq!(
            string_to_sign(OFFICIAL_PATH, OFFICIAL_DATE, OFFICIAL_HOST, OFFICIAL_HASH),
            "POST\n/e2cee29b-012e-4f1d-8ef4-e95fd74a7a63\nThu, 30 Mar 2023 08:38:32 GMT;webhook.site;lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4="
        );
        let signed = sign(
            OFFICIAL_SECRET,
            OFFICIAL_PATH,
            OFFICIAL_HOST,
            OFFICIAL_DATE,
            OFFICIAL_BODY,
        );
        assert_eq!(signed.content_hash, OFFICIAL_HASH);
        assert_eq!(signed.authorization, OFFICIAL_AUTH);
        assert_eq!(
            verify(
                OFFICIAL_SECRET,
                OFFICIAL_PATH,
                OFFICIAL_HOST,
                OFFICIAL_DATE,
                OFFICIAL_HASH,
                OFFICIAL_AUTH,
                OFFICIAL_BODY
            ),
            Ok(())
        );
    }

    #[test]
    fn extra_vector_a_port_and_query() {
        let path = "/vipps/webhook?shop=1";
        let host = "example.com:8443";
        let hash = "6sli/RDaTvUtT1bm+0gUUJxjYC8UlM9P72CdwZ11Vp0=";
        assert_eq!(
            string_to_sign(path, EXTRA_DATE, host, hash),
            format!("POST\n/vipps/webhook?shop=1\nMon, 14 Aug 2023 12:48:47 GMT;example.com:8443;{hash}")
        );
        let signed = sign(EXTRA_SECRET, path, host, EXTRA_DATE, BODY_A);
        assert_eq!(signed.content_hash, hash);
        assert_eq!(
            signed.authorization,
            auth("aYVrqjoliKj9UFcoB2qb9vcvnCijyaFSTkGthBrr27w=")
        );
        assert_eq!(
            verify(
                EXTRA_SECRET,
                path,
                host,
                EXTRA_DATE,
                hash,
                &signed.authorization,
                BODY_A
            ),
            Ok(())
        );
    }

    #[test]
    fn extra_vector_b_empty_body() {
        let signed = sign(EXTRA_SECRET, "/", "example.com", EXTRA_DATE, b"");
        assert_eq!(
            signed.content_hash,
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            signed.authorization,
            auth("+oisGZ66oogBc/Oq1mmH2u4HHIQIO7UypTSzH4pTQtU=")
        );
    }

    #[test]
    fn base64_decoded_key_is_wrong() {
        let decoded = BASE64.decode(OFFICIAL_SECRET).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&decoded).unwrap();
        mac.update(
            string_to_sign(OFFICIAL_PATH, OFFICIAL_DATE, OFFICIAL_HOST, OFFICIAL_HASH).as_bytes(),
        );
        let wrong = BASE64.encode(mac.finalize().into_bytes());
        assert_eq!(wrong, "T3+NXHMmhNVEjW5PeJ4Gql70nf0MOXCAY9CoZDxuVQw=");
        assert_eq!(
            verify(
                OFFICIAL_SECRET,
                OFFICIAL_PATH,
                OFFICIAL_HOST,
                OFFICIAL_DATE,
                OFFICIAL_HASH,
                &auth(&wrong),
                OFFICIAL_BODY
            ),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn tampered_body_is_rejected() {
        let tampered =
            br#"{"some-unique-content":"ee6e441b-cc4a-46f8-895d-a5af79bcc233/hello-worle"}"#;
        assert_eq!(
            verify(
                OFFICIAL_SECRET,
                OFFICIAL_PATH,
                OFFICIAL_HOST,
                OFFICIAL_DATE,
                OFFICIAL_HASH,
                OFFICIAL_AUTH,
                tampered
            ),
            Err(SignatureError::ContentHashMismatch)
        );
        // Even with a matching hash header, the signature covers the hash.
        let forged_hash = content_hash(tampered);
        assert_eq!(
            verify(
                OFFICIAL_SECRET,
                OFFICIAL_PATH,
                OFFICIAL_HOST,
                OFFICIAL_DATE,
                &forged_hash,
                OFFICIAL_AUTH,
                tampered
            ),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn wrong_context_or_format_is_rejected() {
        let verify_with = |path: &str, host: &str, date: &str, authorization: &str| {
            verify(
                OFFICIAL_SECRET,
                path,
                host,
                date,
                OFFICIAL_HASH,
                authorization,
                OFFICIAL_BODY,
            )
        };
        assert_eq!(
            verify_with("/other", OFFICIAL_HOST, OFFICIAL_DATE, OFFICIAL_AUTH),
            Err(SignatureError::SignatureMismatch)
        );
        assert_eq!(
            verify_with(
                OFFICIAL_PATH,
                "webhook.site:8443",
                OFFICIAL_DATE,
                OFFICIAL_AUTH
            ),
            Err(SignatureError::SignatureMismatch)
        );
        assert_eq!(
            verify_with(
                OFFICIAL_PATH,
                OFFICIAL_HOST,
                "Thu, 30 Mar 2023 08:38:33 GMT",
                OFFICIAL_AUTH
            ),
            Err(SignatureError::SignatureMismatch)
        );
        assert_eq!(
            verify(
                EXTRA_SECRET,
                OFFICIAL_PATH,
                OFFICIAL_HOST,
                OFFICIAL_DATE,
                OFFICIAL_HASH,
                OFFICIAL_AUTH,
                OFFICIAL_BODY
            ),
            Err(SignatureError::SignatureMismatch)
        );
        for bad in [
            "",
            "agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U=",
            AUTHORIZATION_PREFIX,
            "Bearer abc",
        ] {
            assert_eq!(
                verify_with(OFFICIAL_PATH, OFFICIAL_HOST, OFFICIAL_DATE, bad),
                Err(SignatureError::BadAuthorizationFormat),
                "{bad:?}"
            );
        }
    }
}
