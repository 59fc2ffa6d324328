//! Receipts (the Order Management schema) and the rules paygate checks before sending one.

use serde::{Deserialize, Serialize};

use super::{FieldViolation, Money};

/// A receipt shown in the customer's app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub order_lines: Vec<OrderLine>,
    pub bottom_line: BottomLine,
}

/// One receipt line, amounts in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub name: String,
    pub id: String,
    pub total_amount: i64,
    pub total_amount_excluding_tax: i64,
    pub total_tax_amount: i64,
    pub tax_percentage: i32,
    pub unit_info: Option<UnitInfo>,
    pub discount: i64,
    pub is_return: bool,
    pub is_shipping: bool,
}

/// Unit price and quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitInfo {
    pub unit_price: i64,
    pub quantity: String,
    pub quantity_unit: String,
}

/// The totals line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BottomLine {
    pub currency: String,
    pub tip_amount: i64,
    pub pos_id: String,
    pub receipt_number: String,
}

const QUANTITY_UNITS: &[&str] = &["PCS", "KG", "KM", "MINUTE", "LITRE", "KWH"];

impl Receipt {
    /// Every rule a receipt must meet for a payment of `amount`. Each violation names the line
    /// index and field, e.g. `receipt.order_lines[1].total_amount`.
    pub fn violations(&self, amount: &Money) -> Vec<FieldViolation> {
        let mut out = Vec::new();
        if self.order_lines.is_empty() {
            out.push(FieldViolation::new(
                "receipt.order_lines",
                "must have at least one line",
            ));
        }
        let mut sum: i128 = 0;
        for (i, line) in self.order_lines.iter().enumerate() {
            line.check(i, &mut out);
            let total = i128::from(line.total_amount);
            sum += if line.is_return { -total } else { total };
        }
        let bottom = &self.bottom_line;
        if bottom.currency != amount.currency.code() {
            out.push(FieldViolation::new(
                "receipt.bottom_line.currency",
                format!(
                    "must equal the payment's currency {}, got {:?}",
                    amount.currency, bottom.currency
                ),
            ));
        }
        if bottom.tip_amount < 0 {
            out.push(FieldViolation::new(
                "receipt.bottom_line.tip_amount",
                "must not be negative",
            ));
        }
        sum += i128::from(bottom.tip_amount);
        if out.is_empty() && sum != i128::from(amount.value) {
            out.push(FieldViolation::new(
                "receipt.order_lines",
                format!(
                    "lines (returns negative) plus tip add up to {sum}, but the payment amount is {}",
                    amount.value
                ),
            ));
        }
        out
    }
}

impl OrderLine {
    fn check(&self, i: usize, out: &mut Vec<FieldViolation>) {
        let field = |name: &str| format!("receipt.order_lines[{i}].{name}");
        if self.name.trim().is_empty() {
            out.push(FieldViolation::new(field("name"), "is required"));
        }
        if self.id.trim().is_empty() {
            out.push(FieldViolation::new(field("id"), "is required"));
        }
        for (name, value) in [
            ("total_amount", self.total_amount),
            (
                "total_amount_excluding_tax",
                self.total_amount_excluding_tax,
            ),
            ("total_tax_amount", self.total_tax_amount),
            ("discount", self.discount),
        ] {
            if value < 0 {
                out.push(FieldViolation::new(field(name), "must not be negative"));
            }
        }
        let parts = i128::from(self.total_amount_excluding_tax) + i128::from(self.total_tax_amount);
        if parts != i128::from(self.total_amount) {
            out.push(FieldViolation::new(
                field("total_amount"),
                format!(
                    "must equal total_amount_excluding_tax + total_tax_amount ({parts}), got {}",
                    self.total_amount
                ),
            ));
        }
        if !(0..=100).contains(&self.tax_percentage) {
            out.push(FieldViolation::new(
                field("tax_percentage"),
                "must be between 0 and 100",
            ));
        }
        if let Some(unit) = &self.unit_info {
            if unit.unit_price < 0 {
                out.push(FieldViolation::new(
                    field("unit_info.unit_price"),
                    "must not be negative",
                ));
            }
            if !valid_quantity(&unit.quantity) {
                out.push(FieldViolation::new(
                    field("unit_info.quantity"),
                    "must be a decimal like \"3\" or \"12.5\" (at most 8 decimals, 10 characters)",
                ));
            }
            if !unit.quantity_unit.is_empty()
                && !QUANTITY_UNITS.contains(&unit.quantity_unit.as_str())
            {
                out.push(FieldViolation::new(
                    field("unit_info.quantity_unit"),
                    format!("must be one of {}", QUANTITY_UNITS.join(", ")),
                ));
            }
        }
    }
}

/// `^\d+([\.]\d{1,8})?$`, at most 10 characters (Order Management spec).
fn valid_quantity(q: &str) -> bool {
    if q.is_empty() || q.len() > 10 {
        return false;
    }
    let (int, frac) = match q.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (q, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(|f| digits(f) && f.len() <= 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn line(total: i64, excl: i64, tax: i64) -> OrderLine {
        OrderLine {
            name: "Taxi fare".into(),
            id: "fare".into(),
            total_amount: total,
            total_amount_excluding_tax: excl,
            total_tax_amount: tax,
            tax_percentage: 12,
            unit_info: None,
            discount: 0,
            is_return: false,
            is_shipping: false,
        }
    }

    fn receipt(lines: Vec<OrderLine>, tip: i64) -> Receipt {
        Receipt {
            order_lines: lines,
            bottom_line: BottomLine {
                currency: "NOK".into(),
                tip_amount: tip,
                pos_id: "taxi-34".into(),
                receipt_number: "1".into(),
            },
        }
    }

    fn fields(r: &Receipt, amount: i64) -> Vec<String> {
        r.violations(&Money::new(Currency::Nok, amount))
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn valid_receipt_with_tip_and_return() {
        let mut ret = line(1120, 1000, 120);
        ret.is_return = true;
        let r = receipt(vec![line(33600, 30000, 3600), ret], 2000);
        assert!(fields(&r, 33600 - 1120 + 2000).is_empty());
    }

    #[test]
    fn each_rule_names_the_field() {
        assert_eq!(fields(&receipt(vec![], 0), 100), ["receipt.order_lines"]);
        assert_eq!(
            fields(&receipt(vec![line(1000, 900, 99)], 0), 1000),
            ["receipt.order_lines[0].total_amount"]
        );
        let mut bad_tax = line(1000, 900, 100);
        bad_tax.tax_percentage = 101;
        assert_eq!(
            fields(&receipt(vec![line(1000, 900, 100), bad_tax], 0), 2000),
            ["receipt.order_lines[1].tax_percentage"]
        );
        assert_eq!(
            fields(&receipt(vec![line(-100, -100, 0)], 0), -100),
            [
                "receipt.order_lines[0].total_amount",
                "receipt.order_lines[0].total_amount_excluding_tax"
            ]
        );
        let mut eur = receipt(vec![line(1000, 900, 100)], 0);
        eur.bottom_line.currency = "EUR".into();
        assert_eq!(fields(&eur, 1000), ["receipt.bottom_line.currency"]);
        assert_eq!(
            fields(&receipt(vec![line(1000, 900, 100)], 0), 1500),
            ["receipt.order_lines"]
        );
    }

    #[test]
    fn quantities() {
        assert!(valid_quantity("3"));
        assert!(valid_quantity("12.5"));
        assert!(!valid_quantity("12."));
        assert!(!valid_quantity("1.123456789"));
        assert!(!valid_quantity("-1"));
    }
}
