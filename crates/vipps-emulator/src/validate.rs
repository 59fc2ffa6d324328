//! Request-body validation with the titles the real API uses.
//!
//! Bodies are checked field by field on a `serde_json::Value` rather than through
//! derived structs, so each mistake gets the specific title a Vipps client would
//! see ("Amount too small", "Invalid phone number", ...) instead of a generic
//! deserialisation error.

use serde_json::{Map, Value};

use super::model::{Amount, Currency, PaymentMethodType, UserFlow};
use super::problem::{ExtraDetail, Problem};

/// Largest amount the spec allows (minor units).
const MAX_AMOUNT: i64 = 65_000_000;
const SCOPE_WORDS: [&str; 6] = [
    "name",
    "address",
    "email",
    "phoneNumber",
    "birthDate",
    "nin",
];

/// A create request that passed validation; only what the emulator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub reference: String,
    pub amount: Amount,
    pub payment_method: PaymentMethodType,
    pub user_flow: UserFlow,
    pub customer_phone: Option<String>,
    pub scope: Option<String>,
    /// QR flow with `qrFormat.format = TEXT/TARGETURL`: answer the landing URL itself.
    pub qr_target_url: bool,
    pub metadata: Option<Map<String, Value>>,
    /// The validated Order Management receipt, kept as sent.
    pub receipt: Option<Value>,
}

/// Approve body: `{customer?, token?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approval {
    pub phone_number: Option<String>,
    pub token: Option<String>,
}

/// Parses a JSON body; the empty body is "missing", anything unparsable is a 400.
pub fn json_body(body: &[u8]) -> Result<Value, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::missing("A JSON request body"));
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request("Invalid request body", format!("Malformed JSON: {e}")))
}

/// Reference rule `^[a-zA-Z0-9-]{8,50}$`, for bodies and path parameters alike.
pub fn reference(value: &str) -> Result<(), Problem> {
    let valid = (8..=50).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "Invalid reference",
            "reference must match ^[a-zA-Z0-9-]{8,50}$",
        ))
    }
}

/// MSISDN digits with country code, `^\d{10,15}$`, as a JSON string.
pub fn phone_number(value: &Value) -> Result<String, Problem> {
    match value.as_str() {
        Some(s) if (10..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(s.to_string()),
        _ => Err(Problem::bad_request(
            "Invalid phone number",
            "customer.phoneNumber must be a string of 10-15 digits with country code, e.g. \"4791234567\"",
        )),
    }
}

/// `{currency, value}`: an integer in minor units within the spec's range.
pub fn amount(value: &Value, field: &str) -> Result<Amount, Problem> {
    let invalid = |why: &str| Problem::bad_request("Amount invalid", format!("{field}: {why}"));
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("must be an object {currency, value}"))?;
    let currency =
        present(obj, "currency").ok_or_else(|| Problem::missing(&format!("{field}.currency")))?;
    let currency = currency
        .as_str()
        .and_then(Currency::parse)
        .ok_or_else(|| invalid("currency must be one of NOK, DKK, EUR"))?;
    let minor = present(obj, "value").ok_or_else(|| Problem::missing(&format!("{field}.value")))?;
    // A float such as 100.5 (or even 100.0) is not an integer in minor units.
    let minor = minor
        .as_i64()
        .ok_or_else(|| invalid("value must be an integer in minor units"))?;
    if !(0..=MAX_AMOUNT).contains(&minor) {
        return Err(invalid("value must be between 0 and 65000000"));
    }
    Ok(Amount {
        currency,
        value: minor,
    })
}

/// Body of capture and refund: `{modificationAmount}` with a positive value.
pub fn modification_amount(body: &Value) -> Result<Amount, Problem> {
    let obj = object(body, "request body")?;
    let value =
        present(obj, "modificationAmount").ok_or_else(|| Problem::missing("modificationAmount"))?;
    let parsed = amount(value, "modificationAmount")?;
    if parsed.value == 0 {
        return Err(Problem::bad_request(
            "Amount invalid",
            "modificationAmount.value must be greater than zero",
        ));
    }
    Ok(parsed)
}

