//! The paths the host answers itself for every service: `/health`, `/`, `/openapi.json`,
//! `/docs` (and Swagger UI's files under `/docs/`) and `/metrics`.

use super::{detail, openapi, swagger_ui, ServiceHttp};
use crate::ingress::server::{json_response, HttpResponse};
use crate::runtime::routes::RESERVED_PATHS;
use crate::runtime::ComponentVersion;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;
use std::sync::Mutex;

/// The OpenAPI document of the serving version, rendered when first asked for.
#[derive(Default)]
pub struct OpenApiCache {
    rendered: Mutex<Option<(String, Bytes)>>,
}

impl OpenApiCache {
    fn document(&self, service: &str, version: &ComponentVersion) -> Bytes {
        let mut rendered = self.rendered.lock().expect("never poisoned");
        match &*rendered {
            Some((digest, document)) if digest == version.digest() => document.clone(),
            _ => {
                let document = openapi::document(service, version.short_digest(), &version.routes);
                let document = Bytes::from(
                    serde_json::to_vec_pretty(&document).expect("JSON of a JSON value"),
                );
                *rendered = Some((version.digest().to_string(), document.clone()));
                document
            }
        }
    }
}

fn with_content_type(body: Bytes, content_type: &'static str) -> HttpResponse {
    let mut response = http::Response::new(Full::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// The answer for a reserved path; `None` for any other.
pub fn answer(listener: &ServiceHttp, method: &Method, path: &str) -> Option<HttpResponse> {
    if !RESERVED_PATHS.contains(&path) {
        return None;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
        return Some(response);
    }
    if let Some((body, content_type)) = swagger_ui::asset(path) {
        let mut response = with_content_type(body, content_type);
        // The same files for every service and version: browsers may keep them a day.
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
        return Some(response);
    }
    let endpoint = &listener.endpoint;
    let name = endpoint.service.name();
    let version = endpoint.service.current.load();
    Some(match path {
        "/health" => {
            let mut body = json!({
                "status": "healthy",
                "service": name,
                "version": version.short_digest(),
                "component": {
                    "digest": version.digest(),
                    "deployed_at": version.record.deployed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "source": version.record.source.as_str(),
                },
            });
            if endpoint.consumers.any() {
                let subscriptions = &endpoint.service.service.config.subscriptions;
                body["rabbitmq"] = json!({
                    "status": if endpoint.consumers.all_connected() { "healthy" } else { "unavailable" },
                    "queues": subscriptions.iter().map(|s| s.queue.as_str()).collect::<Vec<_>>(),
                });
            }
            json_response(StatusCode::OK, &body)
        }
        "/" => json_response(
            StatusCode::OK,
            &json!({
                "message": format!("{name} service is running"),
                "service": name,
                "version": version.short_digest(),
                "docs": "/docs",
            }),
        ),
        "/openapi.json" => with_content_type(
            listener.openapi.document(name, &version),
            "application/json",
        ),
        "/docs" => {
            let mut response = with_content_type(
                Bytes::from(openapi::docs_page(name)),
                "text/html; charset=utf-8",
            );
            response.headers_mut().insert(
                http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(swagger_ui::CONTENT_SECURITY_POLICY),
            );
            response
        }
        "/metrics" => with_content_type(
            Bytes::from(
                endpoint.metrics.render(
                    endpoint
                        .service
                        .service
                        .admission
                        .running(endpoint.service.service.config.max_concurrent),
                    endpoint.service.service.config.max_concurrent,
                ),
            ),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => unreachable!("checked against RESERVED_PATHS"),
    })
}
