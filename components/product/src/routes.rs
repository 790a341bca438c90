//! The route table and the HTTP <-> service mapping.
//!
//! [`ROUTES`] is the one list both `routes()` and `handle()` read (see
//! `platform_guest::dispatch`), so the route index the host passes back always selects the
//! handler of the route it matched.

use crate::cache::HostCache;
use crate::model::{
    idempotency_key, KeyedChange, NewProduct, Product, ProductUpdate, StockChange, StockOperation,
};
use crate::repository::Repository;
use crate::service::{ttl_from_config, ProductError, ProductService, StoreError};
use platform_guest::dispatch::{Answer, Endpoint, RouteTable};
use platform_guest::errors::FieldError;
use platform_guest::http::{self, Identity, Method, Request, Response, Route};
use platform_guest::pagination::Page;
use serde_json::{json, Map, Value};

/// Default cache TTL when `cache_ttl_seconds` is not configured.
const DEFAULT_CACHE_TTL_SECONDS: u32 = 300;
const TAG: &str = "products";

/// The route table: `routes()` and `handle()` both read it.
pub const ROUTES: RouteTable = RouteTable::new(&[
    Endpoint::public(list_products_route, list_products),
    Endpoint::public(get_product_route, get_product),
    Endpoint::authenticated(create_product_route, create_product),
    Endpoint::authenticated(update_product_route, update_product),
    Endpoint::authenticated(delete_product_route, delete_product),
    Endpoint::authenticated(reserve_stock_route, reserve_stock),
    Endpoint::authenticated(release_stock_route, release_stock),
]);

// ---------- route declarations ----------

fn list_products_route() -> Route {
    http::route(Method::Get, "/products")
        .summary("List products")
        .description(
            "Products ordered by id. Query parameters: `skip` (>= 0, default 0) and \
             `limit` (1..=100, default 100).",
        )
        .tag(TAG)
        .response_schema(json!({"type": "array", "items": product_schema()}))
        .build()
}

fn get_product_route() -> Route {
    http::route(Method::Get, "/products/{product_id}")
        .summary("Get a product")
        .description("One product by id (served from the cache when present). 404 if unknown.")
        .tag(TAG)
        .response_schema(product_schema())
        .error(404, "Product not found")
        .build()
}

fn create_product_route() -> Route {
    http::route(Method::Post, "/products")
        .authenticated()
        .summary("Create a product")
        .description("Creates a product and returns it with its id and timestamps.")
        .tag(TAG)
        .status(201)
        .body_schema(create_schema())
        .response_schema(product_schema())
        .build()
}

fn update_product_route() -> Route {
    http::route(Method::Put, "/products/{product_id}")
        .authenticated()
        .summary("Update a product")
        .description(
            "Updates any subset of the product's fields; absent fields keep their \
             value. `description: null` clears the description.",
        )
        .tag(TAG)
        .body_schema(update_schema())
        .response_schema(product_schema())
        .error(404, "Product not found")
        .build()
}

fn delete_product_route() -> Route {
    http::route(Method::Delete, "/products/{product_id}")
        .authenticated()
        .summary("Delete a product")
        .description("Deletes the product; 204 without a body.")
        .tag(TAG)
        .status(204)
        .error(404, "Product not found")
        .build()
}

fn reserve_stock_route() -> Route {
    http::route(Method::Post, "/products/{product_id}/reserve")
        .authenticated()
        .summary("Reserve stock")
        .description(
            "Atomically takes `quantity` units out of stock and returns the product \
             with its decreased quantity; 409 if fewer units are in stock. With an \
             `Idempotency-Key` header (1..=255 visible ASCII characters, e.g. the order's \
             reservation id) the reservation is applied once: a repeat with the same key \
             gets the first answer, and the same key for another product or quantity \
             gets 422. Keys are answered again for 7 days.",
        )
        .tag(TAG)
        .body_schema(stock_schema("Units to reserve."))
        .response_schema(product_schema())
        .error(404, "Product not found")
        .error(409, "Not enough stock")
        .build()
}