/// A body that may be absent: blank means `null`, anything else must be JSON.
pub fn optional_json_body(body: &[u8]) -> Result<Value, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        json_body(body)
    }
}

/// Optional cancel body `{cancelTransactionOnly?}` (later spec versions); `null` when absent.
pub fn cancel_transaction_only(body: &Value) -> Result<bool, Problem> {
    if body.is_null() {
        return Ok(false);
    }
    let obj = object(body, "request body")?;
    match present(obj, "cancelTransactionOnly") {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Problem::bad_request(
            "Invalid request body",
            "cancelTransactionOnly must be a boolean",
        )),
    }
}

/// Optional force-approve body `{customer?, token?}`; `null` when absent.
pub fn approval(body: &Value) -> Result<Approval, Problem> {
    if body.is_null() {
        return Ok(Approval::default());
    }
    let obj = object(body, "request body")?;
    let phone_number = match present(obj, "customer") {
        Some(customer) => customer_phone(customer)?,
        None => None,
    };
    let token = match present(obj, "token") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => {
            return Err(Problem::bad_request(
                "Invalid request body",
                "token must be a string",
            ))
        }
        None => None,
    };
    Ok(Approval {
        phone_number,
        token,
    })
}

/// Validates a CreatePaymentRequest.
pub fn create_payment(body: &Value) -> Result<NewPayment, Problem> {
    let obj = object(body, "request body")?;

    // Policy: strict per spec. A JSON number is rejected even though the vendor's
    // own Postman collection sends one, because a client that does this against
    // the emulator would be relying on undocumented coercion.
    let reference_value = present(obj, "reference").ok_or_else(|| Problem::missing("reference"))?;
    let reference_text = reference_value.as_str().ok_or_else(|| {
        Problem::bad_request(
            "Invalid reference",
            "reference must be a JSON string, not a number or other type",
        )
    })?;
    reference(reference_text)?;

    let amount_value = present(obj, "amount").ok_or_else(|| Problem::missing("amount"))?;
    let amount = amount(amount_value, "amount")?;
    if amount.value < amount.currency.minimum_payment() {
        return Err(Problem::bad_request(
            "Amount too small",
            format!(
                "The minimum amount is {} minor units of {}",
                amount.currency.minimum_payment(),
                amount.currency.code()
            ),
        ));
    }

    let payment_method = payment_method(obj)?;
    let user_flow = user_flow(obj)?;
    if payment_method == PaymentMethodType::Card && user_flow != UserFlow::WebRedirect {
        return Err(Problem::bad_request(
            "Invalid payment method",
            "paymentMethod CARD requires userFlow WEB_REDIRECT",
        ));
    }

    let customer_phone = match present(obj, "customer") {
        Some(customer) => customer_phone(customer)?,
        None if user_flow == UserFlow::PushMessage => {
            return Err(Problem::bad_request(
                "Missing required parameter",
                "customer is required for userFlow PUSH_MESSAGE",
            ))
        }
        None => None,
    };

    match present(obj, "returnUrl") {
        Some(url) => url_field(url, "returnUrl")?,
        None if matches!(user_flow, UserFlow::WebRedirect | UserFlow::NativeRedirect) => {
            return Err(Problem::missing(
                "returnUrl (for WEB_REDIRECT and NATIVE_REDIRECT)",
            ))
        }
        None => {}
    }
    if let Some(url) = present(obj, "receiptUrl") {
        url_field(url, "receiptUrl")?;
    }

    let scope = match present(obj, "profile") {
        Some(profile) => scope(profile)?,
        None => None,
    };
    if let Some(description) = present(obj, "paymentDescription") {
        string_length(
            description,
            "paymentDescription",
            3,
            100,
            "Invalid payment description",
        )?;
    }
    if let Some(interaction) = present(obj, "customerInteraction") {
        one_of(
            interaction,
            "customerInteraction",
            &["CUSTOMER_PRESENT", "CUSTOMER_NOT_PRESENT"],
        )?;
    }
    let metadata = match present(obj, "metadata") {
        Some(m) => Some(metadata(m)?),
        None => None,
    };
    let receipt = match present(obj, "receipt") {
        Some(r) => Some(receipt(r, amount.currency)?),
        None => None,
    };
    if let Some(expires_at) = present(obj, "expiresAt") {
        expires_at_field(expires_at, user_flow, receipt.is_some())?;
    }
    let qr_target_url = match present(obj, "qrFormat") {
        Some(format) => qr_format(format)?,
        None => false,
    };
    if let Some(industry) = present(obj, "industryData") {
        industry_data(industry)?;
    }

    Ok(NewPayment {
        reference: reference_text.to_string(),
        amount,
        payment_method,
        user_flow,
        customer_phone,
        scope,
        qr_target_url: qr_target_url && user_flow == UserFlow::Qr,
        metadata,
        receipt,
    })
}

