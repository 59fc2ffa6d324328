//! Merchant-redirect QR codes (the sticker in the taxi) over the Vipps QR API, and local
//! rendering for printing.

mod render;

use crate::{
    domain::{FieldViolation, PaygateError},
    vipps::{mapping, models, QrFormat, VippsClient},
};

pub use render::{render_png, render_svg};

/// A merchant-redirect QR code as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantQr {
    pub id: String,
    pub redirect_url: String,
    /// Image link, or the QR content for the target-URL format.
    pub image_url: String,
    /// Seconds until expiry; -1: never.
    pub expires_in: i64,
}

/// An image to print.
#[derive(Debug, Clone)]
pub struct RenderedQr {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// The QR service.
#[derive(Clone)]
pub struct MerchantQrs {
    vipps: VippsClient,
}

impl From<models::MerchantRedirectQr> for MerchantQr {
    fn from(q: models::MerchantRedirectQr) -> Self {
        Self {
            id: q.id,
            redirect_url: q.redirect_url,
            image_url: q.url,
            expires_in: q.expires_in,
        }
    }
}

impl MerchantQrs {
    pub fn new(vipps: VippsClient) -> Self {
        Self { vipps }
    }

    pub async fn create(
        &self,
        id: &str,
        redirect_url: &str,
        ttl: Option<i64>,
        format: QrFormat,
    ) -> Result<MerchantQr, PaygateError> {
        let mut v = Vec::new();
        check_id(id, &mut v);
        check_redirect(redirect_url, &mut v);
        if let Some(ttl) = ttl.filter(|t| !(300..=2_147_483_647).contains(t)) {
            v.push(FieldViolation::new(
                "ttl_seconds",
                format!("must be 300 to 2147483647 seconds (or 0: never expires), got {ttl}"),
            ));
        }
        if !v.is_empty() {
            return Err(PaygateError::InvalidArgument(v));
        }
        let body = models::MerchantRedirectQrRequest {
            id: id.to_owned(),
            redirect_url: redirect_url.to_owned(),
            ttl,
        };
        self.vipps
            .create_merchant_redirect_qr(&body, format)
            .await
            .map(MerchantQr::from)
            .map_err(|e| match e.status() {
                Some(409) => {
                    PaygateError::AlreadyExists(format!("a QR code with id {id:?} already exists"))
                }
                _ => mapping::error(&e),
            })
    }

    pub async fn get(&self, id: &str, format: QrFormat) -> Result<MerchantQr, PaygateError> {
        checked_id(id)?;
        self.vipps
            .get_merchant_redirect_qr(id, format)
            .await
            .map(MerchantQr::from)
            .map_err(|e| not_found_or(&e, id))
    }

    pub async fn list(&self, format: QrFormat) -> Result<Vec<MerchantQr>, PaygateError> {
        self.vipps
            .list_merchant_redirect_qrs(format)
            .await
            .map(|qrs| qrs.into_iter().map(MerchantQr::from).collect())
            .map_err(|e| mapping::error(&e))
    }

    pub async fn update(&self, id: &str, redirect_url: &str) -> Result<MerchantQr, PaygateError> {
        let mut v = Vec::new();
        check_id(id, &mut v);
        check_redirect(redirect_url, &mut v);
        if !v.is_empty() {
            return Err(PaygateError::InvalidArgument(v));
        }
        self.vipps
            .update_merchant_redirect_qr(id, redirect_url, QrFormat::TargetUrl)
            .await
            .map(MerchantQr::from)
            .map_err(|e| not_found_or(&e, id))
    }

    pub async fn delete(&self, id: &str) -> Result<(), PaygateError> {
        checked_id(id)?;
        self.vipps
            .delete_merchant_redirect_qr(id)
            .await
            .map_err(|e| not_found_or(&e, id))
    }

    /// Renders the code's real content (the QR API's `text/targetUrl` answer, not the
    /// merchant's redirect URL) as SVG or PNG.
    pub async fn render(&self, id: &str, png: bool, size: u32) -> Result<RenderedQr, PaygateError> {
        let size = match size {
            0 => 800,
            s if (100..=2000).contains(&s) => s,
            _ => {
                return Err(PaygateError::invalid(
                    "size",
                    "must be 100 to 2000 pixels (or 0: 800)",
                ))
            }
        };
        let content = self.get(id, QrFormat::TargetUrl).await?.image_url;
        let rendered = if png {
            RenderedQr {
                bytes: render_png(&content, size)?,
                content_type: "image/png",
            }
        } else {
            RenderedQr {
                bytes: render_svg(&content, size)?.into_bytes(),
                content_type: "image/svg+xml",
            }
        };
        Ok(rendered)
    }
}

fn not_found_or(e: &crate::vipps::VippsError, id: &str) -> PaygateError {
    match e.status() {
        Some(404) => PaygateError::NotFound(format!("no QR code with id {id:?}")),
        _ => mapping::error(e),
    }
}

fn checked_id(id: &str) -> Result<(), PaygateError> {
    let mut v = Vec::new();
    check_id(id, &mut v);
    if v.is_empty() {
        Ok(())
    } else {
        Err(PaygateError::InvalidArgument(v))
    }
}

/// `^[-_+%æøåÆØÅ\w\s]*$`, 1–128 characters (QR API).
fn check_id(id: &str, v: &mut Vec<FieldViolation>) {
    let len = id.chars().count();
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "-_+%".contains(c);
    if !(1..=128).contains(&len) || !id.chars().all(allowed) {
        v.push(FieldViolation::new(
            "id",
            "must be 1 to 128 characters: letters, digits, spaces and - _ + %",
        ));
    }
}

/// `^https:\/\/[\w\.]+([\w#!:.?+=&%@\-\/]+)?$` (QR API).
fn check_redirect(url: &str, v: &mut Vec<FieldViolation>) {
    let ok = url.strip_prefix("https://").is_some_and(|rest| {
        let host_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        host_end > 0
            && rest[host_end..]
                .chars()
                .all(|c| c.is_alphanumeric() || "_#!:.?+=&%@-/".contains(c))
    });
    if !ok || url.len() > 2048 {
        v.push(FieldViolation::new(
            "redirect_url",
            "must be an https:// URL",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_urls() {
        let mut v = Vec::new();
        check_id("taxi-34", &mut v);
        check_id("Drosje Ålesund 7", &mut v);
        check_redirect("https://fare.example.com/taxi/34?x=1", &mut v);
        assert!(v.is_empty(), "{v:?}");
        check_id("", &mut v);
        check_id("taxi/34", &mut v);
        check_id(&"a".repeat(129), &mut v);
        check_redirect("http://fare.example.com", &mut v);
        check_redirect("https://", &mut v);
        check_redirect("https://x.com/<script>", &mut v);
        assert_eq!(v.len(), 6);
    }
}
