//! The route table and the HTTP <-> service mapping.
//!
//! [`ROUTES`] is the one list both `routes()` and `handle()` read (see
//! `platform_guest::dispatch`), so the index the host passes back always names the route
//! it was declared for.

use crate::repository::{Database, StoreError};
use crate::service;
use platform_guest::dispatch::{Answer, Endpoint, RouteTable};
use platform_guest::http::{self, route, Identity, Method, Request, Response, Route};
use platform_guest::pagination::Page;
use serde_json::json;

/// The route table: `routes()` and `handle()` both read it.
pub const ROUTES: RouteTable = RouteTable::new(&[Endpoint::authenticated(
    list_notifications_route,
    list_notifications,
)]);

fn list_notifications_route() -> Route {
    route(Method::Get, "/notifications")
        .authenticated()
        .summary("List my notifications")
        .description(
            "The caller's notifications, newest first: one per order event \
             (`order.created`, `order.cancelled`) the service consumed. \
             Paginated with `skip` (>= 0, default 0) and `limit` (1..=100, default 100).",
        )
        .tag("notifications")
        .status(200)
        .response_schema(json!({
            "type": "array",
            "items": {
                "title": "Notification",
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "user_id": {"type": "integer"},
                    "order_id": {"type": "integer"},
                    "event": {"type": "string", "enum": ["order.created", "order.cancelled"]},
                    "message": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"}
                },
                "required": ["id", "user_id", "order_id", "event", "message", "created_at"]
            }
        }))
        .build()
}

/// `GET /notifications`
fn list_notifications(request: &Request, caller: &Identity) -> Answer {
    let page = Page::from_request(request).map_err(|errors| http::validation_error(&errors))?;
    let notifications =
        service::list_notifications(&Database, caller.user_id, page).map_err(repository_error)?;
    Ok(http::json(200, &notifications))
}

fn repository_error(error: StoreError) -> Response {
    match error {
        StoreError::Unavailable(cause) => http::unavailable("Database", &cause),
        StoreError::Internal(cause) => http::internal_error(&format!("database error: {cause}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(request: &Request) -> Response {
        ROUTES.handle(request)
    }

    fn request(index: u32, query: &[(&str, &str)], caller: bool) -> Request {
        Request {
            route_index: index,
            method: Method::Get,
            path: "/notifications".into(),
            params: Vec::new(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: Vec::new(),
            body: Vec::new(),
            caller: caller.then(|| Identity {
                user_id: 7,
                username: "alice".into(),
            }),
            request_id: "r".into(),
        }
    }

    #[test]
    fn the_route_table_is_documented() {
        let routes = ROUTES.routes();
        assert_eq!(routes.len(), 1);
        let list = &routes[0];
        assert!(matches!(list.method, Method::Get));
        assert_eq!(list.path, "/notifications");
        assert!(list.requires_auth);
        assert_eq!(list.tags, ["notifications"]);
        assert_eq!(list.success_status, 200);
        assert!(!list.summary.is_empty());
        assert!(list.request_schema.is_none());
    }

    #[test]
    fn bad_pagination_is_422() {
        for query in [
            [("limit", "0")],
            [("limit", "101")],
            [("skip", "-1")],
            [("skip", "x")],
        ] {
            let response = handle(&request(0, &query, true));
            assert_eq!(response.status, 422);
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["detail"][0]["loc"][0], "query");
        }
    }
}
