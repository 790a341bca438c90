//! One HTTP listener per service port. The host implements every convention of the
//! contract here, for all services alike: request ids, CORS ([`cors`]), the body limit,
//! 404 / 405, authentication, FastAPI-shaped errors, metrics, and the paths it answers
//! itself ([`builtin`]: `/health`, `/`, `/openapi.json`, `/docs`, `/metrics`). Only a
//! matched, authenticated request reaches a component ([`convert`] builds what it gets).

mod builtin;
mod convert;
mod cors;
pub mod openapi;
mod swagger_ui;

use super::server::{json_response, Handler, HttpResponse};
use super::ServiceEndpoint;
use crate::backends::http_client::LocalService;
use crate::backends::token_validator::{
    bearer_token, TokenValidator, ValidateTokenError, ValidatedToken,
};
use crate::bindings::http_types::Identity;
use crate::runtime::routes::{method_name, RouteMatch};
use crate::runtime::{CallError, ComponentVersion};
use crate::telemetry::{Attribute, Trace};
use bytes::Bytes;
use convert::RequestBody;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Host-wide HTTP settings.
#[derive(Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
}

/// What one service's listener serves.
pub struct ServiceHttp {
    pub endpoint: Arc<ServiceEndpoint>,
    pub settings: HttpSettings,
    /// Validates the bearer tokens of routes that require authentication.
    pub tokens: Arc<TokenValidator>,
    openapi: builtin::OpenApiCache,
}

impl ServiceHttp {
    pub fn new(
        endpoint: Arc<ServiceEndpoint>,
        settings: HttpSettings,
        tokens: Arc<TokenValidator>,
    ) -> ServiceHttp {
        ServiceHttp {
            endpoint,
            settings,
            tokens,
            openapi: builtin::OpenApiCache::default(),
        }
    }
}

impl Handler for ServiceHttp {
    async fn handle(&self, request: http::Request<Incoming>) -> HttpResponse {
        self.respond(request).await
    }
}

/// A request from another service of this host, through its outgoing HTTP or token
/// validation: the same handling as from the network, without the socket.
impl LocalService for ServiceHttp {
    fn answer(
        self: Arc<Self>,
        request: http::Request<Full<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        Box::pin(async move {
            self.endpoint.metrics.count_in_process();
            self.respond(request).await
        })
    }
}

impl ServiceHttp {
    /// Handles one request end to end and records it in the metrics.
    async fn respond<B: RequestBody>(&self, request: http::Request<B>) -> HttpResponse {
        let started = Instant::now();
        let request_id = convert::request_id(request.headers());
        let origin = request.headers().get(http::header::ORIGIN).cloned();
        let method = request.method().clone();
        // One atomic load: this request runs to its end on the version it saw here, and its
        // metrics and span name that version.
        let version = self.endpoint.service.version_for_request();
        let trace = self.endpoint.tracer.server(
            request.headers(),
            || method.to_string(),
            || {
                vec![
                    Attribute::new("http.request.method", method.to_string()),
                    Attribute::new("url.path", request.uri().path().to_string()),
                    Attribute::new(
                        "server.port",
                        i64::from(self.endpoint.service.service.config.port),
                    ),
                    Attribute::new("platform.request_id", request_id.clone()),
                    Attribute::new("service.version", version.short_digest().to_string()),
                ]
            },
        );
        let log_span = trace
            .as_ref()
            .map_or_else(tracing::Span::none, Trace::log_span);
        let (mut response, handler) = self
            .route(request, &request_id, &version, trace.as_ref())
            .instrument(log_span)
            .await;
        if let Some(trace) = trace.filter(Trace::is_recording) {
            let status = response.status();
            // An unmatched path has no route: the span keeps the method as its name.
            if &*handler != "none" {
                trace.rename(format!("{method} {handler}"));
                trace.set(Attribute::new("http.route", handler.to_string()));
            }
            trace.set(Attribute::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                trace.fail(status.to_string());
            }
            trace.end();
        }

        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_str(&request_id).expect("request ids are printable ASCII"),
        );
        cors::add_headers(&self.settings, origin.as_ref(), headers);
        let took = started.elapsed();
        self.endpoint.metrics.observe(
            &handler,
            &method,
            version.short_digest(),
            response.status().as_u16(),
            took,
        );
        self.endpoint
            .service
            .count_for_canary(&version, response.status().is_server_error(), took);
        response
    }
}

/// A FastAPI-shaped error.
fn detail(status: StatusCode, message: &str) -> HttpResponse {
    json_response(status, &json!({ "detail": message }))
}

/// How long a shed client should wait before it retries.
const RETRY_AFTER_SECONDS: &str = "1";