/// A field that is present and not `null` (the spec marks many fields nullable).
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, Problem> {
    value.as_object().ok_or_else(|| {
        Problem::bad_request(
            "Invalid request body",
            format!("{what} must be a JSON object"),
        )
    })
}

fn char_len_between(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.chars().count())
}

fn string_length(
    value: &Value,
    field: &str,
    min: usize,
    max: usize,
    title: &str,
) -> Result<(), Problem> {
    match value.as_str() {
        Some(s) if char_len_between(s, min, max) => Ok(()),
        _ => Err(Problem::bad_request(
            title,
            format!("{field} must be a string of {min}-{max} characters"),
        )),
    }
}

fn one_of<'a>(value: &'a Value, field: &str, allowed: &[&str]) -> Result<&'a str, Problem> {
    value
        .as_str()
        .filter(|s| allowed.contains(s))
        .ok_or_else(|| {
            Problem::bad_request(
                "Invalid parameter",
                format!("{field} must be one of {}", allowed.join(", ")),
            )
        })
}

fn payment_method(obj: &Map<String, Value>) -> Result<PaymentMethodType, Problem> {
    let method = present(obj, "paymentMethod").ok_or_else(|| Problem::missing("paymentMethod"))?;
    let kind = method
        .as_object()
        .and_then(|m| present(m, "type"))
        .ok_or_else(|| Problem::missing("paymentMethod.type"))?;
    match kind.as_str() {
        Some("WALLET") => Ok(PaymentMethodType::Wallet),
        Some("CARD") => Ok(PaymentMethodType::Card),
        _ => Err(Problem::bad_request(
            "Invalid payment method",
            "paymentMethod.type must be WALLET or CARD",
        )),
    }
}

fn user_flow(obj: &Map<String, Value>) -> Result<UserFlow, Problem> {
    let flow = present(obj, "userFlow").ok_or_else(|| Problem::missing("userFlow"))?;
    match flow.as_str() {
        Some("PUSH_MESSAGE") => Ok(UserFlow::PushMessage),
        Some("NATIVE_REDIRECT") => Ok(UserFlow::NativeRedirect),
        Some("WEB_REDIRECT") => Ok(UserFlow::WebRedirect),
        Some("QR") => Ok(UserFlow::Qr),
        _ => Err(Problem::bad_request(
            "Invalid user flow",
            "userFlow must be one of PUSH_MESSAGE, NATIVE_REDIRECT, WEB_REDIRECT, QR",
        )),
    }
}

