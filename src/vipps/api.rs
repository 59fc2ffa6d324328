//! The Vipps endpoints paygate uses: ePayment, Webhooks, Userinfo and QR merchant redirect.
//! Each method only describes its request; `client.rs` does the sending.

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{Call, VippsClient, SIZE};
use super::error::{redact_digits, VippsError};
use super::models;

impl VippsClient {
    // --- ePayment -------------------------------------------------------------------------

    /// `POST /epayment/v1/payments` (201). Repeating with the same key and body is safe.
    pub async fn create_payment(
        &self,
        body: &models::CreatePaymentRequest,
        idempotency_key: &str,
    ) -> Result<models::CreatePaymentResponse, VippsError> {
        let segments = ["epayment", "v1", "payments"];
        let mut call = Call::new("create_payment", Method::POST, &segments);
        call.body = Some(json_body(body)?);
        call.idempotency_key = Some(idempotency_key);
        call.idempotent = true;
        self.json(call).await
    }

    /// `GET /epayment/v1/payments/{reference}`.
    pub async fn get_payment(
        &self,
        reference: &str,
    ) -> Result<models::GetPaymentResponse, VippsError> {
        let segments = ["epayment", "v1", "payments", reference];
        self.json(Call::new("get_payment", Method::GET, &segments))
            .await
    }

    /// `GET /epayment/v1/payments/{reference}/events`.
    pub async fn get_payment_events(
        &self,
        reference: &str,
    ) -> Result<Vec<models::PaymentEvent>, VippsError> {
        let segments = ["epayment", "v1", "payments", reference, "events"];
        self.json(Call::new("get_payment_events", Method::GET, &segments))
            .await
    }

    /// `POST /epayment/v1/payments/{reference}/capture`.
    pub async fn capture_payment(
        &self,
        reference: &str,
        amount: &models::Amount,
        idempotency_key: &str,
    ) -> Result<models::ModificationResponse, VippsError> {
        self.modify(
            "capture_payment",
            reference,
            "capture",
            Some(amount),
            idempotency_key,
        )
        .await
    }

    /// `POST /epayment/v1/payments/{reference}/refund`.
    pub async fn refund_payment(
        &self,
        reference: &str,
        amount: &models::Amount,
        idempotency_key: &str,
    ) -> Result<models::ModificationResponse, VippsError> {
        self.modify(
            "refund_payment",
            reference,
            "refund",
            Some(amount),
            idempotency_key,
        )
        .await
    }

