//! The `outgoing-http` interface: buffered HTTP calls to the hosts a service was allowed
//! (`allowed_hosts`).

use super::{ended, granted, CallState, Failure, Grant, GrantError, ServiceCapabilities};
use crate::backends::http_client::{HttpClient, HttpClientError};
use crate::backends::token_validator::bearer_token;
use crate::bindings::http_types::Method;
use crate::bindings::outgoing_http::{Host, IncomingResponse, OutgoingRequest, RequestError};
use crate::telemetry::{Attribute, Kind};
use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;

const INTERFACE: &str = "outgoing-http";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body a component can receive.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.outgoing_http = Some(OutgoingHttp {
        client: grant.backends.http_client.clone(),
        allowed_hosts: grant.config.allowed_hosts.clone(),
    });
    Ok(())
}

/// One service's outgoing HTTP: the shared client and its allowed `host:port` list.
#[derive(Clone)]
pub struct OutgoingHttp {
    pub client: HttpClient,
    pub allowed_hosts: Vec<String>,
}

/// An outgoing request's failure: a `request-error` for the guest, or a trap.
pub type RequestFailure = Failure<RequestError>;

impl From<HttpClientError> for RequestFailure {
    fn from(error: HttpClientError) -> Self {
        Failure::Error(match error {
            HttpClientError::Timeout => RequestError::Timeout,
            other => RequestError::Unavailable(other.to_string()),
        })
    }
}

impl OutgoingHttp {
    /// The request as the client sends it, once its target is checked against the
    /// allow-list.
    fn checked(
        &self,
        request: OutgoingRequest,
        request_id: &str,
    ) -> Result<http::Request<Full<Bytes>>, RequestError> {
        let uri: http::Uri = request
            .url
            .parse()
            .map_err(|error: http::uri::InvalidUri| RequestError::InvalidUrl(error.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(RequestError::InvalidUrl(format!(
                "`{}` is not an http:// URL",
                request.url
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| RequestError::InvalidUrl(format!("`{}` has no host", request.url)))?;
        let target = match authority.port_u16() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => format!("{}:80", authority.host()),
        };
        if !self
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == &target || allowed == authority.as_str())
        {
            return Err(RequestError::NotAllowed(format!(
                "`{target}` is not in this service's allowed_hosts"
            )));
        }
        let mut builder = http::Request::builder()
            .method(method(request.method))
            .uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // The call's request id goes along, unless the component sent one of its own, so
        // one id follows a request across services.
        let own_id = request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-request-id"));
        if let (false, Ok(id)) = (own_id, http::HeaderValue::from_str(request_id)) {
            builder = builder.header("x-request-id", id);
        }
        builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|error| RequestError::InvalidUrl(error.to_string()))
    }
}

fn method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

impl Host for CallState {
    async fn send(&mut self, request: OutgoingRequest) -> Result<IncomingResponse, RequestFailure> {
        let outgoing = granted(&self.capabilities.outgoing_http, INTERFACE, self)?;
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut checked = outgoing
            .checked(request, &self.request_id)
            .map_err(Failure::Error)?;
        // The request's own token goes with the host's check of it (see `ValidatedToken`).
        if let Some(validated) = &self.validated_token {
            if bearer_token(checked.headers()) == Some(validated.token.as_str()) {
                checked.extensions_mut().insert(validated.clone());
            }
        }
        let span = self.span(
            || checked.method().to_string(),
            Kind::Client,
            || {
                let uri = checked.uri();
                vec![
                    Attribute::new("http.request.method", checked.method().to_string()),
                    Attribute::new("server.address", uri.host().unwrap_or_default().to_string()),
                    Attribute::new("server.port", i64::from(uri.port_u16().unwrap_or(80))),
                    Attribute::new("url.path", uri.path().to_string()),
                ]
            },
        );
        // The callee continues this trace, in process or over the network.
        if let Some(span) = &span {
            span.inject_http(checked.headers_mut());
        }
        let response = outgoing
            .client
            .send(checked, timeout, MAX_RESPONSE_BYTES)
            .await;
        if let (Some(span), Ok(response)) = (&span, &response) {
            span.set(Attribute::new(
                "http.response.status_code",
                i64::from(response.status.as_u16()),
            ));
        }
        let response = ended(span, response)?;
        Ok(IncomingResponse {
            status: response.status.as_u16(),
            headers: response
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    value
                        .to_str()
                        .ok()
                        .map(|value| (name.as_str().to_string(), value.to_string()))
                })
                .collect(),
            body: response.body.to_vec(),
        })
    }

    fn convert_request_error(&mut self, failure: RequestFailure) -> wasmtime::Result<RequestError> {
        failure.lower()
    }
}
