//! The `outgoing-http` interface: buffered HTTP calls to the hosts a service was allowed.

use super::CallState;
use crate::bindings::http_types::Method;
use crate::bindings::outgoing_http::{Host, IncomingResponse, OutgoingRequest, RequestError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A pooled HTTP/1 client shared by the whole host.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body a component can receive.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// One service's outgoing HTTP: the shared client and its allowed `host:port` list.
#[derive(Clone)]
pub struct OutgoingHttp {
    pub client: HttpClient,
    pub allowed_hosts: Vec<String>,
}

impl OutgoingHttp {
    /// Sends a request after checking its target against the allow-list.
    pub async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, RequestError> {
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
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|error| RequestError::InvalidUrl(error.to_string()))?;
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(DEFAULT_TIMEOUT);
        let exchange = async {
            let response = self
                .client
                .request(outgoing)
                .await
                .map_err(|error| RequestError::Unavailable(error.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| RequestError::Unavailable(error.to_string()))?
                .to_bytes();
            Ok(IncomingResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .filter_map(|(name, value)| {
                        value
                            .to_str()
                            .ok()
                            .map(|value| (name.as_str().to_string(), value.to_string()))
                    })
                    .collect(),
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(RequestError::Timeout))
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
    async fn send(
        &mut self,
        request: OutgoingRequest,
    ) -> wasmtime::Result<Result<IncomingResponse, RequestError>> {
        Ok(self.capabilities.outgoing_http.send(request).await)
    }
}
