//! Error bodies in the shape FastAPI produces, so existing clients parse them unchanged.

use serde_json::{json, Value};

/// One entry of a 422 `detail` list: `{"type", "loc", "msg", "input"}` (+ `ctx`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: &'static str,
    pub loc: Vec<Value>,
    pub msg: String,
    pub input: Value,
    pub ctx: Option<Value>,
}

impl FieldError {
    /// An error at `loc` (e.g. `["body", "price"]`).
    pub fn new(kind: &'static str, loc: &[&str], msg: impl Into<String>, input: Value) -> Self {
        FieldError {
            kind,
            loc: loc.iter().map(|part| Value::from(*part)).collect(),
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    /// Adds FastAPI's `ctx` object (e.g. `{"ge": 0}`).
    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// A required field that is absent.
    pub fn missing(loc: &[&str], input: Value) -> Self {
        FieldError::new("missing", loc, "Field required", input)
    }

    /// The JSON representation inside `detail`.
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "type": self.kind,
            "loc": self.loc,
            "msg": self.msg,
            "input": self.input,
        });
        if let Some(ctx) = &self.ctx {
            entry["ctx"] = ctx.clone();
        }
        entry
    }
}

/// The body of a 422: `{"detail": [ ...field errors ]}`.
pub fn validation_body(errors: &[FieldError]) -> Value {
    json!({ "detail": errors.iter().map(FieldError::to_json).collect::<Vec<_>>() })
}

/// The body of every other error: `{"detail": "<message>"}`.
pub fn detail_body(message: &str) -> Value {
    json!({ "detail": message })
}

/// Collects field errors while a request body is validated, like pydantic reports all of
/// them at once rather than the first.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Records the error of `result` and returns its value, if any.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when nothing failed, else every error collected.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Field validators shared by the services, producing pydantic's messages.
pub mod fields {
    use super::FieldError;
    use serde_json::{json, Map, Value};

    /// A required string field with a length range in characters.
    pub fn string(
        body: &Map<String, Value>,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<String, FieldError> {
        let Some(value) = body.get(name) else {
            return Err(FieldError::missing(
                &["body", name],
                Value::Object(body.clone()),
            ));
        };
        string_value(value, name, min, max)
    }

    /// Validates an already-present string value.
    pub fn string_value(
        value: &Value,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<String, FieldError> {
        let Some(text) = value.as_str() else {
            return Err(FieldError::new(
                "string_type",
                &["body", name],
                "Input should be a valid string",
                value.clone(),
            ));
        };
        if text.contains('\0') {
            // No database stores it as text.
            return Err(FieldError::new(
                "string_nul",
                &["body", name],
                "String should not contain NUL characters",
                value.clone(),
            ));
        }
        let length = text.chars().count();
        if length < min {
            let unit = if min == 1 { "character" } else { "characters" };
            return Err(FieldError::new(
                "string_too_short",
                &["body", name],
                format!("String should have at least {min} {unit}"),
                value.clone(),
            )
            .with_ctx(json!({ "min_length": min })));
        }
        if length > max {
            let unit = if max == 1 { "character" } else { "characters" };
            return Err(FieldError::new(
                "string_too_long",
                &["body", name],
                format!("String should have at most {max} {unit}"),
                value.clone(),
            )
            .with_ctx(json!({ "max_length": max })));
        }
        Ok(text.to_string())
    }

    /// An integer value (JSON integer, or a float / string holding a whole number, as
    /// pydantic's lax mode accepts) that must be `>= min`.
    pub fn integer_value(value: &Value, name: &str, min: i64) -> Result<i64, FieldError> {
        let loc = ["body", name];
        let parsed = match value {
            Value::Number(number) => number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            }),
            Value::String(text) => text.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(number) = parsed else {
            let (kind, msg) = match value {
                Value::String(_) => (
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                ),
                Value::Number(_) => (
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                ),
                _ => ("int_type", "Input should be a valid integer"),
            };
            return Err(FieldError::new(kind, &loc, msg, value.clone()));
        };
        if number < min {
            let (kind, msg, ctx) = if min == 0 {
                (
                    "greater_than_equal",
                    "Input should be greater than or equal to 0".to_string(),
                    json!({ "ge": 0 }),
                )
            } else {
                (
                    "greater_than",
                    format!("Input should be greater than {}", min - 1),
                    json!({ "gt": min - 1 }),
                )
            };
            return Err(FieldError::new(kind, &loc, msg, value.clone()).with_ctx(ctx));
        }
        Ok(number)
    }

    /// A required integer field that must be `>= min`.
    pub fn integer(body: &Map<String, Value>, name: &str, min: i64) -> Result<i64, FieldError> {
        match body.get(name) {
            Some(value) => integer_value(value, name, min),
            None => Err(FieldError::missing(
                &["body", name],
                Value::Object(body.clone()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_matches_fastapi_shape() {
        let error = FieldError::missing(&["body", "name"], json!({}));
        assert_eq!(
            validation_body(&[error]),
            json!({"detail": [{"type": "missing", "loc": ["body", "name"], "msg": "Field required", "input": {}}]})
        );
    }

    #[test]
    fn integer_rules() {
        assert_eq!(fields::integer_value(&json!(5), "q", 1), Ok(5));
        assert_eq!(fields::integer_value(&json!("7"), "q", 1), Ok(7));
        assert_eq!(fields::integer_value(&json!(3.0), "q", 1), Ok(3));
        assert_eq!(
            fields::integer_value(&json!(0), "q", 1).unwrap_err().kind,
            "greater_than"
        );
        assert_eq!(
            fields::integer_value(&json!(-1), "q", 0).unwrap_err().kind,
            "greater_than_equal"
        );
        assert_eq!(
            fields::integer_value(&json!(1.5), "q", 1).unwrap_err().kind,
            "int_from_float"
        );
        assert_eq!(
            fields::integer_value(&json!("x"), "q", 1).unwrap_err().kind,
            "int_parsing"
        );
        assert_eq!(
            fields::integer_value(&json!(true), "q", 1)
                .unwrap_err()
                .kind,
            "int_type"
        );
    }

    #[test]
    fn string_lengths_count_characters() {
        let body = json!({"name": "é".repeat(3)});
        let body = body.as_object().unwrap();
        assert_eq!(fields::string(body, "name", 3, 3).unwrap(), "ééé");
        assert_eq!(
            fields::string(body, "name", 4, 9).unwrap_err().kind,
            "string_too_short"
        );
        assert_eq!(
            fields::string(body, "name", 1, 2).unwrap_err().kind,
            "string_too_long"
        );
        assert_eq!(
            fields::string(body, "other", 1, 2).unwrap_err().kind,
            "missing"
        );
    }
}
