//! The conventions the host implements for every service: health, root, OpenAPI, docs,
//! 404 / 405, CORS, request ids, the body limit, FastAPI-shaped 422s and metrics.

use crate::support::{component_path, Platform, Test};
use anyhow::ensure;
use serde_json::{json, Value};

pub fn tests() -> Vec<Test> {
    crate::tests![
        health_and_root_answer_for_every_service,
        every_service_serves_the_one_built_component,
        openapi_documents_every_contract_route,
        docs_page_renders_the_openapi_document,
        unknown_path_is_404_and_wrong_method_is_405,
        cors_preflight_and_simple_requests,
        request_ids_are_echoed_or_generated,
        bodies_over_one_mebibyte_are_413,
        malformed_json_wrong_types_and_invalid_utf8_are_422,
        json_endpoints_refuse_other_content_types_and_unstorable_text,
        deeply_nested_json_is_422_not_a_crash,
        non_numeric_path_ids_are_422,
        metrics_label_requests_by_route_template,
    ]
}

/// Both backend sets serve the very files `cargo build` produced: switching backends
/// changes no component.
async fn every_service_serves_the_one_built_component(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    use sha2::Digest;
    for service in platform.services() {
        let built = std::fs::read(component_path(&service))?;
        let digest = hex::encode(sha2::Sha256::digest(&built));
        let health: Value = platform
            .http()
            .get(platform.url(&service, "/health"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(
            health["component"]["digest"],
            digest,
            "{service} serves {}",
            component_path(&service).display()
        );
    }
    Ok(())
}

async fn health_and_root_answer_for_every_service(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    for service in ["user", "product", "order", "notification"] {
        let health: Value = platform
            .http()
            .get(platform.url(service, "/health"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(health["status"], "healthy", "{service}: {health}");
        assert_eq!(health["service"], service);
        let version = health["version"].as_str().unwrap_or_default();
        assert_eq!(
            version.len(),
            12,
            "{service}: version is the digest prefix: {health}"
        );

        let root: Value = platform
            .http()
            .get(platform.url(service, "/"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(root["service"], service);
        assert_eq!(root["version"], version);
        assert_eq!(root["docs"], "/docs");
        assert!(root["message"].is_string());
    }
    let notification: Value = platform
        .http()
        .get(platform.url("notification", "/health"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        notification["rabbitmq"]["status"], "healthy",
        "{notification}"
    );
    Ok(())
}

async fn openapi_documents_every_contract_route(platform: &'static Platform) -> anyhow::Result<()> {
    let expected = [
        ("user", "/register", "post"),
        ("user", "/users", "post"),
        ("user", "/login", "post"),
        ("user", "/validate-token", "post"),
        ("user", "/me", "get"),
        ("product", "/products", "get"),
        ("product", "/products", "post"),
        ("product", "/products/{product_id}", "get"),
        ("product", "/products/{product_id}", "put"),
        ("product", "/products/{product_id}", "delete"),
        ("product", "/products/{product_id}/reserve", "post"),
        ("product", "/products/{product_id}/release", "post"),
        ("order", "/orders", "post"),
        ("order", "/orders", "get"),
        ("order", "/orders/{order_id}", "get"),
        ("order", "/orders/{order_id}", "put"),
        ("order", "/orders/{order_id}", "delete"),
        ("notification", "/notifications", "get"),
    ];
    for (service, path, method) in expected {
        let document: Value = platform
            .http()
            .get(platform.url(service, "/openapi.json"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(document["openapi"], "3.1.0");
        let operation = &document["paths"][path][method];
        assert!(
            operation.is_object(),
            "{service}: {method} {path} missing from OpenAPI"
        );
        assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()));
    }
    Ok(())
}

/// `/docs` loads Swagger UI from the host itself, never from elsewhere, and says so in its
/// content-security policy: it renders offline.
async fn docs_page_renders_the_openapi_document(platform: &'static Platform) -> anyhow::Result<()> {
    let response = platform
        .http()
        .get(platform.url("product", "/docs"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()?
        .starts_with("text/html"));
    let policy = response.headers()["content-security-policy"]
        .to_str()?
        .to_string();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let page = response.text().await?;
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "no inline script: {page}");
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in page.split(attribute).skip(1) {
            assets.push(piece.split('"').next().unwrap_or_default().to_string());
        }
    }
    assert_eq!(assets.len(), 3, "{page}");
    for asset in assets {
        assert!(asset.starts_with("/docs/"), "{asset}");
        let response = platform
            .http()
            .get(platform.url("product", &asset))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{asset}");
        let kind = response.headers()["content-type"].to_str()?.to_string();
        let body = response.text().await?;
        if asset.ends_with(".js") {
            assert!(kind.starts_with("text/javascript"), "{asset}: {kind}");
        } else {
            assert!(kind.starts_with("text/css"), "{asset}: {kind}");
        }
        if asset.ends_with("initializer.js") {
            assert!(body.contains("/openapi.json"), "{body}");
        } else {
            assert!(
                body.len() > 10_000,
                "{asset} is the real file: {} bytes",
                body.len()
            );
        }
    }
    Ok(())
}

async fn unknown_path_is_404_and_wrong_method_is_405(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let response = platform
        .http()
        .get(platform.url("product", "/nope"))
        .send()
        .await?;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await?,
        json!({ "detail": "Not Found" })
    );

    let response = platform
        .http()
        .delete(platform.url("product", "/products"))
        .send()
        .await?;
    assert_eq!(response.status(), 405);
    let allow = response.headers()["allow"].to_str()?.to_string();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "allow: {allow}"
    );
    assert_eq!(
        response.json::<Value>().await?,
        json!({ "detail": "Method Not Allowed" })
    );
    Ok(())
}

async fn cors_preflight_and_simple_requests(platform: &'static Platform) -> anyhow::Result<()> {
    let response = platform
        .http()
        .request(reqwest::Method::OPTIONS, platform.url("order", "/orders"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await?;
    assert!(
        response.status().is_success(),
        "preflight: {}",
        response.status()
    );
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-methods"]
        .to_str()?
        .contains("POST"));
    assert!(headers["access-control-allow-headers"]
        .to_str()?
        .to_ascii_lowercase()
        .contains("authorization"));

    let response = platform
        .http()
        .get(platform.url("product", "/products"))
        .header("origin", "https://shop.example")
        .send()
        .await?;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    Ok(())
}

async fn request_ids_are_echoed_or_generated(platform: &'static Platform) -> anyhow::Result<()> {
    let url = platform.url("product", "/products");
    let echoed = platform
        .http()
        .get(&url)
        .header("x-request-id", "trace-42")
        .send()
        .await?;
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");

    let too_long = "a".repeat(129);
    let replaced = platform
        .http()
        .get(&url)
        .header("x-request-id", &too_long)
        .send()
        .await?;
    let id = replaced.headers()["x-request-id"].to_str()?;
    assert!(!id.is_empty() && id != too_long);

    let first = platform.http().get(&url).send().await?;
    let second = platform.http().get(&url).send().await?;
    let first = first.headers()["x-request-id"].to_str()?.to_string();
    ensure!(!first.is_empty());
    assert_ne!(
        first,
        second.headers()["x-request-id"].to_str()?,
        "ids are generated per request"
    );

    // Errors the host answers itself carry one too.
    let not_found = platform
        .http()
        .get(platform.url("user", "/nope"))
        .send()
        .await?;
    assert!(not_found.headers().contains_key("x-request-id"));
    Ok(())
}

async fn bodies_over_one_mebibyte_are_413(platform: &'static Platform) -> anyhow::Result<()> {
    let big = vec![b'a'; 2 * 1024 * 1024];
    let response = platform
        .http()
        .post(platform.url("user", "/register"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    assert!(response.json::<Value>().await?["detail"].is_string());

    // Without a content-length (chunked), the limit holds while reading.
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = platform
        .http()
        .post(platform.url("user", "/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    assert_eq!(response.status(), 413);

    // The service still works afterwards.
    let response = platform
        .http()
        .get(platform.url("user", "/health"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

/// A JSON body sent as another content type is 415 (FastAPI-shaped), on every JSON
/// endpoint; a string with a NUL character (which PostgreSQL cannot store) and a password
/// longer than bcrypt reads are 422, and nothing is stored.
async fn json_endpoints_refuse_other_content_types_and_unstorable_text(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = crate::support::id_of(&platform.new_product(&user, "2.00", 5).await?)?;
    let product_path = format!("/products/{product}");
    let order = crate::support::id_of(
        &platform
            .http()
            .post(platform.url("order", "/orders"))
            .header("authorization", user.bearer())
            .json(&json!({ "product_id": product, "quantity": 1 }))
            .send()
            .await?
            .json::<Value>()
            .await?,
    )?;
    let order_path = format!("/orders/{order}");
    let username = crate::support::unique("typed");
    let registration = json!({ "username": username, "password": "Secret123" }).to_string();
    let cases: Vec<(&str, &str, reqwest::Method, String)> = vec![
        (
            "user",
            "/register",
            reqwest::Method::POST,
            registration.clone(),
        ),
        (
            "user",
            "/users",
            reqwest::Method::POST,
            registration.clone(),
        ),
        (
            "product",
            "/products",
            reqwest::Method::POST,
            json!({"name": "x", "price": 1, "quantity": 1}).to_string(),
        ),
        (
            "product",
            &product_path,
            reqwest::Method::PUT,
            json!({"price": 3}).to_string(),
        ),
        (
            "order",
            "/orders",
            reqwest::Method::POST,
            json!({"product_id": product, "quantity": 1}).to_string(),
        ),
        (
            "order",
            &order_path,
            reqwest::Method::PUT,
            json!({"status": "confirmed"}).to_string(),
        ),
    ];
    for (service, path, method, body) in cases {
        let response = platform
            .http()
            .request(method.clone(), platform.url(service, path))
            .header("content-type", "text/plain")
            .header("authorization", user.bearer())
            .body(body)
            .send()
            .await?;
        assert_eq!(response.status(), 415, "{method} {service} {path}");
        let detail: Value = response.json().await?;
        assert!(detail["detail"].is_string(), "{detail}");
    }
    // Nothing was stored by the refused requests.
    let login = platform
        .http()
        .post(platform.url("user", "/login"))
        .form(&[("username", username.as_str()), ("password", "Secret123")])
        .send()
        .await?;
    assert_eq!(login.status(), 401, "the 415 registration stored a user");

    for body in [
        json!({ "username": "nul\u{0}byte", "password": "Secret123" }),
        json!({ "username": crate::support::unique("long"), "password": format!("S{}", "x".repeat(72)) }),
    ] {
        let response = platform
            .http()
            .post(platform.url("user", "/register"))
            .json(&body)
            .send()
            .await?;
        assert_eq!(response.status(), 422, "{body}");
    }
    let response = platform
        .http()
        .post(platform.url("product", "/products"))
        .header("authorization", user.bearer())
        .json(&json!({ "name": "nul\u{0}", "price": 1, "quantity": 1 }))
        .send()
        .await?;
    assert_eq!(response.status(), 422);
    Ok(())
}

async fn malformed_json_wrong_types_and_invalid_utf8_are_422(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let cases: [(&str, &str, Vec<u8>, &str); 5] = [
        (
            "user",
            "/register",
            b"{\"username\": ".to_vec(),
            "json_invalid",
        ),
        (
            "user",
            "/register",
            br#"{"username": 5, "password": ["x"]}"#.to_vec(),
            "string_type",
        ),
        ("user", "/register", vec![0xff, 0xfe, 0x7b], "json_invalid"),
        (
            "product",
            "/products",
            br#"{"name": "x", "price": "cheap", "quantity": 1}"#.to_vec(),
            "decimal_parsing",
        ),
        (
            "order",
            "/orders",
            br#"{"product_id": "one", "quantity": 1}"#.to_vec(),
            "int_parsing",
        ),
    ];
    for (service, path, body, kind) in cases {
        let response = platform
            .http()
            .post(platform.url(service, path))
            .header("content-type", "application/json")
            .header("authorization", user.bearer())
            .body(body.clone())
            .send()
            .await?;
        assert_eq!(
            response.status(),
            422,
            "{service} {path} {:?}",
            String::from_utf8_lossy(&body)
        );
        let detail: Value = response.json().await?;
        let kinds: Vec<&str> = detail["detail"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["type"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            kinds.contains(&kind),
            "{service} {path}: expected {kind} in {detail}"
        );
        for error in detail["detail"].as_array().unwrap() {
            assert!(
                error["loc"].is_array() && error["msg"].is_string(),
                "FastAPI shape: {error}"
            );
        }
    }
    Ok(())
}

async fn deeply_nested_json_is_422_not_a_crash(platform: &'static Platform) -> anyhow::Result<()> {
    // Far deeper than serde_json's recursion limit: refused as malformed, within the
    // components' 128 KiB stack.
    for body in ["[".repeat(500_000), "{\"a\":".repeat(100_000)] {
        for (service, path) in [
            ("user", "/register"),
            ("user", "/login"),
            ("product", "/products"),
        ] {
            let user = platform.new_user().await?;
            let response = platform
                .http()
                .post(platform.url(service, path))
                .header("content-type", "application/json")
                .header("authorization", user.bearer())
                .body(body.clone())
                .send()
                .await?;
            assert_eq!(response.status(), 422, "{service} {path}");
        }
    }
    Ok(())
}

async fn non_numeric_path_ids_are_422(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    for (service, path) in [
        ("product", "/products/abc"),
        ("product", "/products/1.5"),
        ("order", "/orders/abc"),
    ] {
        let response = platform
            .http()
            .get(platform.url(service, path))
            .header("authorization", user.bearer())
            .send()
            .await?;
        assert_eq!(response.status(), 422, "{service} {path}");
        let detail: Value = response.json().await?;
        assert_eq!(detail["detail"][0]["loc"][0], "path", "{detail}");
    }
    Ok(())
}

async fn metrics_label_requests_by_route_template(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let labels = [
        ("handler", "/products/{product_id}"),
        // No other test sends PATCH, so this series counts only this test's request.
        ("method", "PATCH"),
        ("status", "4xx"),
    ];
    let before = platform
        .metric("product", "http_requests_total", &labels)
        .await?;
    let response = platform
        .http()
        .patch(platform.url("product", "/products/999999999"))
        .send()
        .await?;
    assert_eq!(response.status(), 405);
    let after = platform
        .metric("product", "http_requests_total", &labels)
        .await?;
    assert_eq!(after, before + 1.0);

    let text = platform
        .http()
        .get(platform.url("product", "/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        text.contains("http_request_duration_seconds_bucket{handler=\"/products/{product_id}\"")
    );
    assert!(
        !text.contains("handler=\"/products/999999999\""),
        "raw paths must not become labels"
    );
    Ok(())
}
