//! Route declaration, request accessors and response builders over the WIT HTTP types.

use crate::errors::{detail_body, validation_body, FieldError};
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::bindings::platform::service::http_types::{
    DocumentedError, Identity, Method, Request, Response, Route,
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
        response_schema: None,
        errors: Vec::new(),
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

    /// JSON Schema of the request body, shown in the OpenAPI document. Every string in it
    /// is documented as free of NUL characters, which the field validators refuse (no
    /// database stores them as text).
    pub fn body_schema(mut self, mut schema: Value) -> Self {
        forbid_nul(&mut schema);
        self.0.request_schema = Some(schema.to_string());
        self
    }

    /// JSON Schema of the successful answer's body, shown in the OpenAPI document.
    pub fn response_schema(mut self, schema: Value) -> Self {
        self.0.response_schema = Some(schema.to_string());
        self
    }

    /// Documents a status the handler answers besides its success.
    pub fn error(mut self, status: u16, description: &str) -> Self {
        self.0.errors.push(DocumentedError {
            status,
            description: description.to_string(),
        });
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
/// Adds a pattern that excludes NUL to every string schema in `schema` that has none.
fn forbid_nul(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let is_string = match object.get("type") {
                Some(Value::String(kind)) => kind == "string",
                Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "string"),
                _ => false,
            };
            if is_string && !object.contains_key("pattern") && !object.contains_key("enum") {
                object.insert("pattern".into(), Value::from("^[^\\u0000]*$"));
            }
            object.values_mut().for_each(forbid_nul);
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_nul),
        _ => {}
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

/// A body that is already JSON (a cached value, say), sent as it is.
pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
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
    fn nul_characters_are_refused_by_the_field_validators_only() {
        // A field the endpoint ignores may hold anything, as FastAPI ignores it too.
        let object = request(br#"{"name": "a\u0000b", "extra": "\u0000"}"#, &[])
            .json_object()
            .unwrap();
        let error = crate::errors::fields::string(&object, "name", 0, 10).unwrap_err();
        assert_eq!(error.kind, "string_nul");
        assert_eq!(error.loc, vec![Value::from("body"), Value::from("name")]);
    }

    #[test]
    fn body_schemas_document_that_strings_hold_no_nul() {
        let route = route(Method::Post, "/x")
            .body_schema(serde_json::json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string" },
                    "note": { "type": ["string", "null"] },
                    "status": { "type": "string", "enum": ["a"] },
                    "quantity": { "type": "integer" },
                }
            }))
            .build();
        let schema: Value = serde_json::from_str(&route.request_schema.unwrap()).unwrap();
        let properties = &schema["properties"];
        assert_eq!(properties["name"]["pattern"], "^[^\\u0000]*$");
        assert_eq!(properties["note"]["pattern"], "^[^\\u0000]*$");
        assert!(properties["status"].get("pattern").is_none());
        assert!(properties["quantity"].get("pattern").is_none());
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