/// 503 for a service at its limits: retry after a second.
fn overloaded_response() -> HttpResponse {
    let mut response = detail(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service overloaded, retry later",
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

fn unauthorized(message: &str) -> HttpResponse {
    let mut response = detail(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    response
}

/// The check of the request's bearer token made by the request of this host it comes from
/// (see [`ValidatedToken`]), if it carries one and the token is the one checked.
fn checked_upstream(request: &http::request::Parts) -> Option<&Arc<ValidatedToken>> {
    let upstream = request.extensions.get::<Arc<ValidatedToken>>()?;
    let token = bearer_token(&request.headers)?;
    upstream.caller_of(token).map(|_| upstream)
}

impl ServiceHttp {
    /// Routes the request; returns the response and the `handler` label for the metrics.
    async fn route<B: RequestBody>(
        &self,
        request: http::Request<B>,
        request_id: &str,
        version: &Arc<ComponentVersion>,
        trace: Option<&Trace>,
    ) -> (HttpResponse, Arc<str>) {
        let deployed = &self.endpoint.service;
        let method = request.method().clone();

        if method == Method::OPTIONS {
            let label = self.path_label(request.uri().path());
            return (cors::preflight(request.headers()), label);
        }
        if let Some(response) = builtin::answer(self, &method, request.uri().path()) {
            return (response, Arc::from(request.uri().path()));
        }

        let (route_index, template, params) =
            match version.route_table.lookup(&method, request.uri().path()) {
                RouteMatch::Found {
                    route_index,
                    template,
                    params,
                } => (route_index, template.clone(), params),
                RouteMatch::MethodNotAllowed { template, allowed } => {
                    let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
                    let allow = allowed
                        .iter()
                        .map(|m| method_name(*m))
                        .collect::<Vec<_>>()
                        .join(", ");
                    response.headers_mut().insert(
                        http::header::ALLOW,
                        HeaderValue::from_str(&allow)
                            .expect("method names are valid header values"),
                    );
                    return (response, template.clone());
                }
                RouteMatch::NotFound => {
                    return (
                        detail(StatusCode::NOT_FOUND, "Not Found"),
                        Arc::from("none"),
                    )
                }
            };
        let route = &version.routes[route_index as usize];

        let (parts, body) = request.into_parts();
        let body =
            match convert::read_body(&parts.headers, body, self.settings.max_body_bytes).await {
                Ok(body) => body,
                Err(response) => return (response, template),
            };

        let validated = if route.requires_auth {
            match self.authenticate(&parts, request_id, trace).await {
                Ok(validated) => Some(validated),
                Err(response) => return (response, template),
            }
        } else {
            checked_upstream(&parts).cloned()
        };

        let matched = convert::Matched {
            route_index,
            method: route.method,
            params,
            // Only a route that requires authentication names its caller to the component;
            // another one still passes an upstream check on to the calls it makes.
            caller: validated
                .as_ref()
                .filter(|_| route.requires_auth)
                .map(|validated| Identity {
                    user_id: validated.caller.user_id,
                    username: validated.caller.username.clone(),
                }),
        };
        let guest_request = convert::guest_request(&parts, body, matched, request_id);
        let response = match version
            .handle_request(&deployed.service, guest_request, validated, trace.cloned())
            .await
        {
            Ok(response) => convert::guest_response(response),
            Err(CallError::Overloaded(overloaded)) => {
                if self.endpoint.metrics.observe_shed(&overloaded) {
                    tracing::warn!(service = %deployed.name(), route = %template, reason = %overloaded, "shedding load: requests answered 503 (logged once a second)");
                }
                overloaded_response()
            }
            Err(error) => {
                tracing::error!(service = %deployed.name(), request_id, route = %template, %error, "request failed");
                match error {
                    CallError::Instantiate(_) => overloaded_response(),
                    _ => detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                }
            }
        };
        self.endpoint
            .metrics
            .count_request(version.digest(), response.status().is_server_error());
        (response, template)
    }

    /// The caller behind the request's bearer token, or the answer that refuses it.
    async fn authenticate(
        &self,
        request: &http::request::Parts,
        request_id: &str,
        trace: Option<&Trace>,
    ) -> Result<Arc<ValidatedToken>, HttpResponse> {
        let Some(token) = bearer_token(&request.headers) else {
            return Err(unauthorized("Not authenticated"));
        };
        if let Some(upstream) = checked_upstream(request) {
            if let Some(trace) = trace {
                trace.set(Attribute::new("platform.token.checked_upstream", true));
            }
            return Ok(upstream.clone());
        }
        match self.tokens.validate(token, request_id, trace).await {
            Ok(caller) => Ok(Arc::new(ValidatedToken {
                token: token.to_string(),
                caller,
            })),
            Err(ValidateTokenError::Invalid(_)) => {
                Err(unauthorized("Could not validate credentials"))
            }
            Err(ValidateTokenError::Unavailable(cause)) => {
                tracing::error!(service = %self.endpoint.service.name(), request_id, %cause, "token validation unavailable");
                Err(detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Authentication service unavailable",
                ))
            }
        }
    }

    fn path_label(&self, path: &str) -> Arc<str> {
        let version = self.endpoint.service.current.load();
        match version.route_table.lookup(&Method::GET, path) {
            RouteMatch::Found { template, .. } | RouteMatch::MethodNotAllowed { template, .. } => {
                template.clone()
            }
            RouteMatch::NotFound => Arc::from("none"),
        }
    }
}