/// `customer`: exactly one of phoneNumber / personalQr / customerToken. Returns the phone if given.
fn customer_phone(customer: &Value) -> Result<Option<String>, Problem> {
    let invalid = |why: &str| Problem::bad_request("Invalid customer", why.to_string());
    let obj = customer
        .as_object()
        .ok_or_else(|| invalid("customer must be an object"))?;
    let given: Vec<&str> = ["phoneNumber", "personalQr", "customerToken"]
        .into_iter()
        .filter(|k| present(obj, k).is_some())
        .collect();
    match given.as_slice() {
        ["phoneNumber"] => present(obj, "phoneNumber").map(phone_number).transpose(),
        [key @ ("personalQr" | "customerToken")] => {
            let (min, max) = if *key == "personalQr" {
                (5, 255)
            } else {
                (1, 1000)
            };
            let field = present(obj, key).unwrap_or(&Value::Null);
            string_length(
                field,
                &format!("customer.{key}"),
                min,
                max,
                "Invalid customer",
            )?;
            Ok(None)
        }
        [] => Err(invalid(
            "customer needs one of phoneNumber, personalQr, customerToken",
        )),
        _ => Err(invalid(
            "customer must have exactly one of phoneNumber, personalQr, customerToken",
        )),
    }
}

/// `returnUrl` / `receiptUrl`: https:// or a custom app scheme; plain http is refused.
fn url_field(value: &Value, field: &str) -> Result<(), Problem> {
    let invalid = || {
        Problem::bad_request(
            "Invalid URL",
            format!("{field} must use https:// or a custom URL scheme"),
        )
    };
    let text = value.as_str().ok_or_else(invalid)?;
    let parsed = url::Url::parse(text).map_err(|_| invalid())?;
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "https" | "http" | "javascript" | "data" | "file" | "ftp" => Err(invalid()),
        _ => Ok(()),
    }
}

fn scope(profile: &Value) -> Result<Option<String>, Problem> {
    let invalid = |why: String| Problem::bad_request("Invalid scope", why);
    let obj = profile
        .as_object()
        .ok_or_else(|| invalid("profile must be an object".into()))?;
    let Some(scope) = present(obj, "scope") else {
        return Ok(None);
    };
    let text = scope
        .as_str()
        .ok_or_else(|| invalid("profile.scope must be a space-separated string".into()))?;
    let mut words = text.split_whitespace().peekable();
    if words.peek().is_none() {
        return Err(invalid("profile.scope is empty".into()));
    }
    if let Some(bad) = words.find(|w| !SCOPE_WORDS.contains(w)) {
        return Err(invalid(format!(
            "'{bad}' is not one of {}",
            SCOPE_WORDS.join(" ")
        )));
    }
    Ok(Some(text.to_string()))
}

fn metadata(value: &Value) -> Result<Map<String, Value>, Problem> {
    let invalid = |why: &str| Problem::bad_request("Invalid metadata", why.to_string());
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("metadata must be an object of strings"))?;
    if obj.len() > 5 {
        return Err(invalid("metadata holds at most 5 key-value pairs"));
    }
    for (key, val) in obj {
        if key.chars().count() > 100 {
            return Err(invalid("metadata keys are at most 100 characters"));
        }
        match val.as_str() {
            Some(s) if s.chars().count() <= 500 => {}
            Some(_) => return Err(invalid("metadata values are at most 500 characters")),
            None => return Err(invalid("metadata values must be strings")),
        }
    }
    Ok(obj.clone())
}

/// Units an order line's `unitInfo.quantityUnit` may name.
const QUANTITY_UNITS: [&str; 6] = ["PCS", "KG", "KM", "MINUTE", "LITRE", "KWH"];
const BARCODE_FORMATS: [&str; 3] = ["EAN-13", "CODE 39", "CODE 128"];

/// Order Management `Receipt` (tag 2.3.24, which ePayment's `receipt` refers to).
/// Every violation is reported in `extraDetails`, named by its JSON path, the way
/// the real API lists validation errors; the server computes totals itself, so
/// sums are not cross-checked. Returns the receipt as sent, for storage.
fn receipt(value: &Value, currency: Currency) -> Result<Value, Problem> {
    let mut check = ReceiptCheck::default();
    check.receipt(value, currency);
    let Some(first) = check.violations.first() else {
        return Ok(value.clone());
    };
    let mut detail = format!("{}: {}", first.name, first.reason);
    if check.violations.len() > 1 {
        detail.push_str(&format!(
            " (and {} more; see extraDetails)",
            check.violations.len() - 1
        ));
    }
    Err(Problem::bad_request("Invalid receipt", detail).with_extra_details(check.violations))
}

