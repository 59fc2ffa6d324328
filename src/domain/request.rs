//! The requests paygate carries out, and every rule they must meet before anything happens.
//! The gRPC edge only converts protobuf into the plain inputs below; the rules live here, each
//! violation naming its field, and all of them reported at once.

use std::collections::{BTreeMap, HashMap};

use super::{
    CustomerKey, FieldViolation, IdempotencyKey, Money, PaygateError, PhoneNumber, Receipt,
    Reference, UserFlow,
};

/// Profile scope words Vipps accepts (REFERENCE.md §1).
pub const PROFILE_SCOPES: &[&str] = &[
    "name",
    "address",
    "email",
    "phoneNumber",
    "birthDate",
    "nin",
];

/// A payment request to create.
#[derive(Debug, Clone)]
pub struct CreatePayment {
    /// None: paygate generates one (then `idempotency_key` is set: a retry must find it).
    pub reference: Option<Reference>,
    pub amount: Money,
    pub user_flow: UserFlow,
    pub phone_number: Option<PhoneNumber>,
    /// Profile scope words, e.g. `phoneNumber`.
    pub profile_scopes: Vec<String>,
    pub receipt: Option<Receipt>,
    pub return_url: Option<String>,
    pub description: Option<String>,
    /// None: defaults to the reference.
    pub idempotency_key: Option<IdempotencyKey>,
    pub customer_key: Option<CustomerKey>,
    pub metadata: BTreeMap<String, String>,
}

/// What a caller sent for a create, before any rule is checked.
#[derive(Debug, Clone, Copy)]
pub struct CreatePaymentInput<'a> {
    pub reference: &'a str,
    /// (currency, minor units); None when absent.
    pub amount: Option<(&'a str, i64)>,
    /// None: an unknown or unspecified flow.
    pub user_flow: Option<UserFlow>,
    pub phone_number: &'a str,
    pub customer_key: &'a str,
    pub profile_scopes: &'a [String],
    pub return_url: &'a str,
    pub description: &'a str,
    pub idempotency_key: &'a str,
    pub metadata: &'a HashMap<String, String>,
    pub receipt: Option<&'a Receipt>,
}

/// A capture or refund: `amount` None means all that remains.
#[derive(Debug, Clone)]
pub struct CaptureOrRefund {
    pub reference: Reference,
    pub amount: Option<Money>,
    pub idempotency_key: IdempotencyKey,
}

/// A cancel; the key defaults to the reference.
#[derive(Debug, Clone)]
pub struct Cancel {
    pub reference: Reference,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// Collects violations so the caller learns about every bad field at once.
#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn check<T>(&mut self, r: Result<T, FieldViolation>) -> Option<T> {
        r.map_err(|v| self.0.push(v)).ok()
    }

    fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, PaygateError> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(PaygateError::InvalidArgument(self.0)),
        }
    }
}

/// A reference the caller must give.
pub fn required_reference(value: &str) -> Result<Reference, PaygateError> {
    required(value).map_err(|v| PaygateError::InvalidArgument(vec![v]))
}

fn required(value: &str) -> Result<Reference, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new("reference", "is required"));
    }
    Reference::parse("reference", value)
}

fn optional_key(value: &str) -> Result<Option<IdempotencyKey>, FieldViolation> {
    match value {
        "" => Ok(None),
        key => IdempotencyKey::parse("idempotency_key", key).map(Some),
    }
}

/// `https://…` or an app's custom scheme (`myapp://…`); plain http is refused by Vipps.
fn return_url(value: &str) -> Result<String, FieldViolation> {
    let bad = |why: &str| FieldViolation::new("return_url", why);
    if value.len() > 2048 {
        return Err(bad("must be at most 2048 characters"));
    }
    let url = url::Url::parse(value).map_err(|_| bad("must be an absolute URL"))?;
    if url.scheme() == "http" {
        return Err(bad(
            "must use https:// (or an app's custom scheme), not http://",
        ));
    }
    Ok(value.to_owned())
}

/// Vipps' metadata limits: at most 5 pairs, keys 1–100 and values up to 500 characters.
fn metadata(v: &mut Violations, map: &HashMap<String, String>) -> BTreeMap<String, String> {
    if map.len() > 5 {
        v.add(
            "metadata",
            format!("may hold at most 5 pairs, got {}", map.len()),
        );
    }
    for (key, value) in map {
        if key.is_empty() || key.chars().count() > 100 {
            v.add(
                format!("metadata[{key}]"),
                "keys must be 1 to 100 characters",
            );
        }
        if value.chars().count() > 500 {
            v.add(
                format!("metadata[{key}]"),
                "values must be at most 500 characters",
            );
        }
    }
    map.iter()
        .map(|(k, val)| (k.clone(), val.clone()))
        .collect()
}

