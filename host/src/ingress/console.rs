//! The web console the admin listener serves at `/console`: one page, its script and its
//! stylesheet, inside the binary (no CDN, no Node toolchain at run time). The page is a
//! client of the admin API, like the CLI: it sends the admin token the operator typed, kept
//! in the tab's `sessionStorage` (never in a URL or a cookie, so no other site can make the
//! browser use it), and shows what `platform ps`, `versions`, `errors` and `dlq` show.
//!
//! The files themselves need no token: they hold nothing but the console's code.

use super::server::HttpResponse;
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::Full;

/// What the console may load and call: only this listener.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's files: path, body, content type.
const FILES: [(&str, &str, &str); 4] = [
    (
        "/console",
        include_str!("console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/console/",
        include_str!("console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/console/console.js",
        include_str!("console/console.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/console/console.css",
        include_str!("console/console.css"),
        "text/css; charset=utf-8",
    ),
];

/// Whether `path` is the console's, and so served without the admin token.
pub fn serves(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The answer to `method` on a console `path`.
pub fn respond(method: &Method, path: &str) -> HttpResponse {
    let Some((_, body, content_type)) = FILES.iter().find(|(served, ..)| *served == path) else {
        return text(StatusCode::NOT_FOUND, "no such console file");
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console's files are read with GET",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A host upgraded in place serves its own console at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn text(status: StatusCode, message: &'static str) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = respond(&Method::GET, "/console");
        assert_eq!(page.status(), StatusCode::OK);
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("script-src 'self';"));
        assert!(!policy.contains("unsafe"));
        let html = include_str!("console/index.html");
        assert!(html.contains(r#"src="/console/console.js""#));
        assert!(html.contains(r#"href="/console/console.css""#));
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn only_the_files_are_served_and_only_read() {
        assert!(serves("/console") && serves("/console/console.js"));
        assert!(!serves("/consoles") && !serves("/v1/services"));
        assert_eq!(
            respond(&Method::GET, "/console/../v1").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/console").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            respond(&Method::GET, "/console/console.css").headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
    }
}