/// Collects receipt violations instead of stopping at the first.
#[derive(Debug, Default)]
struct ReceiptCheck {
    violations: Vec<ExtraDetail>,
}

impl ReceiptCheck {
    fn add(&mut self, name: &str, reason: &str) {
        self.violations.push(ExtraDetail {
            name: name.to_string(),
            reason: reason.to_string(),
        });
    }

    fn receipt(&mut self, value: &Value, currency: Currency) {
        let Some(obj) = value.as_object() else {
            self.add("receipt", "must be an object {orderLines, bottomLine}");
            return;
        };
        match present(obj, "orderLines") {
            None => self.add("receipt.orderLines", "is required"),
            Some(Value::Array(lines)) if lines.is_empty() => {
                self.add("receipt.orderLines", "needs at least one order line")
            }
            Some(Value::Array(lines)) => {
                for (i, line) in lines.iter().enumerate() {
                    self.order_line(line, &format!("receipt.orderLines[{i}]"));
                }
            }
            Some(_) => self.add("receipt.orderLines", "must be an array of order lines"),
        }
        match present(obj, "bottomLine") {
            None => self.add("receipt.bottomLine", "is required"),
            Some(Value::Object(bottom)) => self.bottom_line(bottom, currency),
            Some(_) => self.add("receipt.bottomLine", "must be an object"),
        }
    }

    fn order_line(&mut self, line: &Value, path: &str) {
        let Some(line) = line.as_object() else {
            self.add(path, "must be an object");
            return;
        };
        for key in ["name", "id"] {
            if !present(line, key).is_some_and(Value::is_string) {
                self.add(&format!("{path}.{key}"), "is required and must be a string");
            }
        }
        for key in ["totalAmount", "totalAmountExcludingTax", "totalTaxAmount"] {
            self.non_negative(line, key, path, true);
        }
        match present(line, "taxPercentage") {
            None => self.add(&format!("{path}.taxPercentage"), "is required"),
            Some(v) if v.as_i64().is_some_and(|p| (0..=100).contains(&p)) => {}
            Some(_) => self.add(
                &format!("{path}.taxPercentage"),
                "must be an integer between 0 and 100",
            ),
        }
        match present(line, "unitInfo") {
            None => {}
            Some(Value::Object(unit)) => self.unit_info(unit, &format!("{path}.unitInfo")),
            Some(_) => self.add(&format!("{path}.unitInfo"), "must be an object"),
        }
        self.non_negative(line, "discount", path, false);
        self.optional_string(line, "productUrl", path);
        for key in ["isReturn", "isShipping"] {
            if present(line, key).is_some_and(|v| !v.is_boolean()) {
                self.add(&format!("{path}.{key}"), "must be a boolean");
            }
        }
    }

    fn unit_info(&mut self, unit: &Map<String, Value>, path: &str) {
        // `unitPrice` is required but nullable: the key must be there.
        match unit.get("unitPrice") {
            None => self.add(&format!("{path}.unitPrice"), "is required (it may be null)"),
            Some(Value::Null) => {}
            Some(_) => self.non_negative(unit, "unitPrice", path, true),
        }
        match present(unit, "quantity").map(Value::as_str) {
            None => self.add(&format!("{path}.quantity"), "is required"),
            Some(Some(q)) if is_quantity(q) => {}
            Some(_) => self.add(
                &format!("{path}.quantity"),
                "must be a string of at most 10 characters matching ^\\d+([\\.]\\d{1,8})?$, e.g. \"2.5\"",
            ),
        }
        if let Some(quantity_unit) = present(unit, "quantityUnit") {
            if !quantity_unit
                .as_str()
                .is_some_and(|u| QUANTITY_UNITS.contains(&u))
            {
                self.add(
                    &format!("{path}.quantityUnit"),
                    &format!("must be one of {}", QUANTITY_UNITS.join(", ")),
                );
            }
        }
    }

