//! The route table and the HTTP <-> service mapping.
//!
//! [`ROUTES`] is the one list of (route, handler) pairs (see `platform_guest::dispatch`):
//! `routes()` and `handle()` both read it, so the route index the host passes back always
//! selects the right handler.
//! Handlers validate their input (422 in FastAPI's shape) before anything touches a
//! capability, call the service, and map its errors to statuses in [`error_response`].

use crate::adapters::products::{HttpProductClient, DEFAULT_PRODUCT_TIMEOUT_MS};
use crate::adapters::{events::Broker, repository::Repository};
use crate::log;
use crate::model::{status_from_body, Caller, NewOrder, Order, STATUS_CHOICES};
use crate::service::{OrderError, OrderService, DEFAULT_SETTLE_AFTER_SECONDS};
use platform_guest::config;
use platform_guest::dispatch::{Answer, Endpoint, RouteTable};
use platform_guest::errors::FieldError;
use platform_guest::http::{
    self, json, route, validation_error, Identity, Method, Request, Response, Route,
};
use platform_guest::pagination::Page;
use serde_json::{json, Value};

/// The exchange the contract names, used when `events_exchange` is not configured.
const DEFAULT_EXCHANGE: &str = "order_events";

/// The route table: `routes()` and `handle()` both read it. Every route is
/// authenticated: an order belongs to its caller.
pub const ROUTES: RouteTable = RouteTable::new(&[
    Endpoint::authenticated(create_order_route, create_order),
    Endpoint::authenticated(list_orders_route, list_orders),
    Endpoint::authenticated(get_order_route, get_order),
    Endpoint::authenticated(update_order_route, update_order),
    Endpoint::authenticated(delete_order_route, delete_order),
]);

/// The caller the host authenticated, as the service knows it.
fn caller(identity: &Identity) -> Caller {
    Caller {
        user_id: identity.user_id,
        username: identity.username.clone(),
    }
}

// ---- route declarations ----------------------------------------------------------------

fn order_schema() -> serde_json::Value {
    json!({
        "title": "Order",
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "user_id": {"type": "integer"},
            "product_id": {"type": "integer"},
            "product_name": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1},
            "unit_price": {"type": "number"},
            "total_price": {"type": "number"},
            "status": {
                "type": "string",
                "enum": ["pending", "confirmed", "shipped", "delivered", "cancelled"]
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}
        },
        "required": ["id", "user_id", "product_id", "product_name", "quantity", "unit_price",
                     "total_price", "status", "created_at", "updated_at"]
    })
}

fn create_order_route() -> Route {
    route(Method::Post, "/orders")
        .authenticated()
        .summary("Place an order")
        .description(
            "Reserves `quantity` units of the product at the product service and stores the \
             order as `pending` at the product's current price; publishes `order.created`. \
             400 when the product does not exist or has not enough stock.",
        )
        .tag("orders")
        .status(201)
        .body_schema(json!({
            "title": "OrderCreate",
            "type": "object",
            "properties": {
                "product_id": {"title": "Product Id", "type": "integer", "exclusiveMinimum": 0, "maximum": i64::MAX},
                "quantity": {"title": "Quantity", "type": "integer", "exclusiveMinimum": 0, "maximum": i64::MAX}
            },
            "required": ["product_id", "quantity"]
        }))
        .response_schema(order_schema())
        .error(400, "The product does not exist or has not enough stock")
        .build()
}

fn list_orders_route() -> Route {
    route(Method::Get, "/orders")
        .authenticated()
        .summary("List my orders")
        .description(
            "The caller's orders, newest first. Query parameters: `skip` (>= 0, default 0) \
             and `limit` (1..=100, default 100).",
        )
        .tag("orders")
        .response_schema(json!({"type": "array", "items": order_schema()}))
        .build()
}

fn get_order_route() -> Route {
    route(Method::Get, "/orders/{order_id}")
        .authenticated()
        .summary("Get an order")
        .description("One of the caller's orders; 403 for another user's order.")
        .tag("orders")
        .response_schema(order_schema())
        .error(403, "Another user's order")
        .error(404, "Order not found")
        .build()
}

