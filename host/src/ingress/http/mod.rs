//! One HTTP listener per service port. The host implements every convention of the
//! contract here, for all services alike: request ids, CORS, the body limit, 404 / 405,
//! authentication, FastAPI-shaped errors, metrics, `/health`, `/`, `/openapi.json`,
//! `/docs` and `/metrics`. Only a matched, authenticated request reaches a component.

pub mod openapi;
pub mod router;

use super::metrics::ServiceMetrics;
use crate::bindings::auth::AuthError;
use crate::bindings::http_types::{Request as GuestRequest, Response as GuestResponse};
use crate::runtime::{CallError, DeployedService};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use router::{method_name, RouteMatch};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type HttpResponse = http::Response<Full<Bytes>>;

/// Host-wide HTTP settings.
#[derive(Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
}

/// What one listener serves: a service and its metrics.
pub struct ServiceEndpoint {
    pub service: Arc<DeployedService>,
    pub metrics: Arc<ServiceMetrics>,
    pub settings: HttpSettings,
}

/// Accepts connections on `listener` until `shutdown` fires, then lets the connections
/// finish the requests they are serving.
pub async fn serve(
    endpoint: Arc<ServiceEndpoint>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, _) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(service = %endpoint.service.name, %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&endpoint, request).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Handles one request end to end and records it in the metrics.
pub async fn handle(endpoint: &ServiceEndpoint, request: http::Request<Incoming>) -> HttpResponse {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let origin = request.headers().get(http::header::ORIGIN).cloned();
    let method = request.method().clone();
    let (mut response, handler) = route(endpoint, request, &request_id).await;

    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(&request_id).expect("request ids are printable ASCII"),
    );
    cors_headers(&endpoint.settings, origin.as_ref(), headers);
    endpoint.metrics.observe(
        &handler,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The request's own id when it is 1-128 printable ASCII characters, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn cors_headers(settings: &HttpSettings, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    let allow_any = settings.cors_origins.iter().any(|o| o == "*");
    let allowed = match origin {
        _ if allow_any => Some(HeaderValue::from_static("*")),
        Some(origin)
            if settings
                .cors_origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes()) =>
        {
            headers.insert(http::header::VARY, HeaderValue::from_static("Origin"));
            Some(origin.clone())
        }
        _ => None,
    };
    if let Some(allowed) = allowed {
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id"),
        );
    }
}

/// A JSON response.
fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).expect("JSON of a JSON value"),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn detail(status: StatusCode, message: &str) -> HttpResponse {
    json_response(status, &json!({ "detail": message }))
}

fn unauthorized(message: &str) -> HttpResponse {
    let mut response = detail(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    response
}

/// Routes the request; returns the response and the `handler` label for the metrics.
async fn route(
    endpoint: &ServiceEndpoint,
    request: http::Request<Incoming>,
    request_id: &str,
) -> (HttpResponse, String) {
    let service = &endpoint.service;
    let path = request.uri().path().to_string();
    let method = request.method().clone();

    if method == Method::OPTIONS {
        return (preflight(&request), path_label(service, &path));
    }
    if let Some(response) = builtin(endpoint, &method, &path) {
        return (response, path);
    }

    // One atomic load: this request runs to its end on the version it saw here.
    let version = service.current.load_full();
    let (route_index, template, params) = match version.router.lookup(&method, &path) {
        RouteMatch::Found {
            route_index,
            template,
            params,
        } => (route_index, template.to_string(), params),
        RouteMatch::MethodNotAllowed { template, allowed } => {
            let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            let allow = allowed
                .iter()
                .map(|m| method_name(*m))
                .collect::<Vec<_>>()
                .join(", ");
            response.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_str(&allow).expect("method names are valid header values"),
            );
            return (response, template.to_string());
        }
        RouteMatch::NotFound => return (detail(StatusCode::NOT_FOUND, "Not Found"), "none".into()),
    };
    let route = &version.routes[route_index as usize];

    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body, endpoint.settings.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return (response, template),
    };

    let caller = if route.requires_auth {
        let Some(token) = bearer_token(&parts.headers) else {
            return (unauthorized("Not authenticated"), template);
        };
        match service.capabilities.auth.validate(token).await {
            Ok(identity) => Some(identity),
            Err(AuthError::Invalid(_)) => {
                return (unauthorized("Could not validate credentials"), template)
            }
            Err(AuthError::Unavailable(cause)) => {
                tracing::error!(service = %service.name, request_id, %cause, "token validation unavailable");
                return (
                    detail(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Authentication service unavailable",
                    ),
                    template,
                );
            }
        }
    } else {
        None
    };

    let guest_request = GuestRequest {
        route_index,
        method: route.method,
        path,
        params,
        query: query_pairs(parts.uri.query()),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_string(), v.to_string()))
            })
            .collect(),
        body: body.to_vec(),
        caller,
        request_id: request_id.to_string(),
    };
    let response = match version
        .handle_request(&service.capabilities, &service.limits, guest_request)
        .await
    {
        Ok(response) => guest_response(response),
        Err(error) => {
            tracing::error!(service = %service.name, request_id, route = %template, %error, "request failed");
            match error {
                CallError::Instantiate(_) => detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service at capacity, retry later",
                ),
                CallError::Trap(_) | CallError::Timeout(_) => {
                    detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                }
            }
        }
    };
    version.count_request(response.status().is_server_error());
    (response, template)
}

