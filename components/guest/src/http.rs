//! Route declaration, request accessors and response builders over the WIT HTTP types.

use crate::errors::{detail_body, validation_body, FieldError};
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::bindings::platform::service::http_types::{
    Identity, Method, Request, Response, Route,
};

/// Starts a route declaration: `route(Method::Get, "/products/{product_id}")`.
pub fn route(method: Method, path: &str) -> RouteBuilder {
    RouteBuilder(Route {
        method,
        path: path.to_string(),
        requires_auth: false,
        summary: String::new(),
        description: String::new(),
        tags: Vec::new(),
        success_status: 200,
        request_schema: None,
    })
}

/// Fluent construction of a [`Route`].
pub struct RouteBuilder(Route);

impl RouteBuilder {
    /// The host validates the bearer token before the handler runs.
    pub fn authenticated(mut self) -> Self {
        self.0.requires_auth = true;
        self
    }

    pub fn summary(mut self, summary: &str) -> Self {
        self.0.summary = summary.to_string();
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.0.description = description.to_string();
        self
    }

    pub fn tag(mut self, tag: &str) -> Self {
        self.0.tags.push(tag.to_string());
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.0.success_status = status;
        self
    }

    /// JSON Schema of the request body, shown in the OpenAPI document.
    pub fn body_schema(mut self, schema: Value) -> Self {
        self.0.request_schema = Some(schema.to_string());
        self
    }

    pub fn build(self) -> Route {
        self.0
    }
}

impl Request {
    /// A path parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        lookup(&self.params, name)
    }

    /// The query parameter of that name; the last one when it is repeated, as FastAPI reads it.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, name)
    }

    /// A path parameter that must be a positive integer id, with FastAPI's 422 otherwise.
    pub fn id_param(&self, name: &str) -> Result<i64, Response> {
        let raw = self.param(name).unwrap_or_default();
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id),
            Ok(_) => Err(validation_error(&[FieldError::new(
                "greater_than",
                &["path", name],
                "Input should be greater than 0",
                Value::from(raw),
            )
            .with_ctx(serde_json::json!({ "gt": 0 }))])),
            Err(_) => Err(validation_error(&[FieldError::new(
                "int_parsing",
                &["path", name],
                "Input should be a valid integer, unable to parse string as an integer",
                Value::from(raw),
            )])),
        }
    }

    /// The body as a JSON object: 415 when the request names another content type, the
    /// 422 FastAPI gives for an unreadable body, and 422 for a string with a NUL character
    /// (which no database stores as text).
    pub fn json_object(&self) -> Result<Map<String, Value>, Response> {
        if let Some(content_type) = self.header("content-type") {
            if !is_json(content_type) {
                return Err(error(
                    415,
                    &format!("Unsupported Media Type: `{content_type}`; send application/json"),
                ));
            }
        }
        let value: Value = serde_json::from_slice(&self.body).map_err(|error| {
            validation_error(&[FieldError::new(
                "json_invalid",
                &["body"],
                "JSON decode error",
                Value::Object(Map::new()),
            )
            .with_ctx(serde_json::json!({ "error": error.to_string() }))])
        })?;
        let mut path = vec!["body".to_string()];
        if let Some(error) = nul_in(&value, &mut path) {
            return Err(validation_error(&[error]));
        }
        match value {
            Value::Object(object) => Ok(object),
            other => Err(validation_error(&[FieldError::new(
                "model_attributes_type",
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                other,
            )])),
        }
    }

    /// The caller; only absent on routes that do not require authentication.
    pub fn caller(&self) -> Option<&Identity> {
        self.caller.as_ref()
    }
}

/// `application/json` or a `+json` type, parameters (`; charset=utf-8`) aside.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The 422 entry of the first string (or key) under `value` that holds a NUL character.
fn nul_in(value: &Value, path: &mut Vec<String>) -> Option<FieldError> {
    let refused = |path: &[String], input: &str| {
        let loc: Vec<&str> = path.iter().map(String::as_str).collect();
        Some(FieldError::new(
            "string_nul",
            &loc,
            "String should not contain NUL characters",
            Value::from(input),
        ))
    };
    match value {
        Value::String(text) if text.contains('\0') => refused(path, text),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            path.push(index.to_string());
            let found = nul_in(item, path);
            path.pop();
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            path.push(key.clone());
            let found = if key.contains('\0') {
                refused(path, key)
            } else {
                nul_in(item, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A JSON response.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(body).expect("serialising a response cannot fail"),
    }
}

/// `{"detail": message}` with `status`.
pub fn error(status: u16, message: &str) -> Response {
    json(status, &detail_body(message))
}

/// 422 with a FastAPI validation `detail` list.
pub fn validation_error(errors: &[FieldError]) -> Response {
    json(422, &validation_body(errors))
}

/// 204 without a body.
pub fn no_content() -> Response {
    Response {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// 500 without internals; the cause goes to the host log instead.
pub fn internal_error(cause: &str) -> Response {
    crate::log_error(cause);
    error(500, "Internal Server Error")
}

/// 503 for an unreachable backing service; the cause goes to the host log.
pub fn unavailable(what: &str, cause: &str) -> Response {
    crate::log_error(&format!("{what} unavailable: {cause}"));
    error(503, &format!("{what} unavailable"))
}

impl Method {
    /// The method's name as HTTP spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8], params: &[(&str, &str)]) -> Request {
        Request {
            route_index: 0,
            method: Method::Post,
            path: "/x".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query: Vec::new(),
            headers: Vec::new(),
            body: body.to_vec(),
            caller: None,
            request_id: "r".into(),
        }
    }

    #[test]
    fn malformed_and_non_object_bodies_are_422() {
        assert_eq!(request(b"{", &[]).json_object().unwrap_err().status, 422);
        assert_eq!(request(b"[1]", &[]).json_object().unwrap_err().status, 422);
        assert_eq!(
            request(&[0xff, 0xfe], &[])
                .json_object()
                .unwrap_err()
                .status,
            422
        );
        assert!(request(br#"{"a":1}"#, &[]).json_object().is_ok());
    }

    #[test]
    fn only_json_content_types_are_read_as_json() {
        let mut typed = request(br#"{"a":1}"#, &[]);
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            typed.headers = vec![("content-type".into(), accepted.into())];
            assert!(typed.json_object().is_ok(), "{accepted}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            typed.headers = vec![("content-type".into(), refused.into())];
            assert_eq!(typed.json_object().unwrap_err().status, 415, "{refused}");
        }
    }

    #[test]
    fn nul_characters_are_422_with_their_location() {
        let response = request(br#"{"name": "a\u0000b", "ok": "c"}"#, &[])
            .json_object()
            .unwrap_err();
        assert_eq!(response.status, 422);
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            serde_json::json!(["body", "name"])
        );
        assert_eq!(body["detail"][0]["type"], "string_nul");
        let nested = request(br#"{"tags": ["x", "\u0000"]}"#, &[]).json_object();
        assert_eq!(nested.unwrap_err().status, 422);
    }

    #[test]
    fn id_params_must_be_positive_integers() {
        assert_eq!(request(b"", &[("id", "42")]).id_param("id").unwrap(), 42);
        assert_eq!(
            request(b"", &[("id", "abc")])
                .id_param("id")
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(
            request(b"", &[("id", "0")])
                .id_param("id")
                .unwrap_err()
                .status,
            422
        );
    }
}
