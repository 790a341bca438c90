//! CORS: the allowed origins of `[host] cors_origins` on every answer, and preflights.

use super::HttpSettings;
use crate::ingress::server::HttpResponse;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, StatusCode};
use http_body_util::Full;

/// Adds the CORS headers an answer to `origin` carries.
pub fn add_headers(settings: &HttpSettings, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
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

/// Answers a CORS preflight (or a plain OPTIONS) for any path.
pub fn preflight(request_headers: &HeaderMap) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    let requested = request_headers
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
