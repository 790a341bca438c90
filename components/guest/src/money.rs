//! Exact money: integer cents in the domain, a JSON number with two decimals on the wire.

use crate::errors::FieldError;
use serde_json::{json, Value};

/// The largest accepted amount, 99 999 999.99, in cents.
pub const MAX_CENTS: i64 = 9_999_999_999;

/// Parses a price from a JSON number or a numeric string: > 0, <= 99999999.99, at most
/// two decimals. `field` names the body field in the 422 error.
pub fn parse_price(value: &Value, field: &str) -> Result<i64, FieldError> {
    let loc = ["body", field];
    let text = match value {
        // A JSON number arrives as an f64; its shortest round-trip form is the decimal the
        // client wrote (for the at most 17 significant digits that can matter here).
        Value::Number(number) => match number.as_i64() {
            Some(whole) => whole.to_string(),
            None => format!("{}", number.as_f64().unwrap_or(f64::NAN)),
        },
        // ASCII blanks only, as the documented pattern says.
        Value::String(text) => text
            .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
            .to_string(),
        _ => {
            return Err(FieldError::new(
                "decimal_type",
                &loc,
                "Decimal input should be an integer, float, string or Decimal object",
                value.clone(),
            ))
        }
    };
    let cents = decimal_to_cents(&text).map_err(|kind| match kind {
        DecimalError::Invalid => FieldError::new(
            "decimal_parsing",
            &loc,
            "Input should be a valid decimal",
            value.clone(),
        ),
        DecimalError::TooManyDecimals => FieldError::new(
            "decimal_max_places",
            &loc,
            "Decimal input should have no more than 2 decimal places",
            value.clone(),
        )
        .with_ctx(json!({ "decimal_places": 2 })),
    })?;
    if cents <= 0 {
        return Err(FieldError::new(
            "greater_than",
            &loc,
            "Input should be greater than 0",
            value.clone(),
        )
        .with_ctx(json!({ "gt": 0 })));
    }
    if cents > MAX_CENTS {
        return Err(FieldError::new(
            "less_than_equal",
            &loc,
            "Input should be less than or equal to 99999999.99",
            value.clone(),
        )
        .with_ctx(json!({ "le": 99999999.99 })));
    }
    Ok(cents)
}

#[derive(Debug, PartialEq)]
enum DecimalError {
    Invalid,
    TooManyDecimals,
}

/// `"19.9"` -> 1990; rejects exponents, signs other than a leading `-`, and > 2 decimals
/// (trailing zeros beyond two are fine: `"1.500"` is 150).
fn decimal_to_cents(text: &str) -> Result<i64, DecimalError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(DecimalError::Invalid);
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 2 {
        return Err(DecimalError::TooManyDecimals);
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 12 {
        // Far beyond the maximum; report it as out of range rather than overflowing.
        return Ok(if negative {
            -MAX_CENTS - 1
        } else {
            MAX_CENTS + 1
        });
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| DecimalError::Invalid)?
    };
    let cents_part: i64 = format!("{fraction:0<2}")
        .parse()
        .map_err(|_| DecimalError::Invalid)?;
    let cents = whole * 100 + cents_part;
    Ok(if negative { -cents } else { cents })
}

/// Cents as the JSON number clients read: 1999 -> `19.99`, 2000 -> `20.0`.
pub fn to_json(cents: i64) -> Value {
    // n / 100.0 is the double nearest to the decimal, and serde_json prints the shortest
    // form that reads back as that double: exactly the two-decimal amount.
    json!(cents as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_numbers_and_numeric_strings() {
        assert_eq!(parse_price(&json!(19.99), "price"), Ok(1999));
        assert_eq!(parse_price(&json!("19.99"), "price"), Ok(1999));
        assert_eq!(parse_price(&json!(20), "price"), Ok(2000));
        assert_eq!(parse_price(&json!("0.1"), "price"), Ok(10));
        assert_eq!(parse_price(&json!(1.5), "price"), Ok(150));
        assert_eq!(parse_price(&json!(99999999.99), "price"), Ok(MAX_CENTS));
        assert_eq!(parse_price(&json!("1.500"), "price"), Ok(150));
    }

    #[test]
    fn rejects_what_the_contract_forbids() {
        let kind = |v: Value| parse_price(&v, "price").unwrap_err().kind;
        assert_eq!(kind(json!(19.999)), "decimal_max_places");
        assert_eq!(kind(json!("0.001")), "decimal_max_places");
        assert_eq!(kind(json!(0)), "greater_than");
        assert_eq!(kind(json!(-5)), "greater_than");
        assert_eq!(kind(json!(100000000)), "less_than_equal");
        assert_eq!(kind(json!("abc")), "decimal_parsing");
        assert_eq!(kind(json!("1e5")), "decimal_parsing");
        assert_eq!(kind(json!(true)), "decimal_type");
        assert_eq!(kind(json!(null)), "decimal_type");
    }

    #[test]
    fn serialises_as_exact_two_decimal_numbers() {
        assert_eq!(to_json(1999).to_string(), "19.99");
        assert_eq!(to_json(30).to_string(), "0.3");
        assert_eq!(to_json(2000).to_string(), "20.0");
        assert_eq!(to_json(MAX_CENTS).to_string(), "99999999.99");
        // 3 x 0.10 in cents is exact, unlike binary floating point.
        assert_eq!(to_json(3 * 10).to_string(), "0.3");
    }
}
