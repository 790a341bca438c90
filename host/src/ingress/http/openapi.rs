//! The OpenAPI 3.1 document and `/docs` page, generated from a version's route table once
//! at load time.

use crate::bindings::http_types::Route;
use crate::runtime::routes::method_name;
use serde_json::{json, Map, Value};

pub fn document(service: &str, version: &str, routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let parameters: Vec<Value> = path_parameters(&route.path)
            .map(|name| {
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "schema": { "type": "integer", "minimum": 1, "maximum": i64::MAX },
                })
            })
            .collect();
        let mut operation = json!({
            "summary": route.summary,
            "operationId": format!("{}_{}", method_name(route.method).to_lowercase(), operation_suffix(&route.path)),
            "tags": route.tags,
            "parameters": parameters,
            "responses": responses(route),
        });
        if !route.description.is_empty() {
            operation["description"] = json!(route.description);
        }
        if route.requires_auth {
            operation["security"] = json!([{ "bearerAuth": [] }]);
        }
        if let Some(schema) = route
            .request_schema
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema } },
            });
        }
        let item = paths
            .entry(route.path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        item[method_name(route.method).to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": format!("{service} service"), "version": version },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            },
            "schemas": {
                "HTTPValidationError": {
                    "type": "object",
                    "required": ["detail"],
                    "properties": {
                        "detail": {
                            "anyOf": [
                                {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["type", "loc", "msg"],
                                        "properties": {
                                            "type": { "type": "string" },
                                            "loc": { "type": "array", "items": { "type": ["string", "integer"] } },
                                            "msg": { "type": "string" },
                                            "input": {},
                                            "ctx": { "type": "object" }
                                        }
                                    }
                                },
                                { "type": "string" }
                            ]
                        }
                    }
                },
                "ErrorDetail": {
                    "type": "object",
                    "required": ["detail"],
                    "properties": { "detail": { "type": "string" } }
                }
            }
        },
    })
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn operation_suffix(path: &str) -> String {
    path.trim_matches('/')
        .replace(['{', '}'], "")
        .replace(['/', '-'], "_")
}

/// Every status the route can answer: its success (with the component's schema), the
/// errors the component declares, and the host's own.
fn responses(route: &Route) -> Value {
    let mut responses = Map::new();
    let success = match route
        .response_schema
        .as_deref()
        .and_then(|schema| serde_json::from_str::<Value>(schema).ok())
    {
        _ if route.success_status == 204 => json!({ "description": "Success, no content" }),
        Some(schema) => json!({
            "description": "Success",
            "content": { "application/json": { "schema": schema } },
        }),
        None => {
            json!({ "description": "Success", "content": { "application/json": { "schema": {} } } })
        }
    };
    responses.insert(route.success_status.to_string(), success);
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorDetail" } } },
        })
    };
    for documented in &route.errors {
        responses.insert(
            documented.status.to_string(),
            error(&documented.description),
        );
    }
    if route.requires_auth {
        responses.insert("401".into(), error("Missing, invalid or expired token"));
    }
    if route.request_schema.is_some() {
        responses.insert("413".into(), error("Body larger than the host's limit"));
        responses.insert("415".into(), error("Body is not `application/json`"));
    }
    responses.insert(
        "422".into(),
        json!({
            "description": "Validation Error",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/HTTPValidationError" } } },
        }),
    );
    responses.insert("500".into(), error("The component failed"));
    responses.insert(
        "503".into(),
        json!({
            "description": "Overloaded, or a backend the service needs is unavailable; retry later",
            "headers": { "Retry-After": { "schema": { "type": "integer" } } },
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorDetail" } } },
        }),
    );
    Value::Object(responses)
}

/// A Swagger UI page that renders `/openapi.json`, from files the host serves itself
/// ([`super::swagger_ui`]): no CDN, no inline script.
pub fn docs_page(service: &str) -> String {
    format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<title>{service} service - Swagger UI</title>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"##
    )
}