fn path_label(service: &DeployedService, path: &str) -> String {
    match service.current.load().router.lookup(&Method::GET, path) {
        RouteMatch::Found { template, .. } | RouteMatch::MethodNotAllowed { template, .. } => {
            template.to_string()
        }
        RouteMatch::NotFound => "none".into(),
    }
}

/// Reads the body up to `limit`; 413 beyond it (announced or actual).
async fn read_body(
    headers: &HeaderMap,
    mut body: Incoming,
    limit: usize,
) -> Result<Bytes, HttpResponse> {
    let too_large = || {
        let mut response = detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
        // The rest of the body is not read, so the connection cannot carry another request.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let announced = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        drain(body).await;
        return Err(too_large());
    }
    // Kept as received: a body of one frame (the usual case) is not copied.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(detail(
                StatusCode::BAD_REQUEST,
                "Could not read the request body",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        length += data.len();
        if length > limit {
            drain(body).await;
            return Err(too_large());
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Most of a refused body read and dropped before the 413 goes out; beyond it, the
/// connection closes on a client still sending.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a refused body (bounded in bytes and time), so that a
/// client still writing it gets to read the 413 instead of a broken connection.
async fn drain(body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, Limited::new(body, DRAIN_BYTES).collect()).await;
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn guest_response(response: GuestResponse) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let has_body = !response.body.is_empty();
    let mut http_response = http::Response::new(Full::new(Bytes::from(response.body)));
    *http_response.status_mut() = status;
    let headers = http_response.headers_mut();
    for (name, value) in response.headers {
        // Framing headers are the host's business; a component cannot corrupt the stream.
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    if has_body && !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    http_response
}

/// Answers a CORS preflight (or a plain OPTIONS) for any path.
fn preflight(request: &http::Request<Incoming>) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    let requested = request
        .headers()
        .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type, x-request-id"));
    headers.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    headers.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// The paths the host serves itself for every service.
fn builtin(endpoint: &ServiceEndpoint, method: &Method, path: &str) -> Option<HttpResponse> {
    if !router::RESERVED_PATHS.contains(&path) {
        return None;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
        return Some(response);
    }
    let service = &endpoint.service;
    let version = service.current.load();
    Some(match path {
        "/health" => {
            let mut body = json!({
                "status": "healthy",
                "service": service.name,
                "version": version.short_digest(),
                "component": { "digest": version.digest(), "deployed_at": version.record.deployed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "source": version.record.source.as_str() },
            });
            if !service.config.subscriptions.is_empty() {
                let connected = service.broker_connected.load(Ordering::Relaxed);
                body["rabbitmq"] = json!({
                    "status": if connected { "healthy" } else { "unavailable" },
                    "queues": service.config.subscriptions.iter().map(|s| s.queue.as_str()).collect::<Vec<_>>(),
                });
            }
            json_response(StatusCode::OK, &body)
        }
        "/" => json_response(
            StatusCode::OK,
            &json!({
                "message": format!("{} service is running", service.name),
                "service": service.name,
                "version": version.short_digest(),
                "docs": "/docs",
            }),
        ),
        "/openapi.json" => {
            let mut response = http::Response::new(Full::new(version.openapi.clone()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        "/docs" => {
            let mut response =
                http::Response::new(Full::new(Bytes::from(openapi::docs_page(&service.name))));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        "/metrics" => {
            let mut response =
                http::Response::new(Full::new(Bytes::from(endpoint.metrics.render())));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => unreachable!("checked against RESERVED_PATHS"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_printable_and_short() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_ne!(request_id(&headers).len(), 129);
        headers.insert(
            "x-request-id",
            HeaderValue::from_bytes(b"bad\xffid").unwrap(),
        );
        assert_ne!(request_id(&headers), "bad\u{ff}id");
    }

    #[test]
    fn bearer_tokens_need_the_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            query_pairs(Some("skip=1&name=a%20b+c")),
            vec![("skip".into(), "1".into()), ("name".into(), "a b c".into())]
        );
    }
}