fn release_stock_route() -> Route {
    http::route(Method::Post, "/products/{product_id}/release")
        .authenticated()
        .summary("Release stock")
        .description(
            "Puts `quantity` previously reserved units back in stock and returns the \
             product with its increased quantity. With an `Idempotency-Key` header the \
             release is applied once; the key of a reservation releases that reservation \
             (409 if it was refused, 422 for another product or quantity).",
        )
        .tag(TAG)
        .body_schema(stock_schema("Units to put back."))
        .response_schema(product_schema())
        .error(404, "Product not found")
        .error(
            409,
            "The stock would overflow, or the key's reservation was refused",
        )
        .build()
}

// ---------- request and response schemas (OpenAPI) ----------

fn product_schema() -> Value {
    json!({
        "title": "Product",
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "price": {"type": "number"},
            "quantity": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "name", "description", "price", "quantity", "created_at", "updated_at"],
    })
}

fn name_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 255, "description": "Product name."})
}

fn description_schema() -> Value {
    json!({
        "anyOf": [{"type": "string", "maxLength": 1000}, {"type": "null"}],
        "description": "Free text, at most 1000 characters, or null.",
    })
}

/// A price as text: optional ASCII blanks around an optional `+`, at most 8 whole digits
/// (leading zeros aside) and at most 2 decimals (trailing zeros aside), above zero; what
/// `money::parse_price` accepts.
const PRICE_PATTERN: &str =
    "^[ \\t\\n\\r]*\\+?0*(?:[1-9][0-9]{0,7}(?:\\.[0-9]{0,2}0*)?|\\.(?:0[1-9]|[1-9][0-9]?)0*)[ \\t\\n\\r]*$";

fn price_schema() -> Value {
    json!({
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "maximum": 99999999.99, "multipleOf": 0.01},
            {"type": "string", "pattern": PRICE_PATTERN},
        ],
        "description": "Price: > 0, <= 99999999.99, at most two decimals; a number or a numeric string.",
        "examples": [19.99],
    })
}

fn quantity_schema() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": i64::MAX, "description": "Units in stock."})
}

fn create_schema() -> Value {
    json!({
        "title": "ProductCreate",
        "type": "object",
        "properties": {
            "name": name_schema(),
            "description": description_schema(),
            "price": price_schema(),
            "quantity": quantity_schema(),
        },
        "required": ["name", "price", "quantity"],
    })
}

fn update_schema() -> Value {
    json!({
        "title": "ProductUpdate",
        "type": "object",
        "description": "Any subset of the product's fields.",
        "properties": {
            "name": name_schema(),
            "description": description_schema(),
            "price": price_schema(),
            "quantity": quantity_schema(),
        },
    })
}

fn stock_schema(what: &str) -> Value {
    json!({
        "title": "StockChange",
        "type": "object",
        "properties": {
            "quantity": {"type": "integer", "minimum": 1, "maximum": i64::MAX, "description": what},
        },
        "required": ["quantity"],
    })
}

// ---------- handlers ----------

pub fn service() -> ProductService<Repository, HostCache> {
    ProductService::new(Repository, HostCache, cache_ttl, platform_guest::log_warn)
}

/// The `cache_ttl_seconds` config value, or the default (with a warning) when it is not a
/// positive number of seconds.
fn cache_ttl() -> u32 {
    let raw = platform_guest::config::get("cache_ttl_seconds");
    ttl_from_config(raw.as_deref(), DEFAULT_CACHE_TTL_SECONDS).unwrap_or_else(|default| {
        platform_guest::log_warn(&format!(
            "config cache_ttl_seconds = {raw:?} is not a positive number of seconds; using {default}"
        ));
        default
    })
}

/// Runs `handler` for an authenticated route. The host has already answered 401 for a
/// missing or invalid token; a missing caller here is a host bug, still answered 401.
fn product_response(status: u16, product: &Product) -> Response {
    http::json(status, &product.body())
}

fn list_products(request: &Request) -> Answer {
    let page = Page::from_request(request).map_err(|errors| http::validation_error(&errors))?;
    let products = service().list(page).map_err(error_response)?;
    let bodies: Vec<_> = products.iter().map(Product::body).collect();
    Ok(http::json(200, &bodies))
}

