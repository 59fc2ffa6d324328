//! Wire types of the Vipps MobilePay APIs, as the client sends and reads them.
//!
//! Field names follow the OpenAPI specs in `shared/vipps-api` (camelCase on the wire).
//! Amounts are integer minor units. `reference` and phone numbers are always JSON
//! strings (the seed document shows them as numbers; the API type is string).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{currency, value}`: value in minor units (øre, cents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub currency: String,
    pub value: i64,
}

/// `paymentMethod` of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    #[serde(rename = "type")]
    pub kind: String,
}

/// `customer` of a create request: paygate only sends the phone-number form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub phone_number: String,
}

/// `profile` of a create request: space-separated scope words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRequest {
    pub scope: String,
}

/// `POST /epayment/v1/payments` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePaymentRequest {
    pub amount: Amount,
    pub payment_method: PaymentMethod,
    pub reference: String,
    pub user_flow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_interaction: Option<String>,
}

/// 201 answer to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePaymentResponse {
    pub reference: String,
    #[serde(default)]
    pub redirect_url: Option<String>,
}

/// The four running totals of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    pub authorized_amount: Amount,
    pub cancelled_amount: Amount,
    pub captured_amount: Amount,
    pub refunded_amount: Amount,
}

/// `profile` of a payment: `sub` appears after AUTHORIZED when a scope was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    #[serde(default)]
    pub sub: Option<String>,
}

/// 200 answer to `GET /epayment/v1/payments/{reference}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPaymentResponse {
    pub aggregate: Aggregate,
    pub amount: Amount,
    /// CREATED | AUTHORIZED | ABORTED | EXPIRED | TERMINATED
    pub state: String,
    #[serde(default)]
    pub payment_method: Option<PaymentMethod>,
    #[serde(default)]
    pub profile: Option<ProfileInfo>,
    pub psp_reference: String,
    pub reference: String,
    #[serde(default)]
    pub redirect_url: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// One item of `GET /epayment/v1/payments/{reference}/events`, and the body of an ePayment webhook
/// (the webhook adds `msn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    pub reference: String,
    pub psp_reference: String,
    /// CREATED | AUTHORIZED | ABORTED | EXPIRED | CANCELLED | CAPTURED | REFUNDED | TERMINATED
    pub name: String,
    pub amount: Amount,
    /// RFC 3339.
    pub timestamp: String,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msn: Option<String>,
}

/// Body of capture and refund: `{modificationAmount}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationRequest {
    pub modification_amount: Amount,
}

/// 200 answer to capture, refund and cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationResponse {
    pub amount: Amount,
    pub state: String,
    pub aggregate: Aggregate,
    pub psp_reference: String,
    pub reference: String,
}

/// Order Management `Receipt` (tag 2.3.24), sent as the ePayment `receipt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub order_lines: Vec<OrderLine>,
    pub bottom_line: BottomLine,
}

/// One receipt line. Amounts are minor units; `tax_percentage` is 0–100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub name: String,
    pub id: String,
    pub total_amount: i64,
    pub total_amount_excluding_tax: i64,
    pub total_tax_amount: i64,
    pub tax_percentage: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_info: Option<UnitInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_return: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_shipping: Option<bool>,
}

/// Unit price and quantity of a receipt line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitInfo {
    pub unit_price: Option<i64>,
    pub quantity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_unit: Option<String>,
}

/// Receipt totals line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BottomLine {
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_number: Option<String>,
}

/// Webhooks API: `POST /webhooks/v1/webhooks` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterWebhookRequest {
    pub url: String,
    pub events: Vec<String>,
}

/// Webhooks API: 201 answer to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterWebhookResponse {
    pub id: String,
    pub secret: String,
}

/// Webhooks API: one registration in the list answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
}

/// Webhooks API: 200 answer to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// Userinfo API: 200 answer to `GET /vipps-userinfo-api/userinfo/{sub}`. Field names are
/// snake_case on the wire (OIDC claims); which ones appear depends on the consented scope.
///
/// `Debug` masks the personal data (phone number shows its last two digits only), so a
/// value can be logged without leaking it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub sub: String,
    /// MSISDN digits with country code, e.g. `"4791234567"`. Not validated: the spec's own
    /// pattern (`^\d{15}$`) contradicts its example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<String>,
    /// National identity number (scope `nin`, needs a special agreement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<UserInfoAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_addresses: Vec<UserInfoAddress>,
}

impl std::fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn hidden<T>(v: &Option<T>) -> Option<&'static str> {
            v.as_ref().map(|_| "***")
        }
        let phone = self.phone_number.as_deref().map(|p| {
            let shown = p.chars().count().saturating_sub(2);
            format!("***{}", p.chars().skip(shown).collect::<String>())
        });
        f.debug_struct("UserInfo")
            .field("sub", &self.sub)
            .field("phone_number", &phone)
            .field("name", &hidden(&self.name))
            .field("given_name", &hidden(&self.given_name))
            .field("family_name", &hidden(&self.family_name))
            .field("email", &hidden(&self.email))
            .field("email_verified", &self.email_verified)
            .field("birthdate", &hidden(&self.birthdate))
            .field("nin", &hidden(&self.nin))
            .field("address", &hidden(&self.address))
            .field("other_addresses", &self.other_addresses.len())
            .finish()
    }
}

/// Userinfo `address` / `other_addresses[]` item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfoAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    /// `home` | `work` | `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
}

/// QR API: `POST /qr/v1/merchant-redirect` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerchantRedirectQrRequest {
    /// Chosen by the merchant: 1–128 characters of `[-_+%æøåÆØÅ\w\s]`.
    pub id: String,
    /// `https://…` target of the printed code.
    pub redirect_url: String,
    /// Seconds, 300–2147483647; without it the code never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// QR API: `PUT /qr/v1/merchant-redirect/{id}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerchantRedirectQrUpdateRequest {
    pub redirect_url: String,
}

/// QR API: a merchant-redirect QR as returned by create, get, list and update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerchantRedirectQr {
    pub id: String,
    /// Link to the image (its token expires; GET again for a fresh one), or the raw QR
    /// content with [`QrFormat::TargetUrl`].
    pub url: String,
    pub redirect_url: String,
    /// Seconds until the code expires; `-1` = never. The spec does not require the field,
    /// so a missing one reads as `-1`.
    #[serde(default = "never_expires")]
    pub expires_in: i64,
}

fn never_expires() -> i64 {
    -1
}

/// The form of a QR answer's `url`, chosen with the `Accept` header (and `Size` for PNG).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QrFormat {
    #[default]
    Svg,
    /// `size`: 100–2000 px square (the `Size` header); Vipps' default when absent.
    Png { size: Option<u32> },
    /// The text a scanner reads, instead of an image link.
    TargetUrl,
}

impl QrFormat {
    /// The `Accept` header value.
    pub fn accept(&self) -> &'static str {
        match self {
            QrFormat::Svg => "image/svg+xml",
            QrFormat::Png { .. } => "image/png",
            QrFormat::TargetUrl => "text/targetUrl",
        }
    }

    /// The `Size` header value (PNG only).
    pub fn size(&self) -> Option<u32> {
        match self {
            QrFormat::Png { size } => *size,
            _ => None,
        }
    }
}
