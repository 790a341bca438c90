//! A service's route table, declared once as a list of (route, handler) pairs: the
//! component exports [`RouteTable::routes`] and [`RouteTable::handle`] from the same list,
//! so the route index the host passes back always selects the handler of the route it
//! matched, in every service alike.
//!
//! ```ignore
//! pub const ROUTES: RouteTable = RouteTable::new(&[
//!     Endpoint::public(list_products_route, list_products),
//!     Endpoint::authenticated(create_product_route, create_product),
//! ]);
//! ```

use crate::http::{self, Identity, Request, Response, Route};

/// What a handler answers: the response, or an early one (a 422, a 404...) with `?`.
pub type Answer = Result<Response, Response>;

/// How an endpoint is called: with the request only, or with the caller the host
/// authenticated as well.
#[derive(Clone, Copy)]
pub enum Handler {
    Public(fn(&Request) -> Answer),
    Authenticated(fn(&Request, &Identity) -> Answer),
}

/// One route and the function that answers it.
pub struct Endpoint {
    route: fn() -> Route,
    handler: Handler,
}

impl Endpoint {
    /// A route anyone may call.
    pub const fn public(route: fn() -> Route, handler: fn(&Request) -> Answer) -> Endpoint {
        Endpoint {
            route,
            handler: Handler::Public(handler),
        }
    }

    /// A route the host authenticates before the handler runs; the handler gets the caller.
    pub const fn authenticated(
        route: fn() -> Route,
        handler: fn(&Request, &Identity) -> Answer,
    ) -> Endpoint {
        Endpoint {
            route,
            handler: Handler::Authenticated(handler),
        }
    }

    /// The route declaration, its `requires_auth` set by the kind of handler.
    pub fn route(&self) -> Route {
        let mut route = (self.route)();
        route.requires_auth = matches!(self.handler, Handler::Authenticated(_));
        route
    }
}

/// A service's endpoints, in route-table order.
pub struct RouteTable(&'static [Endpoint]);

impl RouteTable {
    pub const fn new(endpoints: &'static [Endpoint]) -> RouteTable {
        RouteTable(endpoints)
    }

    /// The routes, for the host's router and OpenAPI document.
    pub fn routes(&self) -> Vec<Route> {
        self.0.iter().map(Endpoint::route).collect()
    }

    /// The endpoints, in route-table order (tests look a route up by its path).
    pub fn endpoints(&self) -> &'static [Endpoint] {
        self.0
    }

    /// Runs the handler of the route the host matched. An index this table never declared,
    /// or an authenticated route without a caller, means the host and the component
    /// disagree: 500, with the reason in the host's log.
    pub fn handle(&self, request: &Request) -> Response {
        let Some(endpoint) = self.0.get(request.route_index as usize) else {
            return http::internal_error(&format!(
                "route index {} out of range ({} routes)",
                request.route_index,
                self.0.len()
            ));
        };
        let answer = match endpoint.handler {
            Handler::Public(handler) => handler(request),
            Handler::Authenticated(handler) => match request.caller() {
                Some(caller) => handler(request, caller),
                None => {
                    return http::internal_error(&format!(
                        "route {} requires authentication and the host passed no caller",
                        request.route_index
                    ))
                }
            },
        };
        answer.unwrap_or_else(|response| response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{json, route, Method};

    fn public_route() -> Route {
        route(Method::Get, "/public").build()
    }
    fn private_route() -> Route {
        route(Method::Get, "/private").build()
    }
    fn public(_: &Request) -> Answer {
        Ok(json(200, &"public"))
    }
    fn private(_: &Request, caller: &Identity) -> Answer {
        if caller.user_id == 0 {
            return Err(json(400, &"no user 0"));
        }
        Ok(json(200, &caller.username))
    }

    const TABLE: RouteTable = RouteTable::new(&[
        Endpoint::public(public_route, public),
        Endpoint::authenticated(private_route, private),
    ]);

    fn request(route_index: u32, caller: Option<(i64, &str)>) -> Request {
        Request {
            route_index,
            method: Method::Get,
            path: String::new(),
            params: Vec::new(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            caller: caller.map(|(user_id, username)| Identity {
                user_id,
                username: username.into(),
            }),
            request_id: "test".into(),
        }
    }

    #[test]
    fn routes_say_which_need_authentication() {
        let routes = TABLE.routes();
        assert_eq!(routes[0].path, "/public");
        assert!(!routes[0].requires_auth);
        assert!(routes[1].requires_auth);
    }

    #[test]
    fn the_index_selects_the_handler_and_early_answers_are_answers() {
        assert_eq!(TABLE.handle(&request(0, None)).body, b"\"public\"");
        assert_eq!(
            TABLE.handle(&request(1, Some((7, "alice")))).body,
            b"\"alice\""
        );
        assert_eq!(TABLE.handle(&request(1, Some((0, "nobody")))).status, 400);
    }
}