fn get_product(request: &Request) -> Answer {
    let id = request.id_param("product_id")?;
    let product = service().get(id).map_err(error_response)?;
    Ok(http::json_bytes(200, product.into_bytes()))
}

fn create_product(request: &Request, _: &Identity) -> Answer {
    let new =
        body(request, NewProduct::from_json).map_err(|errors| validation(Vec::new(), errors))?;
    let product = service().create(&new).map_err(error_response)?;
    platform_guest::log_info(&format!("created product {}", product.id));
    Ok(product_response(201, &product))
}

fn update_product(request: &Request, _: &Identity) -> Answer {
    let (id, changes) = id_and_body(request, ProductUpdate::from_json)?;
    let product = service().update(id, &changes).map_err(error_response)?;
    Ok(product_response(200, &product))
}

fn delete_product(request: &Request, _: &Identity) -> Answer {
    let id = request.id_param("product_id")?;
    service().delete(id).map_err(error_response)?;
    platform_guest::log_info(&format!("deleted product {id}"));
    Ok(http::no_content())
}

fn reserve_stock(request: &Request, _: &Identity) -> Answer {
    let (id, change) = id_and_body(request, StockChange::from_json)?;
    if let Some(keyed) = keyed_change(request, StockOperation::Reserve, id, change)? {
        return keyed_answer(&keyed);
    }
    let product = service()
        .reserve(id, change.quantity)
        .map_err(error_response)?;
    Ok(product_response(200, &product))
}

fn release_stock(request: &Request, _: &Identity) -> Answer {
    let (id, change) = id_and_body(request, StockChange::from_json)?;
    if let Some(keyed) = keyed_change(request, StockOperation::Release, id, change)? {
        return keyed_answer(&keyed);
    }
    let product = service()
        .release(id, change.quantity)
        .map_err(error_response)?;
    Ok(product_response(200, &product))
}

/// The change as a keyed one when the request carries an `Idempotency-Key`.
fn keyed_change(
    request: &Request,
    operation: StockOperation,
    product_id: i64,
    change: StockChange,
) -> Result<Option<KeyedChange>, Response> {
    let Some(raw) = request.header("idempotency-key") else {
        return Ok(None);
    };
    let key = idempotency_key(raw).map_err(|error| http::validation_error(&[error]))?;
    Ok(Some(KeyedChange {
        key,
        operation,
        product_id,
        quantity: change.quantity,
    }))
}

/// Applies a keyed change once and answers with its first answer.
fn keyed_answer(change: &KeyedChange) -> Answer {
    let answer = service()
        .change_once(change)
        .map_err(|error| error_response(error.into()))?;
    platform_guest::log_info(&format!(
        "{} of {} unit(s) of product {} under key {}: {}",
        change.operation.as_str(),
        change.quantity,
        change.product_id,
        change.key,
        answer.status
    ));
    Ok(Response {
        status: answer.status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: answer.body.into_bytes(),
    })
}

// ---------- request parsing ----------

/// Validates a JSON object into an input type, reporting every field error.
type BodyParser<T> = fn(&Map<String, Value>) -> Result<T, Vec<FieldError>>;

/// Why a body could not be turned into its input type.
#[derive(Debug)]
enum BodyError {
    /// Not JSON at all: FastAPI reports only this, before anything else is validated.
    Undecodable(Response),
    /// JSON, but failing validation (these are combined with path errors).
    Invalid(Vec<Value>),
}

/// Reads the body as a JSON object and validates it with `parse`.
fn body<T>(request: &Request, parse: BodyParser<T>) -> Result<T, BodyError> {
    if request.body.is_empty() {
        // FastAPI: a required body that was not sent at all.
        return Err(BodyError::Invalid(vec![FieldError::new(
            "missing",
            &["body"],
            "Field required",
            Value::Null,
        )
        .to_json()]));
    }
    let object = match request.json_object() {
        Ok(object) => object,
        // 415 (not JSON at all), or a body that does not even decode: answered as is.
        Err(response)
            if response.status != 422
                || serde_json::from_slice::<Value>(&request.body).is_err() =>
        {
            return Err(BodyError::Undecodable(response))
        }
        // A JSON value the endpoint cannot take: its 422 entries join the path's.
        Err(response) => return Err(BodyError::Invalid(details(&response))),
    };
    parse(&object)
        .map_err(|errors| BodyError::Invalid(errors.iter().map(FieldError::to_json).collect()))
}