impl CreatePayment {
    pub fn parse(input: CreatePaymentInput<'_>) -> Result<Self, PaygateError> {
        let mut v = Violations::default();
        let reference = match input.reference {
            "" => Some(None),
            r => v.check(Reference::parse("reference", r)).map(Some),
        };
        let key = v.check(optional_key(input.idempotency_key));
        if input.reference.is_empty() && input.idempotency_key.is_empty() {
            // Without either, a retry after UNAVAILABLE would create (and push) a second payment.
            for field in ["reference", "idempotency_key"] {
                v.add(
                    field,
                    "one of reference and idempotency_key is required, so that a retry finds the \
                     first attempt instead of pushing the customer twice",
                );
            }
        }
        let amount = match input.amount {
            None => {
                v.add("amount", "is required");
                None
            }
            Some((currency, value)) => v.check(Money::parse("amount", currency, value)),
        };
        if let Some(a) = amount.filter(|a| a.value < a.currency.minimum_payment()) {
            v.add(
                "amount.value",
                format!(
                    "must be at least {} for {}",
                    a.currency.minimum_payment(),
                    a.currency
                ),
            );
        }
        let flow = input.user_flow;
        if flow.is_none() {
            v.add(
                "user_flow",
                "must be USER_FLOW_PUSH_MESSAGE, USER_FLOW_WEB_REDIRECT, USER_FLOW_NATIVE_REDIRECT or USER_FLOW_QR",
            );
        }
        let phone = match input.phone_number {
            "" => Some(None),
            p => v
                .check(PhoneNumber::parse("customer.phone_number", p))
                .map(Some),
        };
        let customer_key = match input.customer_key {
            "" => Some(None),
            k => v.check(CustomerKey::parse(k)).map(Some),
        };
        if flow == Some(UserFlow::PushMessage)
            && matches!(phone, Some(None))
            && matches!(customer_key, Some(None))
        {
            v.add(
                "customer.phone_number",
                "USER_FLOW_PUSH_MESSAGE needs the customer's phone number: set customer.phone_number, \
                 or customer_key of a customer whose phone number paygate has stored",
            );
        }
        for (i, scope) in input.profile_scopes.iter().enumerate() {
            if !PROFILE_SCOPES.contains(&scope.as_str()) {
                v.add(
                    format!("profile_scopes[{i}]"),
                    format!(
                        "must be one of {}, got {scope:?}",
                        PROFILE_SCOPES.join(", ")
                    ),
                );
            }
        }
        let mut scopes = input.profile_scopes.to_vec();
        scopes.dedup();
        let return_url = match (input.return_url, flow) {
            ("", Some(f)) if f.needs_return_url() => {
                v.add(
                    "return_url",
                    "is required for WEB_REDIRECT and NATIVE_REDIRECT",
                );
                None
            }
            ("", _) => Some(None),
            (url, _) => v.check(return_url(url)).map(Some),
        };
        let description = match input.description.chars().count() {
            0 => Some(None),
            3..=100 => Some(Some(input.description.to_owned())),
            _ => {
                v.add("payment_description", "must be 3 to 100 characters");
                None
            }
        };
        let metadata = metadata(&mut v, input.metadata);
        if let (Some(r), Some(a)) = (input.receipt, &amount) {
            v.0.extend(r.violations(a));
        }
        let command = (|| {
            Some(CreatePayment {
                reference: reference?,
                amount: amount?,
                user_flow: flow?,
                phone_number: phone?,
                profile_scopes: scopes,
                receipt: input.receipt.cloned(),
                return_url: return_url?,
                description: description?,
                idempotency_key: key?,
                customer_key: customer_key?,
                metadata,
            })
        })();
        v.finish(command)
    }
}

impl CaptureOrRefund {
    /// `amount`: (currency, minor units), None for "all that remains".
    pub fn parse(
        reference: &str,
        amount: Option<(&str, i64)>,
        key: &str,
    ) -> Result<Self, PaygateError> {
        let mut v = Violations::default();
        let reference = v.check(required(reference));
        let amount = match amount {
            Some((currency, value)) => v.check(Money::parse("amount", currency, value)).map(Some),
            None => Some(None),
        };
        let key = if key.is_empty() {
            v.add(
                "idempotency_key",
                "is required: partial captures and refunds are legitimate, so paygate cannot tell a retry from a new request without it",
            );
            None
        } else {
            v.check(IdempotencyKey::parse("idempotency_key", key))
        };
        let command = (|| {
            Some(CaptureOrRefund {
                reference: reference?,
                amount: amount?,
                idempotency_key: key?,
            })
        })();
        v.finish(command)
    }
}

impl Cancel {
    pub fn parse(reference: &str, key: &str) -> Result<Self, PaygateError> {
        let mut v = Violations::default();
        let reference = v.check(required(reference));
        let key = v.check(optional_key(key));
        let command = (|| {
            Some(Cancel {
                reference: reference?,
                idempotency_key: key?,
            })
        })();
        v.finish(command)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input<'a>(metadata: &'a HashMap<String, String>) -> CreatePaymentInput<'a> {
        CreatePaymentInput {
            reference: "taxi-34-ride-0001",
            amount: Some(("NOK", 35_000)),
            user_flow: Some(UserFlow::PushMessage),
            phone_number: "4791234567",
            customer_key: "",
            profile_scopes: &[],
            return_url: "",
            description: "",
            idempotency_key: "",
            metadata,
            receipt: None,
        }
    }

    fn fields(e: PaygateError) -> Vec<String> {
        match e {
            PaygateError::InvalidArgument(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_retry_needs_a_reference_or_a_key() {
        let none = HashMap::new();
        let mut no_either = input(&none);
        no_either.reference = "";
        assert_eq!(
            fields(CreatePayment::parse(no_either).unwrap_err()),
            ["reference", "idempotency_key"]
        );
        let mut key_only = no_either;
        key_only.idempotency_key = "ride-0001";
        assert!(CreatePayment::parse(key_only).unwrap().reference.is_none());
        assert!(CreatePayment::parse(input(&none)).is_ok());
    }

    #[test]
    fn every_rule_names_its_field() {
        let none = HashMap::new();
        let mut bad = input(&none);
        bad.amount = Some(("NOK", 50));
        bad.phone_number = "";
        bad.profile_scopes = &[];
        bad.description = "ab";
        bad.customer_key = "";
        let scopes = ["phoneNumber".to_owned(), "shoeSize".to_owned()];
        bad.profile_scopes = &scopes;
        assert_eq!(
            fields(CreatePayment::parse(bad).unwrap_err()),
            [
                "amount.value",
                "customer.phone_number",
                "profile_scopes[1]",
                "payment_description"
            ]
        );
    }
}
