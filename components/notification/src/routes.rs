//! The route table and the HTTP <-> service mapping.
//!
//! [`Endpoint::ALL`] is the one list both `routes()` and `handle()` read, so the index the
//! host passes back always names the route it was declared for.

use crate::repository::{Database, StoreError};
use crate::service;
use platform_guest::http::{self, route, Method, Request, Response, Route};
use platform_guest::pagination::Page;

/// Every route of the service, in the order `routes()` declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListNotifications,
}

impl Endpoint {
    pub const ALL: [Endpoint; 1] = [Endpoint::ListNotifications];

    /// The route declaration the host builds its router and OpenAPI document from.
    pub fn route(self) -> Route {
        match self {
            Endpoint::ListNotifications => route(Method::Get, "/notifications")
                .authenticated()
                .summary("List my notifications")
                .description(
                    "The caller's notifications, newest first: one per order event \
                     (`order.created`, `order.cancelled`) the service consumed. \
                     Paginated with `skip` (>= 0, default 0) and `limit` (1..=100, default 100).",
                )
                .tag("notifications")
                .status(200)
                .build(),
        }
    }

    pub fn handle(self, request: &Request) -> Response {
        match self {
            Endpoint::ListNotifications => list_notifications(request),
        }
    }

    /// The endpoint behind a route index the host passed.
    pub fn from_index(index: u32) -> Option<Endpoint> {
        Self::ALL.get(usize::try_from(index).ok()?).copied()
    }
}

/// The route table.
pub fn routes() -> Vec<Route> {
    Endpoint::ALL
        .iter()
        .map(|endpoint| endpoint.route())
        .collect()
}

/// Dispatches a request the host matched against [`routes`].
pub fn handle(request: &Request) -> Response {
    match Endpoint::from_index(request.route_index) {
        Some(endpoint) => endpoint.handle(request),
        None => http::internal_error(&format!(
            "route index {} out of range ({} routes)",
            request.route_index,
            Endpoint::ALL.len()
        )),
    }
}

/// `GET /notifications`
fn list_notifications(request: &Request) -> Response {
    let Some(caller) = request.caller() else {
        return not_authenticated();
    };
    let page = match Page::from_request(request) {
        Ok(page) => page,
        Err(errors) => return http::validation_error(&errors),
    };
    match service::list_notifications(&Database, caller.user_id, page) {
        Ok(notifications) => http::json(200, &notifications),
        Err(error) => repository_error(error),
    }
}

fn repository_error(error: StoreError) -> Response {
    match error {
        StoreError::Unavailable(cause) => http::unavailable("Database", &cause),
        StoreError::Internal(cause) => http::internal_error(&format!("database error: {cause}")),
    }
}

/// The host answers 401 before an authenticated route runs; this only guards against a
/// host that did not.
fn not_authenticated() -> Response {
    let mut response = http::error(401, "Not authenticated");
    response
        .headers
        .push(("www-authenticate".into(), "Bearer".into()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_guest::http::Identity;

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
        let routes = routes();
        assert_eq!(routes.len(), Endpoint::ALL.len());
        let list = &routes[0];
        assert!(matches!(list.method, Method::Get));
        assert_eq!(list.path, "/notifications");
        assert!(list.requires_auth);
        assert_eq!(list.tags, ["notifications"]);
        assert_eq!(list.success_status, 200);
        assert!(!list.summary.is_empty());
        assert!(list.request_schema.is_none());
        for (index, endpoint) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(Endpoint::from_index(index as u32), Some(*endpoint));
        }
        assert_eq!(Endpoint::from_index(Endpoint::ALL.len() as u32), None);
    }

    #[test]
    fn a_missing_caller_is_401() {
        let response = handle(&request(0, &[], false));
        assert_eq!(response.status, 401);
        assert!(response
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == "Bearer"));
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