/// Validates the `product_id` path parameter and the body together, reporting the errors
/// of both in one 422 (path first), as FastAPI does.
fn id_and_body<T>(request: &Request, parse: BodyParser<T>) -> Result<(i64, T), Response> {
    let id = request.id_param("product_id");
    let body = body(request, parse);
    match (id, body) {
        (_, Err(BodyError::Undecodable(response))) => Err(response),
        (Ok(id), Ok(body)) => Ok((id, body)),
        (Err(id_error), Ok(_)) => Err(id_error),
        (id, Err(BodyError::Invalid(body_errors))) => {
            let path_errors = id
                .err()
                .map(|response| details(&response))
                .unwrap_or_default();
            Err(validation(path_errors, BodyError::Invalid(body_errors)))
        }
    }
}

/// A 422 from path errors followed by the body's errors.
fn validation(mut errors: Vec<Value>, body: BodyError) -> Response {
    match body {
        BodyError::Undecodable(response) => response,
        BodyError::Invalid(body_errors) => {
            errors.extend(body_errors);
            http::json(422, &json!({ "detail": errors }))
        }
    }
}

/// The `detail` list of a 422 response the guest crate built.
fn details(response: &Response) -> Vec<Value> {
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|body| body.get("detail").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// The response of a service error; 5xx causes go to the log only.
fn error_response(error: ProductError) -> Response {
    match &error {
        ProductError::Store(StoreError::Unavailable(cause)) => http::unavailable("Database", cause),
        ProductError::Store(StoreError::Internal(cause)) => http::internal_error(cause),
        other => http::error(other.status(), &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(request: Request) -> Response {
        ROUTES.handle(&request)
    }

    fn request(route_index: u32, params: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            route_index,
            method: Method::Post,
            path: "/products".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query: Vec::new(),
            headers: Vec::new(),
            body: body.to_vec(),
            caller: Some(Identity {
                user_id: 1,
                username: "alice".into(),
            }),
            request_id: "req".into(),
        }
    }

    fn body_json(response: &Response) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    fn detail_types(response: &Response) -> Vec<(String, Value)> {
        body_json(response)["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["type"].as_str().unwrap().to_string(), e["loc"].clone()))
            .collect()
    }

    #[test]
    fn route_table_matches_the_contract() {
        let table = ROUTES.routes();
        let summary: Vec<_> = table
            .iter()
            .map(|r| {
                (
                    r.method.as_str(),
                    r.path.as_str(),
                    r.requires_auth,
                    r.success_status,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("GET", "/products", false, 200),
                ("GET", "/products/{product_id}", false, 200),
                ("POST", "/products", true, 201),
                ("PUT", "/products/{product_id}", true, 200),
                ("DELETE", "/products/{product_id}", true, 204),
                ("POST", "/products/{product_id}/reserve", true, 200),
                ("POST", "/products/{product_id}/release", true, 200),
            ]
        );
        for route in &table {
            assert_eq!(route.tags, vec!["products".to_string()]);
            assert!(!route.summary.is_empty());
            let takes_body = matches!(route.method, Method::Post | Method::Put);
            assert_eq!(route.request_schema.is_some(), takes_body, "{}", route.path);
            if let Some(schema) = &route.request_schema {
                let schema: Value = serde_json::from_str(schema).unwrap();
                assert_eq!(schema["type"], "object");
            }
        }
    }

    #[test]
    fn schemas_name_the_required_fields() {
        let create: Value = serde_json::from_str(&create_schema().to_string()).unwrap();
        assert_eq!(create["required"], json!(["name", "price", "quantity"]));
        assert!(update_schema().get("required").is_none());
        assert_eq!(stock_schema("x")["properties"]["quantity"]["minimum"], 1);
    }

    #[test]
    fn invalid_bodies_are_422_before_any_capability_is_used() {
        // Create: every field error at once.
        let response = handle(request(2, &[], br#"{"name": "", "price": 1.234}"#));
        assert_eq!(response.status, 422);
        assert_eq!(
            detail_types(&response),
            vec![
                ("string_too_short".into(), json!(["body", "name"])),
                ("decimal_max_places".into(), json!(["body", "price"])),
                ("missing".into(), json!(["body", "quantity"])),
            ]
        );
        // Malformed JSON: only the decode error, even with a bad id.
        let response = handle(request(3, &[("product_id", "abc")], b"{nope"));
        assert_eq!(response.status, 422);
        assert_eq!(
            detail_types(&response),
            vec![("json_invalid".into(), json!(["body"]))]
        );
        // Empty body: the body is required.
        let response = handle(request(5, &[("product_id", "1")], b""));
        assert_eq!(
            detail_types(&response),
            vec![("missing".into(), json!(["body"]))]
        );
        // Not an object.
        let response = handle(request(6, &[("product_id", "1")], b"[1]"));
        assert_eq!(
            detail_types(&response),
            vec![("model_attributes_type".into(), json!(["body"]))]
        );
    }

    #[test]
    fn path_and_body_errors_are_reported_together() {
        let response = handle(request(5, &[("product_id", "abc")], br#"{"quantity": 0}"#));
        assert_eq!(response.status, 422);
        assert_eq!(
            detail_types(&response),
            vec![
                ("int_parsing".into(), json!(["path", "product_id"])),
                ("greater_than".into(), json!(["body", "quantity"])),
            ]
        );
        let response = handle(request(3, &[("product_id", "0")], br#"{"price": null}"#));
        assert_eq!(
            detail_types(&response),
            vec![
                ("greater_than".into(), json!(["path", "product_id"])),
                ("decimal_type".into(), json!(["body", "price"])),
            ]
        );
    }

    #[test]
    fn a_bad_id_alone_is_422() {
        let response = handle(request(6, &[("product_id", "x1")], br#"{"quantity": 1}"#));
        assert_eq!(
            detail_types(&response),
            vec![("int_parsing".into(), json!(["path", "product_id"]))]
        );
        let response = handle(request(1, &[("product_id", "nope")], b""));
        assert_eq!(response.status, 422);
        let response = handle(request(4, &[("product_id", "-3")], b""));
        assert_eq!(response.status, 422);
    }

    #[test]
    fn list_rejects_bad_pagination() {
        let mut list = request(0, &[], b"");
        list.query = vec![("skip".into(), "-1".into()), ("limit".into(), "101".into())];
        let response = handle(list);
        assert_eq!(response.status, 422);
        assert_eq!(
            detail_types(&response),
            vec![
                ("greater_than_equal".into(), json!(["query", "skip"])),
                ("less_than_equal".into(), json!(["query", "limit"])),
            ]
        );
    }

    #[test]
    fn client_errors_map_to_detail_responses() {
        let response = error_response(ProductError::NotFound);
        assert_eq!(response.status, 404);
        assert_eq!(body_json(&response), json!({"detail": "Product not found"}));
        let response = error_response(ProductError::InsufficientStock {
            product_id: 2,
            requested: 5,
            available: 1,
        });
        assert_eq!(response.status, 409);
        assert_eq!(
            body_json(&response),
            json!({"detail": "Not enough stock for product 2: requested 5, available 1"})
        );
    }

    #[test]
    fn product_responses_carry_the_wire_shape() {
        let product = Product {
            id: 1,
            name: "W".into(),
            description: None,
            price_cents: 10,
            quantity: 0,
            created_at: "2026-11-25T10:00:00Z".into(),
            updated_at: "2026-11-25T10:00:00Z".into(),
        };
        let response = product_response(201, &product);
        assert_eq!(response.status, 201);
        assert_eq!(body_json(&response), product.to_json());
        assert_eq!(body_json(&response)["price"].to_string(), "0.1");
    }
}