fn update_order_route() -> Route {
    route(Method::Put, "/orders/{order_id}")
        .authenticated()
        .summary("Change an order's status")
        .description(
            "Sets the status of one of the caller's orders. Setting `cancelled` gives the \
             stock back to the product service (exactly once) and publishes \
             `order.cancelled`; a cancelled order cannot change any more (409).",
        )
        .tag("orders")
        .body_schema(json!({
            "title": "OrderUpdate",
            "type": "object",
            "properties": {
                "status": {
                    "title": "Status",
                    "type": "string",
                    "enum": ["pending", "confirmed", "shipped", "delivered", "cancelled"],
                    "description": format!("One of {STATUS_CHOICES}.")
                }
            },
            "required": ["status"]
        }))
        .response_schema(order_schema())
        .error(403, "Another user's order")
        .error(404, "Order not found")
        .error(409, "The order is already cancelled")
        .build()
}

fn delete_order_route() -> Route {
    route(Method::Delete, "/orders/{order_id}")
        .authenticated()
        .summary("Delete an order")
        .description(
            "Deletes one of the caller's orders; an order that was not cancelled gives its \
             stock back to the product service first.",
        )
        .tag("orders")
        .status(204)
        .error(403, "Another user's order")
        .error(404, "Order not found")
        .build()
}

// ---- handlers ------------------------------------------------------------------------

/// The service wired to the capabilities, acting for the caller whose `authorization`
/// header it forwards (none for scheduled work, which uses each change's own).
pub fn wired_service(
    authorization: Option<String>,
) -> OrderService<Repository, HttpProductClient, Broker> {
    let products = HttpProductClient::new(
        config::get("product_service_url"),
        u32::try_from(
            positive_config("product_timeout_ms").unwrap_or(i64::from(DEFAULT_PRODUCT_TIMEOUT_MS)),
        )
        .unwrap_or(DEFAULT_PRODUCT_TIMEOUT_MS),
    );
    let exchange = config::get("events_exchange").unwrap_or_else(|| DEFAULT_EXCHANGE.into());
    OrderService::new(Repository, products, Broker, exchange, authorization).settle_after(
        positive_config("settle_after_seconds").unwrap_or(DEFAULT_SETTLE_AFTER_SECONDS),
    )
}

/// A config value that must be a positive integer; an unusable one is logged and ignored.
fn positive_config(key: &str) -> Option<i64> {
    let raw = config::get(key)?;
    match raw.trim().parse::<i64>() {
        Ok(value) if (1..=i64::from(u32::MAX)).contains(&value) => Some(value),
        _ => {
            crate::log::warn(&format!(
                "config {key} = {raw:?} is not a positive integer; using the default"
            ));
            None
        }
    }
}

/// The service for one request; built only once the input is valid.
fn service(request: &Request) -> OrderService<Repository, HttpProductClient, Broker> {
    wired_service(request.header("authorization").map(str::to_string))
}

fn create_order(request: &Request, identity: &Identity) -> Answer {
    let caller = &caller(identity);
    let body = request.json_object()?;
    let input = NewOrder::from_body(&body).map_err(|errors| validation_error(&errors))?;
    let order = service(request)
        .place_order(caller, input)
        .map_err(error_response)?;
    Ok(json(201, &order.to_json()))
}

fn list_orders(request: &Request, identity: &Identity) -> Answer {
    let caller = &caller(identity);
    let page = Page::from_request(request).map_err(|errors| validation_error(&errors))?;
    let orders = service(request)
        .list_orders(caller, page)
        .map_err(error_response)?;
    Ok(json(
        200,
        &orders.iter().map(Order::to_json).collect::<Vec<_>>(),
    ))
}

fn get_order(request: &Request, identity: &Identity) -> Answer {
    let caller = &caller(identity);
    let id = request.id_param("order_id")?;
    let order = service(request)
        .get_order(caller, id)
        .map_err(error_response)?;
    Ok(json(200, &order.to_json()))
}

