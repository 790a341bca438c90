//! The route table of one component version: method + path template -> route index.
//! Built once at load; matching a request is one radix-tree lookup.

use crate::bindings::http_types::{Method, Route};
use std::sync::Arc;

/// Why a component's route table was refused.
#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    #[error("route `{path}`: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("route `{method} {path}` is declared twice")]
    Duplicate { method: &'static str, path: String },
    #[error("route `{path}` shadows a path the host serves itself")]
    Reserved { path: String },
}

/// Paths the host answers for every service.
pub const RESERVED_PATHS: [&str; 8] = [
    "/health",
    "/",
    "/openapi.json",
    "/docs",
    "/docs/swagger-ui.css",
    "/docs/swagger-ui-bundle.js",
    "/docs/swagger-initializer.js",
    "/metrics",
];

#[derive(Default)]
pub struct RouteTable {
    paths: matchit::Router<usize>,
    /// Per path template: the methods declared for it and their route index.
    entries: Vec<PathEntry>,
}

struct PathEntry {
    /// Shared with every request's metrics label: cloning it allocates nothing.
    template: Arc<str>,
    methods: Vec<(Method, u32)>,
}

/// The outcome of matching a request.
pub enum RouteMatch<'a> {
    Found {
        route_index: u32,
        template: &'a Arc<str>,
        params: Vec<(String, String)>,
    },
    /// The path exists but not with this method; carries the allowed methods.
    MethodNotAllowed {
        template: &'a Arc<str>,
        allowed: Vec<Method>,
    },
    NotFound,
}

impl RouteTable {
    pub fn build(routes: &[Route]) -> Result<RouteTable, RouteTableError> {
        let mut table = RouteTable::default();
        for (index, route) in routes.iter().enumerate() {
            if RESERVED_PATHS.contains(&route.path.as_str()) {
                return Err(RouteTableError::Reserved {
                    path: route.path.clone(),
                });
            }
            if !route.path.starts_with('/') {
                return Err(RouteTableError::InvalidPath {
                    path: route.path.clone(),
                    reason: "a path must start with `/`".into(),
                });
            }
            let entry = match table
                .entries
                .iter()
                .position(|e| *e.template == *route.path)
            {
                Some(existing) => existing,
                None => {
                    table
                        .paths
                        .insert(route.path.clone(), table.entries.len())
                        .map_err(|error| RouteTableError::InvalidPath {
                            path: route.path.clone(),
                            reason: error.to_string(),
                        })?;
                    table.entries.push(PathEntry {
                        template: Arc::from(route.path.as_str()),
                        methods: Vec::new(),
                    });
                    table.entries.len() - 1
                }
            };
            let methods = &mut table.entries[entry].methods;
            if methods.iter().any(|(method, _)| *method == route.method) {
                return Err(RouteTableError::Duplicate {
                    method: method_name(route.method),
                    path: route.path.clone(),
                });
            }
            methods.push((route.method, index as u32));
        }
        Ok(table)
    }

    pub fn lookup(&self, method: &http::Method, path: &str) -> RouteMatch<'_> {
        let Ok(matched) = self.paths.at(path) else {
            return RouteMatch::NotFound;
        };
        let entry = &self.entries[*matched.value];
        let wanted = from_http(method);
        match entry.methods.iter().find(|(m, _)| Some(*m) == wanted) {
            Some((_, route_index)) => RouteMatch::Found {
                route_index: *route_index,
                template: &entry.template,
                params: matched
                    .params
                    .iter()
                    .map(|(name, value)| (name.to_string(), percent_decode(value)))
                    .collect(),
            },
            None => RouteMatch::MethodNotAllowed {
                template: &entry.template,
                allowed: entry.methods.iter().map(|(m, _)| *m).collect(),
            },
        }
    }
}

fn percent_decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn from_http(method: &http::Method) -> Option<Method> {
    Some(match *method {
        http::Method::GET => Method::Get,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::PATCH => Method::Patch,
        http::Method::DELETE => Method::Delete,
        _ => return None,
    })
}

pub fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Route {
        Route {
            method,
            path: path.into(),
            requires_auth: false,
            summary: String::new(),
            description: String::new(),
            tags: Vec::new(),
            success_status: 200,
            response_schema: None,
            errors: Vec::new(),
            request_schema: None,
        }
    }

    #[test]
    fn matches_templates_and_reports_allowed_methods() {
        let table = RouteTable::build(&[
            route(Method::Get, "/products"),
            route(Method::Get, "/products/{product_id}"),
            route(Method::Put, "/products/{product_id}"),
            route(Method::Post, "/products/{product_id}/reserve"),
        ])
        .unwrap();
        match table.lookup(&http::Method::PUT, "/products/a%20b") {
            RouteMatch::Found {
                route_index,
                template,
                params,
            } => {
                assert_eq!(route_index, 2);
                assert_eq!(&**template, "/products/{product_id}");
                assert_eq!(params, vec![("product_id".to_string(), "a b".to_string())]);
            }
            _ => panic!("expected a match"),
        }
        match table.lookup(&http::Method::DELETE, "/products/1") {
            RouteMatch::MethodNotAllowed { allowed, .. } => {
                assert_eq!(allowed, vec![Method::Get, Method::Put])
            }
            _ => panic!("expected 405"),
        }
        assert!(matches!(
            table.lookup(&http::Method::GET, "/nope"),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            table.lookup(&http::Method::GET, "/products/1/reserve"),
            RouteMatch::MethodNotAllowed { .. }
        ));
    }

    #[test]
    fn refuses_duplicates_and_reserved_paths() {
        assert!(matches!(
            RouteTable::build(&[route(Method::Get, "/a"), route(Method::Get, "/a")]),
            Err(RouteTableError::Duplicate { .. })
        ));
        assert!(matches!(
            RouteTable::build(&[route(Method::Get, "/health")]),
            Err(RouteTableError::Reserved { .. })
        ));
        assert!(matches!(
            RouteTable::build(&[route(Method::Get, "relative")]),
            Err(RouteTableError::InvalidPath { .. })
        ));
    }
}