    fn bottom_line(&mut self, bottom: &Map<String, Value>, currency: Currency) {
        let path = "receipt.bottomLine";
        match present(bottom, "currency").map(|c| c.as_str().and_then(Currency::parse)) {
            None => self.add("receipt.bottomLine.currency", "is required"),
            Some(None) => self.add("receipt.bottomLine.currency", "must be NOK, DKK or EUR"),
            Some(Some(c)) if c != currency => self.add(
                "receipt.bottomLine.currency",
                &format!(
                    "{} does not match the payment currency {}",
                    c.code(),
                    currency.code()
                ),
            ),
            Some(Some(_)) => {}
        }
        for key in [
            "tipAmount",
            "giftCardAmount",
            "totalTax",
            "totalDiscount",
            "shippingAmount",
        ] {
            self.non_negative(bottom, key, path, false);
        }
        if present(bottom, "totalAmount").is_some_and(|v| v.as_i64().is_none()) {
            self.add("receipt.bottomLine.totalAmount", "must be an integer");
        }
        for key in ["posId", "receiptNumber", "terminalId"] {
            self.optional_string(bottom, key, path);
        }
        match present(bottom, "paymentSources") {
            None => {}
            Some(Value::Object(sources)) => {
                for key in ["giftCard", "card", "voucher", "cash"] {
                    self.non_negative(sources, key, "receipt.bottomLine.paymentSources", false);
                }
            }
            Some(_) => self.add("receipt.bottomLine.paymentSources", "must be an object"),
        }
        match present(bottom, "barcode") {
            None => {}
            Some(Value::Object(barcode)) => self.barcode(barcode),
            Some(_) => self.add("receipt.bottomLine.barcode", "must be an object"),
        }
    }

    fn barcode(&mut self, barcode: &Map<String, Value>) {
        let format = present(barcode, "format").and_then(Value::as_str);
        let format = match format {
            Some(f) if BARCODE_FORMATS.contains(&f) => f,
            _ => {
                self.add(
                    "receipt.bottomLine.barcode.format",
                    &format!(
                        "is required and must be one of {}",
                        BARCODE_FORMATS.join(", ")
                    ),
                );
                return;
            }
        };
        let data = present(barcode, "data").and_then(Value::as_str);
        let valid = data.is_some_and(|d| {
            !d.is_empty()
                && match format {
                    "EAN-13" => d.len() <= 13 && d.bytes().all(|b| b.is_ascii_digit()),
                    "CODE 39" => d.bytes().all(|b| {
                        b.is_ascii_uppercase() || b.is_ascii_digit() || b" -.$/+%".contains(&b)
                    }),
                    _ => d.bytes().all(|b| b.is_ascii() && !b.is_ascii_control()),
                }
        });
        if !valid {
            self.add(
                "receipt.bottomLine.barcode.data",
                &format!("is required and must be valid {format} data"),
            );
        }
    }

    /// An int64 amount in minor units that must not be negative.
    fn non_negative(&mut self, obj: &Map<String, Value>, key: &str, path: &str, required: bool) {
        match present(obj, key) {
            None if required => self.add(&format!("{path}.{key}"), "is required"),
            None => {}
            Some(v) if v.as_i64().is_some_and(|n| n >= 0) => {}
            Some(_) => self.add(
                &format!("{path}.{key}"),
                "must be a non-negative integer in minor units",
            ),
        }
    }

    fn optional_string(&mut self, obj: &Map<String, Value>, key: &str, path: &str) {
        if present(obj, key).is_some_and(|v| !v.is_string()) {
            self.add(&format!("{path}.{key}"), "must be a string");
        }
    }
}

/// `^\d+([\.]\d{1,8})?$`, at most 10 characters.
fn is_quantity(q: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    q.len() <= 10
        && match q.split_once('.') {
            None => digits(q),
            Some((whole, fraction)) => digits(whole) && digits(fraction) && fraction.len() <= 8,
        }
}