fn update_order(request: &Request, identity: &Identity) -> Answer {
    let caller = &caller(identity);
    let id = request.id_param("order_id");
    // An unreadable body is reported alone, as FastAPI does; otherwise path and body
    // errors come in one list.
    let body = request.json_object()?;
    let status = status_from_body(&body);
    let (id, status) = match (id, status) {
        (Ok(id), Ok(status)) => (id, status),
        (id, status) => {
            let mut detail = id
                .err()
                .map(|response| detail_entries(&response))
                .unwrap_or_default();
            detail.extend(
                status
                    .err()
                    .unwrap_or_default()
                    .iter()
                    .map(FieldError::to_json),
            );
            return Err(json(422, &json!({ "detail": detail })));
        }
    };
    let order = service(request)
        .update_status(caller, id, status)
        .map_err(error_response)?;
    Ok(json(200, &order.to_json()))
}

fn delete_order(request: &Request, identity: &Identity) -> Answer {
    let caller = &caller(identity);
    let id = request.id_param("order_id")?;
    service(request)
        .delete_order(caller, id)
        .map_err(error_response)?;
    Ok(http::no_content())
}

/// The entries of a 422 response's `detail` list.
fn detail_entries(response: &Response) -> Vec<Value> {
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|body| body.get("detail").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

// ---- errors --------------------------------------------------------------------------

/// 401 with `www-authenticate: Bearer`, as FastAPI's OAuth2 scheme answers.
fn unauthorized(message: &str) -> Response {
    let mut response = http::error(401, message);
    response
        .headers
        .push(("www-authenticate".to_string(), "Bearer".to_string()));
    response
}

/// The status and `detail` of a service error; causes go to the log, never to clients.
pub fn error_response(error: OrderError) -> Response {
    match error {
        OrderError::NotFound => http::error(404, "Order not found"),
        OrderError::Forbidden => http::error(403, "Not authorized to access this order"),
        OrderError::AlreadyCancelled => http::error(409, "Order is already cancelled"),
        OrderError::ProductNotFound(id) => http::error(400, &format!("Product {id} not found")),
        OrderError::InsufficientStock(id) => {
            http::error(400, &format!("Not enough stock for product {id}"))
        }
        OrderError::TotalTooLarge => http::error(400, "Order total must not exceed 99999999.99"),
        OrderError::Unauthorized => unauthorized("Could not validate credentials"),
        OrderError::ProductServiceUnavailable(cause) => {
            log::error(&format!("product service unavailable: {cause}"));
            http::error(503, "Product service unavailable")
        }
        OrderError::DatabaseUnavailable(cause) => {
            log::error(&format!("database unavailable: {cause}"));
            http::error(503, "Database unavailable")
        }
        OrderError::Internal(cause) => {
            log::error(&cause);
            http::error(500, "Internal Server Error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        ROUTES.routes()
    }

    fn handle(request: Request) -> Response {
        ROUTES.handle(&request)
    }

    fn request(route_index: u32, params: &[(&str, &str)], body: &str) -> Request {
        Request {
            route_index,
            method: Method::Post,
            path: "/orders".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query: Vec::new(),
            headers: vec![("authorization".into(), "Bearer t".into())],
            body: body.as_bytes().to_vec(),
            caller: Some(Identity {
                user_id: 1,
                username: "alice".into(),
            }),
            request_id: "r".into(),
        }
    }

    fn body(response: &Response) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_route_table_matches_the_contract() {
        let table: Vec<(Method, String, u16, bool)> = routes()
            .into_iter()
            .map(|r| {
                (
                    r.method,
                    r.path,
                    r.success_status,
                    r.request_schema.is_some(),
                )
            })
            .collect();
        assert_eq!(
            table,
            vec![
                (Method::Post, "/orders".into(), 201, true),
                (Method::Get, "/orders".into(), 200, false),
                (Method::Get, "/orders/{order_id}".into(), 200, false),
                (Method::Put, "/orders/{order_id}".into(), 200, true),
                (Method::Delete, "/orders/{order_id}".into(), 204, false),
            ]
        );
        for route in routes() {
            assert!(route.requires_auth, "{} is authenticated", route.path);
            assert_eq!(route.tags, vec!["orders".to_string()]);
            assert!(!route.summary.is_empty());
            if let Some(schema) = route.request_schema {
                let schema: Value = serde_json::from_str(&schema).unwrap();
                assert_eq!(schema["type"], "object");
            }
        }
    }

    #[test]
    fn invalid_order_bodies_are_422_with_every_error() {
        let response = handle(request(0, &[], r#"{"product_id": 0}"#));
        assert_eq!(response.status, 422);
        let detail = body(&response)["detail"].as_array().unwrap().clone();
        assert_eq!(detail.len(), 2);
        assert_eq!(detail[0]["loc"], json!(["body", "product_id"]));
        assert_eq!(detail[0]["type"], "greater_than");
        assert_eq!(detail[1]["loc"], json!(["body", "quantity"]));
        assert_eq!(detail[1]["type"], "missing");

        let response = handle(request(0, &[], "{not json"));
        assert_eq!(response.status, 422);
        assert_eq!(body(&response)["detail"][0]["type"], "json_invalid");
    }

    #[test]
    fn invalid_status_updates_are_422() {
        let response = handle(request(3, &[("order_id", "5")], r#"{"status": "lost"}"#));
        assert_eq!(response.status, 422);
        assert_eq!(
            body(&response),
            json!({"detail": [{
                "type": "enum",
                "loc": ["body", "status"],
                "msg": "Input should be 'pending', 'confirmed', 'shipped', 'delivered' or 'cancelled'",
                "input": "lost",
                "ctx": {"expected": "'pending', 'confirmed', 'shipped', 'delivered' or 'cancelled'"}
            }]})
        );
        // Path and body errors are reported together.
        let response = handle(request(3, &[("order_id", "x")], r#"{}"#));
        let detail = body(&response)["detail"].as_array().unwrap().clone();
        assert_eq!(detail.len(), 2);
        assert_eq!(detail[0]["loc"], json!(["path", "order_id"]));
        assert_eq!(detail[1]["loc"], json!(["body", "status"]));
    }

    #[test]
    fn invalid_ids_and_pages_are_422() {
        for index in [2, 4] {
            let response = handle(request(index, &[("order_id", "0")], ""));
            assert_eq!(response.status, 422);
            assert_eq!(
                body(&response)["detail"][0]["loc"],
                json!(["path", "order_id"])
            );
        }
        let mut list = request(1, &[], "");
        list.query = vec![("limit".into(), "500".into()), ("skip".into(), "-1".into())];
        let response = handle(list);
        assert_eq!(response.status, 422);
        assert_eq!(body(&response)["detail"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn service_errors_map_to_contract_statuses() {
        let cases = [
            (OrderError::NotFound, 404, "Order not found"),
            (
                OrderError::Forbidden,
                403,
                "Not authorized to access this order",
            ),
            (
                OrderError::AlreadyCancelled,
                409,
                "Order is already cancelled",
            ),
            (OrderError::ProductNotFound(7), 400, "Product 7 not found"),
            (
                OrderError::InsufficientStock(7),
                400,
                "Not enough stock for product 7",
            ),
            (
                OrderError::TotalTooLarge,
                400,
                "Order total must not exceed 99999999.99",
            ),
            (
                OrderError::Unauthorized,
                401,
                "Could not validate credentials",
            ),
            (
                OrderError::ProductServiceUnavailable("timeout".into()),
                503,
                "Product service unavailable",
            ),
            (
                OrderError::DatabaseUnavailable("refused".into()),
                503,
                "Database unavailable",
            ),
            (
                OrderError::Internal("SELECT secret".into()),
                500,
                "Internal Server Error",
            ),
        ];
        for (error, status, detail) in cases {
            let response = error_response(error);
            assert_eq!(response.status, status);
            assert_eq!(body(&response), json!({ "detail": detail }));
        }
        let response = error_response(OrderError::Unauthorized);
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer"));
    }
}
