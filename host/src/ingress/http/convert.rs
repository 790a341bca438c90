//! Between hyper's requests and responses and the WIT `request` / `response` a component
//! handles: request ids, bearer tokens, query strings, bodies and the headers a component
//! may not set.

use crate::bindings::http_types::{
    Identity, Method, Request as GuestRequest, Response as GuestResponse,
};
use crate::ingress::server::HttpResponse;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

/// A request body the ingress can read: hyper's from a connection, or a buffered one from a
/// service of this host.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Most of a refused body read and dropped before the 413 goes out; beyond it, the
/// connection closes on a client still sending.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The request's own id when it is 1-128 printable ASCII characters, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A random (v4) UUID from the thread's generator: `Uuid::new_v4` would ask the kernel
/// for its bytes, a system call on every request.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// What a matched route's component receives.
pub struct Matched {
    pub route_index: u32,
    pub method: Method,
    pub params: Vec<(String, String)>,
    pub caller: Option<Identity>,
}

pub fn guest_request(
    parts: &http::request::Parts,
    body: Bytes,
    matched: Matched,
    request_id: &str,
) -> GuestRequest {
    GuestRequest {
        route_index: matched.route_index,
        method: matched.method,
        path: parts.uri.path().to_string(),
        params: matched.params,
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
        // Without a copy when the body arrived in one piece.
        body: Vec::from(body),
        caller: matched.caller,
        request_id: request_id.to_string(),
    }
}

pub fn guest_response(response: GuestResponse) -> HttpResponse {
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

/// Reads the body (from the network, or from a service of this host) up to `limit`; 413
/// beyond it (announced or actual).
pub async fn read_body<B: RequestBody>(
    headers: &HeaderMap,
    mut body: B,
    limit: usize,
) -> Result<Bytes, HttpResponse> {
    let too_large = || {
        let mut response = super::detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
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
            return Err(super::detail(
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

/// Reads and drops what is left of a refused body (bounded in bytes and time), so that a
/// client still writing it gets to read the 413 instead of a broken connection.
async fn drain<B: RequestBody>(body: B) {
    let _ = tokio::time::timeout(DRAIN_TIME, Limited::new(body, DRAIN_BYTES).collect()).await;
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
        let generated = uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).unwrap();
        assert_eq!(generated.get_version_num(), 4);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            query_pairs(Some("skip=1&name=a%20b+c")),
            vec![("skip".into(), "1".into()), ("name".into(), "a b c".into())]
        );
    }
}