/// `expiresAt`: RFC 3339, 10 minutes to 28 days ahead, PUSH_MESSAGE or QR only, with a receipt.
fn expires_at_field(value: &Value, flow: UserFlow, has_receipt: bool) -> Result<(), Problem> {
    if !matches!(flow, UserFlow::PushMessage | UserFlow::Qr) {
        return Err(Problem::bad_request(
            "ExpiresAt not allowed",
            "expiresAt only works with PUSH_MESSAGE or QR",
        ));
    }
    let invalid = || {
        Problem::bad_request(
            "Expiration date invalid",
            "expiresAt must be RFC 3339, 10 minutes to 28 days ahead",
        )
    };
    let at = value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(invalid)?;
    let ahead = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    if ahead <= chrono::Duration::minutes(10) || ahead >= chrono::Duration::days(28) {
        return Err(invalid());
    }
    if !has_receipt {
        return Err(Problem::missing("receipt (when expiresAt is set)"));
    }
    Ok(())
}

/// Returns true when the QR should be the target URL rather than an image link.
fn qr_format(value: &Value) -> Result<bool, Problem> {
    let invalid = |why: &str| Problem::bad_request("Invalid QR format", why.to_string());
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("qrFormat must be an object"))?;
    let format = present(obj, "format")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::missing("qrFormat.format"))?;
    if !["TEXT/TARGETURL", "IMAGE/SVG+XML", "IMAGE/PNG"].contains(&format) {
        return Err(invalid(
            "qrFormat.format must be TEXT/TARGETURL, IMAGE/SVG+XML or IMAGE/PNG",
        ));
    }
    if let Some(size) = present(obj, "size") {
        if !size.as_i64().is_some_and(|s| (100..=2000).contains(&s)) {
            return Err(invalid("qrFormat.size must be an integer 100-2000"));
        }
    }
    Ok(format == "TEXT/TARGETURL")
}