    /// `POST /epayment/v1/payments/{reference}/cancel` (no body in v1.4.1).
    pub async fn cancel_payment(
        &self,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<models::ModificationResponse, VippsError> {
        self.modify("cancel_payment", reference, "cancel", None, idempotency_key)
            .await
    }

    async fn modify(
        &self,
        op: &'static str,
        reference: &str,
        action: &str,
        amount: Option<&models::Amount>,
        idempotency_key: &str,
    ) -> Result<models::ModificationResponse, VippsError> {
        let segments = ["epayment", "v1", "payments", reference, action];
        let mut call = Call::new(op, Method::POST, &segments);
        if let Some(amount) = amount {
            call.body = Some(json_body(&models::ModificationRequest {
                modification_amount: amount.clone(),
            })?);
        }
        call.idempotency_key = Some(idempotency_key);
        call.idempotent = true;
        self.json(call).await
    }

    // --- Webhooks API ---------------------------------------------------------------------

    /// `GET /webhooks/v1/webhooks`.
    pub async fn list_webhooks(&self) -> Result<models::WebhookList, VippsError> {
        let segments = ["webhooks", "v1", "webhooks"];
        self.json(Call::new("list_webhooks", Method::GET, &segments))
            .await
    }

    /// `POST /webhooks/v1/webhooks` (201). Not retried after it may have arrived: a repeat
    /// would register a second hook with another secret.
    pub async fn register_webhook(
        &self,
        body: &models::RegisterWebhookRequest,
    ) -> Result<models::RegisterWebhookResponse, VippsError> {
        let segments = ["webhooks", "v1", "webhooks"];
        let mut call = Call::new("register_webhook", Method::POST, &segments);
        call.body = Some(json_body(body)?);
        self.json(call).await
    }

    /// `DELETE /webhooks/v1/webhooks/{id}` (204).
    pub async fn delete_webhook(&self, id: &str) -> Result<(), VippsError> {
        let segments = ["webhooks", "v1", "webhooks", id];
        let mut call = Call::new("delete_webhook", Method::DELETE, &segments);
        call.gone_ok_after_retry = true;
        self.execute(call).await.map(drop)
    }

    // --- Userinfo -------------------------------------------------------------------------

    /// `GET /vipps-userinfo-api/userinfo/{sub}`: within 168 hours of the payment.
    pub async fn get_userinfo(&self, sub: &str) -> Result<models::UserInfo, VippsError> {
        let segments = ["vipps-userinfo-api", "userinfo", sub];
        self.json(Call::new("get_userinfo", Method::GET, &segments))
            .await
    }

    // --- QR merchant redirect -------------------------------------------------------------

    /// `POST /qr/v1/merchant-redirect` (200). A 409 means the id exists. Not retried after it
    /// may have arrived, since a repeat of a create that worked would also answer 409.
    pub async fn create_merchant_redirect_qr(
        &self,
        body: &models::MerchantRedirectQrRequest,
        format: models::QrFormat,
    ) -> Result<models::MerchantRedirectQr, VippsError> {
        let segments = ["qr", "v1", "merchant-redirect"];
        let mut call = Call::new("create_merchant_redirect_qr", Method::POST, &segments);
        call.body = Some(json_body(body)?);
        qr_format(&mut call, format);
        self.json(call).await
    }

    /// `GET /qr/v1/merchant-redirect/{id}`: also how to get a fresh image link.
    pub async fn get_merchant_redirect_qr(
        &self,
        id: &str,
        format: models::QrFormat,
    ) -> Result<models::MerchantRedirectQr, VippsError> {
        let segments = ["qr", "v1", "merchant-redirect", id];
        let mut call = Call::new("get_merchant_redirect_qr", Method::GET, &segments);
        qr_format(&mut call, format);
        self.json(call).await
    }

    /// `GET /qr/v1/merchant-redirect`.
    pub async fn list_merchant_redirect_qrs(
        &self,
        format: models::QrFormat,
    ) -> Result<Vec<models::MerchantRedirectQr>, VippsError> {
        let segments = ["qr", "v1", "merchant-redirect"];
        let mut call = Call::new("list_merchant_redirect_qrs", Method::GET, &segments);
        qr_format(&mut call, format);
        self.json(call).await
    }

    /// `PUT /qr/v1/merchant-redirect/{id}`: the printed code stays, its target changes.
    pub async fn update_merchant_redirect_qr(
        &self,
        id: &str,
        redirect_url: &str,
        format: models::QrFormat,
    ) -> Result<models::MerchantRedirectQr, VippsError> {
        let segments = ["qr", "v1", "merchant-redirect", id];
        let mut call = Call::new("update_merchant_redirect_qr", Method::PUT, &segments);
        call.body = Some(json_body(&models::MerchantRedirectQrUpdateRequest {
            redirect_url: redirect_url.to_owned(),
        })?);
        qr_format(&mut call, format);
        self.json(call).await
    }

    /// `DELETE /qr/v1/merchant-redirect/{id}` (200). The printed code stops working.
    pub async fn delete_merchant_redirect_qr(&self, id: &str) -> Result<(), VippsError> {
        let segments = ["qr", "v1", "merchant-redirect", id];
        let mut call = Call::new("delete_merchant_redirect_qr", Method::DELETE, &segments);
        call.gone_ok_after_retry = true;
        self.execute(call).await.map(drop)
    }

    /// Runs `call` and reads its 2xx body as `T`.
    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, VippsError> {
        let (status, body) = self.execute(call).await?;
        serde_json::from_slice(&body).map_err(|e| VippsError::Decode {
            status,
            // serde may quote the offending value (a phone number, say).
            message: redact_digits(&e.to_string()),
        })
    }
}

fn json_body(body: &impl Serialize) -> Result<Vec<u8>, VippsError> {
    serde_json::to_vec(body).map_err(|e| VippsError::Config(format!("request body: {e}")))
}

/// `Accept` picks the form of the answer's `url`; `Size` the PNG dimensions.
fn qr_format(call: &mut Call<'_>, format: models::QrFormat) {
    call.headers
        .insert(ACCEPT, HeaderValue::from_static(format.accept()));
    if let Some(size) = format.size() {
        call.headers.insert(SIZE, HeaderValue::from(size));
    }
}
