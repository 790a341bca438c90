//! `skip` / `limit` query parameters: skip >= 0 (default 0), limit 1..=100 (default 100).

use crate::errors::FieldError;
use crate::http::Request;
use serde_json::{json, Value};

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub skip: i64,
    pub limit: i64,
}

impl Page {
    /// Reads and validates `skip` and `limit`, reporting both errors at once.
    pub fn from_request(request: &Request) -> Result<Page, Vec<FieldError>> {
        let skip = bounded(request.query_param("skip"), "skip", 0, 0, None);
        let limit = bounded(request.query_param("limit"), "limit", 100, 1, Some(100));
        match (skip, limit) {
            (Ok(skip), Ok(limit)) => Ok(Page { skip, limit }),
            (skip, limit) => Err([skip.err(), limit.err()].into_iter().flatten().collect()),
        }
    }
}

fn bounded(
    raw: Option<&str>,
    name: &str,
    default: i64,
    min: i64,
    max: Option<i64>,
) -> Result<i64, FieldError> {
    let Some(raw) = raw else { return Ok(default) };
    let loc = ["query", name];
    let value: i64 = raw.trim().parse().map_err(|_| {
        FieldError::new(
            "int_parsing",
            &loc,
            "Input should be a valid integer, unable to parse string as an integer",
            Value::from(raw),
        )
    })?;
    if value < min {
        return Err(FieldError::new(
            "greater_than_equal",
            &loc,
            format!("Input should be greater than or equal to {min}"),
            Value::from(raw),
        )
        .with_ctx(json!({ "ge": min })));
    }
    if let Some(max) = max.filter(|max| value > *max) {
        return Err(FieldError::new(
            "less_than_equal",
            &loc,
            format!("Input should be less than or equal to {max}"),
            Value::from(raw),
        )
        .with_ctx(json!({ "le": max })));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn page(query: &[(&str, &str)]) -> Result<Page, Vec<FieldError>> {
        Page::from_request(&Request {
            route_index: 0,
            method: Method::Get,
            path: "/".into(),
            params: Vec::new(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: Vec::new(),
            body: Vec::new(),
            caller: None,
            request_id: "r".into(),
        })
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            page(&[]),
            Ok(Page {
                skip: 0,
                limit: 100
            })
        );
        assert_eq!(
            page(&[("skip", "5"), ("limit", "1")]),
            Ok(Page { skip: 5, limit: 1 })
        );
        assert_eq!(
            page(&[("limit", "0")]).unwrap_err()[0].kind,
            "greater_than_equal"
        );
        assert_eq!(
            page(&[("limit", "101")]).unwrap_err()[0].kind,
            "less_than_equal"
        );
        assert_eq!(
            page(&[("skip", "-1")]).unwrap_err()[0].kind,
            "greater_than_equal"
        );
        assert_eq!(page(&[("skip", "x"), ("limit", "y")]).unwrap_err().len(), 2);
    }
}