fn industry_data(value: &Value) -> Result<(), Problem> {
    let title = "Invalid industry data";
    let obj = value
        .as_object()
        .ok_or_else(|| Problem::bad_request(title, "industryData must be an object"))?;
    let Some(airline) = present(obj, "airlineData") else {
        return Ok(());
    };
    let airline = airline
        .as_object()
        .ok_or_else(|| Problem::bad_request(title, "airlineData must be an object"))?;
    let rules = [
        ("agencyInvoiceNumber", 1, 6),
        ("airlineCode", 3, 3),
        ("airlineDesignatorCode", 2, 2),
        ("passengerName", 1, 49),
    ];
    for (key, min, max) in rules {
        let field = present(airline, key)
            .ok_or_else(|| Problem::missing(&format!("industryData.airlineData.{key}")))?;
        string_length(field, key, min, max, title)?;
    }
    if let Some(ticket) = present(airline, "ticketNumber") {
        string_length(ticket, "ticketNumber", 1, 150, title)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "amount": {"currency": "NOK", "value": 1000},
            "paymentMethod": {"type": "WALLET"},
            "reference": "order-12345",
            "userFlow": "WEB_REDIRECT",
            "returnUrl": "https://example.com/back"
        })
    }

    fn title_of(body: Value) -> String {
        create_payment(&body)
            .err()
            .map(|p| p.title)
            .unwrap_or_default()
    }

    fn with(pointer_key: &str, value: Value) -> Value {
        let mut body = base();
        body[pointer_key] = value;
        body
    }

    #[test]
    fn valid_request_passes() {
        let parsed = create_payment(&base()).unwrap();
        assert_eq!(parsed.reference, "order-12345");
        assert_eq!(parsed.amount.value, 1000);
    }

    #[test]
    fn bad_inputs_get_vipps_titles() {
        let cases = [
            (
                with("reference", json!(248679167965815592_u64)),
                "Invalid reference",
            ),
            (with("reference", json!("short")), "Invalid reference"),
            (
                with("reference", json!("has_underscore")),
                "Invalid reference",
            ),
            (
                with("amount", json!({"currency": "NOK", "value": 99})),
                "Amount too small",
            ),
            (
                with("amount", json!({"currency": "NOK", "value": 100.5})),
                "Amount invalid",
            ),
            (
                with("amount", json!({"currency": "SEK", "value": 1000})),
                "Amount invalid",
            ),
            (
                with("amount", json!({"currency": "NOK", "value": 65_000_001})),
                "Amount invalid",
            ),
            (
                with("amount", json!({"currency": "NOK", "value": -1})),
                "Amount invalid",
            ),
            (
                with("paymentMethod", json!({"type": "BITCOIN"})),
                "Invalid payment method",
            ),
            (with("userFlow", json!("FAX")), "Invalid user flow"),
            (
                with("returnUrl", json!("http://example.com")),
                "Invalid URL",
            ),
            (with("returnUrl", json!("not a url")), "Invalid URL"),
            (
                with("profile", json!({"scope": "name shoeSize"})),
                "Invalid scope",
            ),
            (
                with("paymentDescription", json!("ab")),
                "Invalid payment description",
            ),
            (
                with(
                    "metadata",
                    json!({"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6"}),
                ),
                "Invalid metadata",
            ),
            (
                with(
                    "receipt",
                    json!({"orderLines": [], "bottomLine": {"currency": "NOK"}}),
                ),
                "Invalid receipt",
            ),
            (
                with("customer", json!({"phoneNumber": 4791234567_u64})),
                "Invalid phone number",
            ),
            (
                with("customer", json!({"phoneNumber": "91234567"})),
                "Invalid phone number",
            ),
            (
                with(
                    "customer",
                    json!({"phoneNumber": "4791234567", "customerToken": "x"}),
                ),
                "Invalid customer",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(title_of(body.clone()), expected, "{body}");
        }
    }

    #[test]
    fn flow_rules() {
        let mut push = base();
        push["userFlow"] = json!("PUSH_MESSAGE");
        assert_eq!(title_of(push.clone()), "Missing required parameter");
        push["customer"] = json!({"phoneNumber": "4791234567"});
        assert_eq!(
            create_payment(&push).unwrap().customer_phone.as_deref(),
            Some("4791234567")
        );

        let mut card = base();
        card["paymentMethod"] = json!({"type": "CARD"});
        card["userFlow"] = json!("QR");
        assert_eq!(title_of(card), "Invalid payment method");

        let mut no_return = base();
        no_return.as_object_mut().unwrap().remove("returnUrl");
        assert_eq!(title_of(no_return), "Missing required parameter");

        let custom = with("returnUrl", json!("myapp://paid"));
        assert!(create_payment(&custom).is_ok());
    }

    #[test]
    fn modification_and_optional_bodies() {
        assert_eq!(
            modification_amount(&json!({})).unwrap_err().title,
            "Missing required parameter"
        );
        assert_eq!(
            modification_amount(&json!({"modificationAmount": {"currency": "NOK", "value": 0}}))
                .unwrap_err()
                .title,
            "Amount invalid"
        );
        let parse = |raw: &[u8]| optional_json_body(raw).unwrap();
        assert!(!cancel_transaction_only(&parse(b"")).unwrap());
        assert!(cancel_transaction_only(&parse(br#"{"cancelTransactionOnly":true}"#)).unwrap());
        assert_eq!(
            optional_json_body(b"{").unwrap_err().title,
            "Invalid request body"
        );
        assert_eq!(approval(&parse(b"  ")).unwrap(), Approval::default());
        assert_eq!(
            approval(&parse(br#"{"customer":{"phoneNumber":"123"}}"#))
                .unwrap_err()
                .title,
            "Invalid phone number"
        );
        assert_eq!(
            json_body(b"{\"a\":1,}").unwrap_err().title,
            "Invalid request body"
        );
    }
}
