//! The product service's contract (`../shared/contract/rest-api.md`), row by row.
//!
//! Other tests create and delete products at the same time, so no test assumes the
//! catalogue's size or content: each checks only its own products.

use crate::support::{assert_utc_timestamp, id_of, unique, Platform, Test, TestUser};
use crate::user::{assert_401, assert_422, disabled_user, rejected_tokens, send, Reply};
use anyhow::Context;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn tests() -> Vec<Test> {
    let mut tests = crate::tests![
        create_returns_201_with_the_product,
        prices_are_exact_numbers_with_at_most_two_decimals,
        create_accepts_the_field_bounds,
        create_refuses_invalid_fields_with_422_and_stores_nothing,
        create_requires_a_valid_token,
        list_is_ordered_by_id_and_paginated,
        list_refuses_out_of_range_pagination_with_422,
        get_returns_the_product_or_404,
        update_changes_any_subset_of_fields,
        update_refuses_invalid_fields_with_422,
        update_requires_a_token_and_an_existing_product,
        delete_is_204_without_body_then_the_product_is_gone,
        delete_requires_a_token_and_an_existing_product,
        reserve_takes_stock_or_is_409,
        reserve_requires_a_token_an_existing_product_and_a_positive_quantity,
        release_puts_stock_back,
        release_requires_a_token_an_existing_product_and_a_positive_quantity,
        every_write_refuses_invalid_tokens_with_401,
        reads_after_writes_see_the_new_state,
        concurrent_reservations_never_oversell,
        concurrent_reserves_and_releases_lose_no_update,
    ];
    // These look into RabbitMQ or Redis directly.
    tests.extend(crate::real_backend_tests![
        get_fills_the_cache_with_a_ttl_and_writes_invalidate_it,
    ]);
    tests
}

/// An id no product has (ids are BIGSERIAL from 1; no run gets near this).
const UNKNOWN_ID: i64 = 999_999_999_999;

// ---------- helpers ----------

fn url(platform: &Platform, path: &str) -> String {
    platform.url("product", path)
}

async fn create(platform: &Platform, user: &TestUser, body: &Value) -> anyhow::Result<Reply> {
    send(
        platform
            .http()
            .post(url(platform, "/products"))
            .header("authorization", user.bearer())
            .json(body),
    )
    .await
}

async fn get(platform: &Platform, id: i64) -> anyhow::Result<Reply> {
    send(
        platform
            .http()
            .get(url(platform, &format!("/products/{id}"))),
    )
    .await
}

async fn list(platform: &Platform, query: &str) -> anyhow::Result<Reply> {
    send(
        platform
            .http()
            .get(url(platform, &format!("/products{query}"))),
    )
    .await
}

/// A write with an optional `authorization` header: `method` on `/products/{id}{suffix}`.
async fn write(
    platform: &Platform,
    method: reqwest::Method,
    id: i64,
    suffix: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Reply> {
    let mut request = platform
        .http()
        .request(method, url(platform, &format!("/products/{id}{suffix}")));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    send(request).await
}

async fn put(platform: &Platform, user: &TestUser, id: i64, body: &Value) -> anyhow::Result<Reply> {
    write(
        platform,
        reqwest::Method::PUT,
        id,
        "",
        Some(&user.bearer()),
        Some(body),
    )
    .await
}

async fn delete(platform: &Platform, user: &TestUser, id: i64) -> anyhow::Result<Reply> {
    write(
        platform,
        reqwest::Method::DELETE,
        id,
        "",
        Some(&user.bearer()),
        None,
    )
    .await
}

async fn reserve(
    platform: &Platform,
    user: &TestUser,
    id: i64,
    quantity: Value,
) -> anyhow::Result<Reply> {
    let body = json!({ "quantity": quantity });
    write(
        platform,
        reqwest::Method::POST,
        id,
        "/reserve",
        Some(&user.bearer()),
        Some(&body),
    )
    .await
}

async fn release(
    platform: &Platform,
    user: &TestUser,
    id: i64,
    quantity: Value,
) -> anyhow::Result<Reply> {
    let body = json!({ "quantity": quantity });
    write(
        platform,
        reqwest::Method::POST,
        id,
        "/release",
        Some(&user.bearer()),
        Some(&body),
    )
    .await
}

/// `{"id", "name", "description", "price", "quantity", "created_at", "updated_at"}`, typed.
fn assert_product(product: &Value, what: &str) {
    let mut keys: Vec<&str> = product
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {product}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "id",
            "name",
            "price",
            "quantity",
            "updated_at"
        ],
        "{what}: {product}"
    );
    assert!(
        product["id"].as_i64().is_some_and(|id| id > 0),
        "{what}: {product}"
    );
    assert!(product["name"].is_string(), "{what}: {product}");
    assert!(
        product["description"].is_string() || product["description"].is_null(),
        "{what}: {product}"
    );
    assert!(
        product["price"].is_number(),
        "{what}: price is a JSON number: {product}"
    );
    assert!(
        product["quantity"].as_i64().is_some_and(|q| q >= 0),
        "{what}: {product}"
    );
    let created = assert_utc_timestamp(&product["created_at"], what);
    let updated = assert_utc_timestamp(&product["updated_at"], what);
    assert!(
        updated >= created,
        "{what}: updated_at before created_at: {product}"
    );
}

/// The literal JSON text of the first `"field":` in `text`.
fn raw_value<'a>(text: &'a str, field: &str) -> &'a str {
    let key = format!("\"{field}\"");
    let start = text
        .find(&key)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        + key.len();
    let rest = text[start..]
        .trim_start()
        .strip_prefix(':')
        .expect("a colon")
        .trim_start();
    let end = rest.find([',', '}', ' ', '\n']).unwrap_or(rest.len());
    &rest[..end]
}

/// Cents of a JSON number literal with at most two decimals (`None` otherwise).
fn literal_cents(literal: &str) -> Option<i64> {
    let (whole, fraction) = literal.split_once('.').unwrap_or((literal, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 2 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit())
        || (literal.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let fraction = format!("{fraction:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + fraction.parse::<i64>().ok()?)
}

/// The reply's `price` is written as a number of exactly `cents`.
fn assert_price(reply: &Reply, cents: i64, what: &str) {
    let literal = raw_value(&reply.text, "price");
    assert_eq!(
        literal_cents(literal),
        Some(cents),
        "{what}: price literal `{literal}` in {reply}"
    );
    let expected: Value =
        serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap();
    assert_eq!(reply.body["price"], expected, "{what}: {reply}");
}

async fn stored_cents(platform: &Platform, id: i64) -> anyhow::Result<i64> {
    let mut db = platform.database_connection("product").await?;
    Ok(
        sqlx::query_scalar("SELECT price_cents FROM products WHERE id = $1")
            .bind(id)
            .fetch_one(&mut db)
            .await?,
    )
}

async fn stored_quantity(platform: &Platform, id: i64) -> anyhow::Result<Option<i64>> {
    let mut db = platform.database_connection("product").await?;
    Ok(
        sqlx::query_scalar("SELECT quantity FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut db)
            .await?,
    )
}

/// Products whose name starts with `prefix`, in the database.
async fn count_named(platform: &Platform, prefix: &str) -> anyhow::Result<i64> {
    let mut db = platform.database_connection("product").await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM products WHERE substr(name, 1, length($1)) = $1")
            .bind(prefix)
            .fetch_one(&mut db)
            .await?,
    )
}

/// `GET` answers 200 with exactly `expected`.
async fn assert_get(platform: &Platform, expected: &Value, what: &str) -> anyhow::Result<()> {
    let reply = get(platform, id_of(expected)?).await?;
    assert_eq!(reply.status, 200, "{what}: {reply}");
    assert_eq!(&reply.body, expected, "{what}: GET shows the latest state");
    Ok(())
}

fn assert_404(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 404, "{what}: {reply}");
    assert!(reply.body["detail"].is_string(), "{what}: {reply}");
}

// ---------- POST /products ----------

async fn create_returns_201_with_the_product(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let name = unique("lamp");
    let reply = create(
        platform,
        &user,
        &json!({ "name": name, "description": "A desk lamp", "price": "19.99", "quantity": 7 }),
    )
    .await?;
    assert_eq!(reply.status, 201, "{reply}");
    assert!(
        reply
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:?}"
    );
    assert_product(&reply.body, "create");
    assert_eq!(reply.body["name"], name.as_str());
    assert_eq!(reply.body["description"], "A desk lamp");
    assert_eq!(reply.body["price"], json!(19.99));
    assert_price(&reply, 1999, "create with \"19.99\"");
    assert_eq!(reply.body["quantity"], 7);
    assert_get(platform, &reply.body, "GET after create").await?;

    // Without a description it is null; a number price is accepted like a string one.
    let reply = create(
        platform,
        &user,
        &json!({ "name": unique("bare"), "price": 19.99, "quantity": 0 }),
    )
    .await?;
    assert_eq!(reply.status, 201, "{reply}");
    assert_product(&reply.body, "create without description");
    assert!(reply.body["description"].is_null(), "{reply}");
    assert_price(&reply, 1999, "create with 19.99");
    assert_eq!(reply.body["quantity"], 0);
    Ok(())
}

async fn prices_are_exact_numbers_with_at_most_two_decimals(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let cases: [(Value, i64); 12] = [
        (json!("0.10"), 10),
        (json!(0.1), 10),
        (json!("0.2"), 20),
        (json!(0.3), 30),
        (json!("0.01"), 1),
        (json!("1"), 100),
        (json!(3), 300),
        (json!("1.50"), 150),
        (json!(" 2.25 "), 225),
        (json!(1.1), 110),
        (json!("99999999.99"), 9_999_999_999),
        (json!(99999999.99), 9_999_999_999),
    ];
    for (price, cents) in cases {
        let what = format!("price {price}");
        let reply = create(
            platform,
            &user,
            &json!({ "name": unique("exact"), "price": price, "quantity": 3 }),
        )
        .await?;
        assert_eq!(reply.status, 201, "{what}: {reply}");
        assert_price(&reply, cents, &what);
        let id = id_of(&reply.body)?;
        assert_eq!(
            stored_cents(platform, id).await?,
            cents,
            "{what}: stored exactly"
        );
        let fetched = get(platform, id).await?;
        assert_price(&fetched, cents, &format!("{what}, GET"));
        let cached = get(platform, id).await?;
        assert_price(&cached, cents, &format!("{what}, GET from the cache"));
    }

    // Updates are exact too, and 0.1 stays 0.1 after stock changes.
    let product = platform.new_product(&user, "0.10", 10).await?;
    let id = id_of(&product)?;
    let reply = put(platform, &user, id, &json!({ "price": "0.30" })).await?;
    assert_eq!(reply.status, 200, "{reply}");
    assert_price(&reply, 30, "PUT 0.30");
    let reply = reserve(platform, &user, id, json!(3)).await?;
    assert_price(&reply, 30, "after reserve");
    let reply = put(platform, &user, id, &json!({ "price": 0.1 })).await?;
    assert_price(&reply, 10, "PUT 0.1");
    assert_price(&get(platform, id).await?, 10, "GET after PUT 0.1");
    Ok(())
}

async fn create_accepts_the_field_bounds(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let cases = [
        ("one-character name", json!({ "name": "x" })),
        ("255-character name", json!({ "name": "n".repeat(255) })),
        (
            "255 multibyte characters",
            json!({ "name": "é".repeat(255) }),
        ),
        (
            "1000-character description",
            json!({ "description": "d".repeat(1000) }),
        ),
        (
            "1000 multibyte characters",
            json!({ "description": "ü".repeat(1000) }),
        ),
        ("empty description", json!({ "description": "" })),
        ("null description", json!({ "description": null })),
        ("quantity 0", json!({ "quantity": 0 })),
        ("big quantity", json!({ "quantity": 1_000_000_000_000i64 })),
        ("unknown fields are ignored", json!({ "colour": "red" })),
    ];
    for (what, fields) in cases {
        let mut body =
            json!({ "name": unique("bound"), "description": "ok", "price": "5.00", "quantity": 1 });
        for (key, value) in fields.as_object().unwrap() {
            body[key] = value.clone();
        }
        let reply = create(platform, &user, &body).await?;
        assert_eq!(reply.status, 201, "{what}: {reply}");
        assert_product(&reply.body, what);
        for key in ["name", "description", "quantity"] {
            assert_eq!(reply.body[key], body[key], "{what}: {key}");
        }
        assert!(reply.body.get("colour").is_none(), "{what}: {reply}");
        assert_get(platform, &reply.body, what).await?;
    }
    Ok(())
}

async fn create_refuses_invalid_fields_with_422_and_stores_nothing(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let prefix = unique("invalid");
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        (
            "empty name",
            json!({ "name": "" }),
            "name",
            Some("string_too_short"),
        ),
        (
            "256-character name",
            json!({ "name": format!("{prefix}{}", "n".repeat(256)) }),
            "name",
            Some("string_too_long"),
        ),
        (
            "256 multibyte characters",
            json!({ "name": format!("{prefix}{}", "é".repeat(256)) }),
            "name",
            Some("string_too_long"),
        ),
        (
            "name not a string",
            json!({ "name": 42 }),
            "name",
            Some("string_type"),
        ),
        ("null name", json!({ "name": null }), "name", None),
        (
            "1001-character description",
            json!({ "description": "d".repeat(1001) }),
            "description",
            Some("string_too_long"),
        ),
        (
            "description not a string",
            json!({ "description": 7 }),
            "description",
            None,
        ),
        (
            "price 0",
            json!({ "price": 0 }),
            "price",
            Some("greater_than"),
        ),
        (
            "price \"0.00\"",
            json!({ "price": "0.00" }),
            "price",
            Some("greater_than"),
        ),
        (
            "price -1",
            json!({ "price": -1 }),
            "price",
            Some("greater_than"),
        ),
        (
            "price \"-1\"",
            json!({ "price": "-1" }),
            "price",
            Some("greater_than"),
        ),
        (
            "price 1.234",
            json!({ "price": 1.234 }),
            "price",
            Some("decimal_max_places"),
        ),
        (
            "price \"1.234\"",
            json!({ "price": "1.234" }),
            "price",
            Some("decimal_max_places"),
        ),
        ("price 0.001", json!({ "price": 0.001 }), "price", None),
        (
            "price \"abc\"",
            json!({ "price": "abc" }),
            "price",
            Some("decimal_parsing"),
        ),
        ("price \"\"", json!({ "price": "" }), "price", None),
        ("price \"NaN\"", json!({ "price": "NaN" }), "price", None),
        (
            "price \"Infinity\"",
            json!({ "price": "Infinity" }),
            "price",
            None,
        ),
        (
            "price over the maximum",
            json!({ "price": "100000000.00" }),
            "price",
            Some("less_than_equal"),
        ),
        ("price true", json!({ "price": true }), "price", None),
        ("price null", json!({ "price": null }), "price", None),
        (
            "quantity -1",
            json!({ "quantity": -1 }),
            "quantity",
            Some("greater_than_equal"),
        ),
        (
            "quantity 1.5",
            json!({ "quantity": 1.5 }),
            "quantity",
            Some("int_from_float"),
        ),
        (
            "quantity \"abc\"",
            json!({ "quantity": "abc" }),
            "quantity",
            Some("int_parsing"),
        ),
        (
            "quantity null",
            json!({ "quantity": null }),
            "quantity",
            None,
        ),
    ];
    for (i, (what, fields, field, kind)) in cases.iter().enumerate() {
        let mut body = json!({ "name": format!("{prefix}_{i}"), "description": "x", "price": "1.00", "quantity": 1 });
        for (key, value) in fields.as_object().unwrap() {
            body[key] = value.clone();
        }
        let reply = create(platform, &user, &body).await?;
        assert_422(&reply, &["body", field], *kind, what);
    }
    for field in ["name", "price", "quantity"] {
        let mut body =
            json!({ "name": format!("{prefix}_missing"), "price": "1.00", "quantity": 1 });
        body.as_object_mut().unwrap().remove(field);
        let reply = create(platform, &user, &body).await?;
        assert_422(
            &reply,
            &["body", field],
            Some("missing"),
            &format!("missing {field}"),
        );
    }
    let reply = create(platform, &user, &json!({})).await?;
    for field in ["name", "price", "quantity"] {
        assert_422(&reply, &["body", field], Some("missing"), "empty object");
    }
    // Several failing fields are all reported.
    let reply = create(
        platform,
        &user,
        &json!({ "name": "", "price": 0, "quantity": -1 }),
    )
    .await?;
    for field in ["name", "price", "quantity"] {
        assert_422(&reply, &["body", field], None, "three invalid fields");
    }
    let no_body = send(
        platform
            .http()
            .post(url(platform, "/products"))
            .header("authorization", user.bearer()),
    )
    .await?;
    assert_eq!(no_body.status, 422, "no body: {no_body}");
    assert_eq!(
        count_named(platform, &prefix).await?,
        0,
        "no invalid product was stored"
    );
    Ok(())
}

async fn create_requires_a_valid_token(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let prefix = unique("unauth");
    let body = json!({ "name": prefix, "price": "1.00", "quantity": 1 });
    let post = |authorization: Option<String>| {
        let mut request = platform.http().post(url(platform, "/products")).json(&body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        send(request)
    };
    assert_401(&post(None).await?, "no token");
    assert_401(
        &post(Some(user.token.clone())).await?,
        "token without scheme",
    );
    for (what, token) in rejected_tokens(platform, &user) {
        assert_401(&post(Some(format!("Bearer {token}"))).await?, what);
    }
    let deleted = disabled_user(platform, true).await?;
    assert_401(&post(Some(deleted.bearer())).await?, "deleted user");
    let inactive = disabled_user(platform, false).await?;
    assert_401(&post(Some(inactive.bearer())).await?, "inactive user");
    // Authentication comes before validation.
    let reply = send(
        platform
            .http()
            .post(url(platform, "/products"))
            .json(&json!({ "name": "" })),
    )
    .await?;
    assert_401(&reply, "no token and an invalid body");
    assert_eq!(
        count_named(platform, &prefix).await?,
        0,
        "nothing was stored"
    );
    Ok(())
}

// ---------- GET /products ----------

/// Every product id, page by page (each page's ids strictly increasing).
async fn all_ids(platform: &Platform) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for skip in (0..).step_by(100) {
        let page = list(platform, &format!("?skip={skip}&limit=100")).await?;
        assert_eq!(page.status, 200, "{page}");
        let page = page_ids(&page);
        let len = page.len();
        ids.extend(page);
        if len < 100 {
            break;
        }
    }
    Ok(ids)
}

fn page_ids(reply: &Reply) -> Vec<i64> {
    let items = reply
        .body
        .as_array()
        .unwrap_or_else(|| panic!("a list: {reply}"));
    assert!(items.len() <= 100, "at most 100 items: {}", items.len());
    let ids: Vec<i64> = items
        .iter()
        .map(|p| p["id"].as_i64().expect("an id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by id: {ids:?}"
    );
    ids
}

async fn list_is_ordered_by_id_and_paginated(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(platform.new_product(&user, "2.50", 4).await?);
    }
    let my_ids: Vec<i64> = mine.iter().map(id_of).collect::<anyhow::Result<_>>()?;
    assert!(
        my_ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {my_ids:?}"
    );

    // The listing shows the products as GET does.
    let everything = all_ids(platform).await?;
    assert!(
        everything.windows(2).all(|w| w[0] < w[1]),
        "ordered by id across pages"
    );
    let first = everything
        .iter()
        .position(|id| *id == my_ids[0])
        .context("my product is listed")?;
    let page = list(platform, &format!("?skip={first}&limit=100")).await?;
    let listed: Vec<&Value> = page
        .body
        .as_array()
        .context("a list")?
        .iter()
        .filter(|p| my_ids.contains(&p["id"].as_i64().unwrap()))
        .collect();
    assert!(
        !listed.is_empty(),
        "my products are on the page that starts with the first of them"
    );
    for item in listed {
        assert_product(item, "listed product");
        let expected = mine.iter().find(|p| p["id"] == item["id"]).unwrap();
        assert_eq!(item, expected, "listed as created");
    }

    // skip / limit select a window of the listing. Others create and delete products at
    // the same time: compare only against a listing that did not change around the page.
    // A product created and deleted between the two listings can still show on a page:
    // a window is wrong only when it is wrong against several still listings.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut mismatches = Vec::new();
    loop {
        let before = all_ids(platform).await?;
        let k = before
            .iter()
            .position(|id| *id == my_ids[0])
            .context("my product is listed")?;
        let window = page_ids(&list(platform, &format!("?skip={k}&limit=2")).await?);
        let default = page_ids(&list(platform, "").await?);
        let limited = page_ids(&list(platform, "?limit=1").await?);
        let skipped = page_ids(&list(platform, &format!("?skip={}", k + 1)).await?);
        let after = all_ids(platform).await?;
        if before == after {
            let ids = &before;
            assert!(ids.contains(&my_ids[1]) && ids.contains(&my_ids[2]));
            let checks = [
                (
                    format!("skip={k}&limit=2"),
                    &window,
                    &ids[k..(k + 2).min(ids.len())],
                ),
                (
                    "no query: skip=0, limit=100".to_string(),
                    &default,
                    &ids[..ids.len().min(100)],
                ),
                ("limit=1".to_string(), &limited, &ids[..1]),
                (
                    format!("skip={}", k + 1),
                    &skipped,
                    &ids[k + 1..ids.len().min(k + 101)],
                ),
            ];
            let wrong: Vec<String> = checks
                .iter()
                .filter(|(_, got, want)| got.as_slice() != *want)
                .map(|(what, got, want)| format!("{what}: got {got:?}, listing says {want:?}"))
                .collect();
            if wrong.is_empty() {
                break;
            }
            mismatches.push(wrong);
            assert!(
                mismatches.len() < 5,
                "pages disagree with the listing: {mismatches:#?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "the catalogue never held still for a minute ({mismatches:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let beyond = list(platform, "?skip=1000000000&limit=5").await?;
    assert_eq!(beyond.status, 200, "{beyond}");
    assert_eq!(beyond.body, json!([]));
    let bounds = list(platform, "?skip=0&limit=100").await?;
    assert_eq!(bounds.status, 200, "limit=100 is allowed: {bounds}");
    Ok(())
}

async fn list_refuses_out_of_range_pagination_with_422(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let cases = [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=-1", "limit"),
        ("?skip=-1", "skip"),
        ("?skip=0&limit=0", "limit"),
        ("?limit=abc", "limit"),
        ("?skip=1.5", "skip"),
        ("?skip=abc&limit=10", "skip"),
    ];
    for (query, field) in cases {
        let reply = list(platform, query).await?;
        assert_422(&reply, &["query", field], None, query);
    }
    let reply = list(platform, "?skip=-1&limit=101").await?;
    assert_422(&reply, &["query", "skip"], None, "both out of range");
    assert_422(&reply, &["query", "limit"], None, "both out of range");
    Ok(())
}

// ---------- GET /products/{id} ----------

async fn get_returns_the_product_or_404(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "4.20", 2).await?;
    // Twice: from the database, then from the cache; both the same.
    for what in ["first GET", "second GET"] {
        let reply = get(platform, id_of(&product)?).await?;
        assert_eq!(reply.status, 200, "{what}: {reply}");
        assert_product(&reply.body, what);
        assert_eq!(reply.body, product, "{what}");
        assert_price(&reply, 420, what);
    }
    for what in [
        "unknown id",
        "unknown id again (no cached miss turns it into a 500)",
    ] {
        assert_404(&get(platform, UNKNOWN_ID).await?, what);
    }
    Ok(())
}

// ---------- PUT /products/{id} ----------

async fn update_changes_any_subset_of_fields(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let mut expected = platform.new_product(&user, "10.00", 5).await?;
    let id = id_of(&expected)?;
    let new_name = unique("renamed");
    let steps: Vec<(&str, Value)> = vec![
        ("name only", json!({ "name": new_name })),
        (
            "description only",
            json!({ "description": "now described" }),
        ),
        ("price only", json!({ "price": "12.34" })),
        ("quantity only", json!({ "quantity": 42 })),
        ("quantity 0", json!({ "quantity": 0 })),
        ("description cleared", json!({ "description": null })),
        ("price as a number", json!({ "price": 7.5 })),
        (
            "everything",
            json!({ "name": format!("{new_name}_2"), "description": "all of it", "price": "0.99", "quantity": 9 }),
        ),
        (
            "two fields",
            json!({ "name": format!("{new_name}_3"), "quantity": 1 }),
        ),
        ("nothing", json!({})),
    ];
    for (what, changes) in steps {
        let before_update =
            chrono::DateTime::parse_from_rfc3339(expected["updated_at"].as_str().unwrap())?;
        let reply = put(platform, &user, id, &changes).await?;
        assert_eq!(reply.status, 200, "{what}: {reply}");
        assert_product(&reply.body, what);
        for (key, value) in changes.as_object().unwrap() {
            if key == "price" {
                let cents = literal_cents(&match value {
                    Value::String(text) => text.clone(),
                    number => number.to_string(),
                })
                .unwrap();
                assert_price(&reply, cents, what);
                expected["price"] = reply.body["price"].clone();
            } else {
                assert_eq!(&reply.body[key], value, "{what}: {key}");
                expected[key] = value.clone();
            }
        }
        // Every other field kept its value.
        for key in [
            "id",
            "name",
            "description",
            "price",
            "quantity",
            "created_at",
        ] {
            assert_eq!(reply.body[key], expected[key], "{what}: {key} unchanged");
        }
        let updated = assert_utc_timestamp(&reply.body["updated_at"], what);
        assert!(
            updated >= before_update,
            "{what}: updated_at never goes back"
        );
        expected["updated_at"] = reply.body["updated_at"].clone();
        assert_get(platform, &expected, what).await?;
    }
    Ok(())
}

async fn update_refuses_invalid_fields_with_422(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "3.00", 3).await?;
    let id = id_of(&product)?;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty name", json!({ "name": "" }), "name"),
        (
            "256-character name",
            json!({ "name": "n".repeat(256) }),
            "name",
        ),
        (
            "1001-character description",
            json!({ "description": "d".repeat(1001) }),
            "description",
        ),
        ("price 0", json!({ "price": 0 }), "price"),
        ("price -1", json!({ "price": -1 }), "price"),
        ("price 1.234", json!({ "price": 1.234 }), "price"),
        ("price \"abc\"", json!({ "price": "abc" }), "price"),
        ("quantity -1", json!({ "quantity": -1 }), "quantity"),
        ("quantity 1.5", json!({ "quantity": 1.5 }), "quantity"),
        (
            "a valid and an invalid field",
            json!({ "name": "fine", "quantity": -1 }),
            "quantity",
        ),
    ];
    for (what, changes, field) in cases {
        let reply = put(platform, &user, id, &changes).await?;
        assert_422(&reply, &["body", field], None, what);
        assert_get(platform, &product, &format!("{what}: nothing changed")).await?;
    }
    let reply = write(
        platform,
        reqwest::Method::PUT,
        id,
        "",
        Some(&user.bearer()),
        Some(&json!([1])),
    )
    .await?;
    assert_eq!(reply.status, 422, "an array body: {reply}");
    assert_get(platform, &product, "nothing changed").await?;
    Ok(())
}

async fn update_requires_a_token_and_an_existing_product(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "3.00", 3).await?;
    let id = id_of(&product)?;
    let changes = json!({ "name": "hijacked", "quantity": 0 });
    let reply = write(platform, reqwest::Method::PUT, id, "", None, Some(&changes)).await?;
    assert_401(&reply, "PUT without a token");
    let garbage = write(
        platform,
        reqwest::Method::PUT,
        id,
        "",
        Some("Bearer nope"),
        Some(&changes),
    )
    .await?;
    assert_401(&garbage, "PUT with a garbage token");
    assert_get(platform, &product, "unchanged after 401").await?;

    assert_404(
        &put(platform, &user, UNKNOWN_ID, &json!({ "name": "ghost" })).await?,
        "PUT unknown id",
    );
    assert_eq!(delete(platform, &user, id).await?.status, 204);
    assert_404(
        &put(platform, &user, id, &json!({ "quantity": 5 })).await?,
        "PUT deleted product",
    );
    assert_404(&get(platform, id).await?, "PUT did not resurrect it");
    Ok(())
}

// ---------- DELETE /products/{id} ----------

async fn delete_is_204_without_body_then_the_product_is_gone(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "8.00", 1).await?;
    let id = id_of(&product)?;
    assert_get(platform, &product, "before delete").await?;
    let reply = delete(platform, &user, id).await?;
    assert_eq!(reply.status, 204, "{reply}");
    assert!(reply.text.is_empty(), "204 has no body: {:?}", reply.text);
    assert_404(&get(platform, id).await?, "GET after delete");
    assert_eq!(
        stored_quantity(platform, id).await?,
        None,
        "the row is gone"
    );
    let listed = all_ids(platform).await?;
    assert!(!listed.contains(&id), "not listed after delete");
    assert_404(&delete(platform, &user, id).await?, "second delete");
    assert_404(
        &reserve(platform, &user, id, json!(1)).await?,
        "reserve a deleted product",
    );
    assert_404(
        &release(platform, &user, id, json!(1)).await?,
        "release a deleted product",
    );
    assert_404(&get(platform, id).await?, "still gone");
    Ok(())
}

async fn delete_requires_a_token_and_an_existing_product(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "8.00", 1).await?;
    let id = id_of(&product)?;
    assert_401(
        &write(platform, reqwest::Method::DELETE, id, "", None, None).await?,
        "DELETE without a token",
    );
    let expired = rejected_tokens(platform, &user)
        .into_iter()
        .find(|(what, _)| *what == "expired")
        .unwrap()
        .1;
    let reply = write(
        platform,
        reqwest::Method::DELETE,
        id,
        "",
        Some(&format!("Bearer {expired}")),
        None,
    )
    .await?;
    assert_401(&reply, "DELETE with an expired token");
    assert_get(platform, &product, "still there after 401").await?;
    assert_404(
        &delete(platform, &user, UNKNOWN_ID).await?,
        "DELETE unknown id",
    );
    Ok(())
}

// ---------- POST /products/{id}/reserve ----------

async fn reserve_takes_stock_or_is_409(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 10).await?;
    let id = id_of(&product)?;
    let reply = reserve(platform, &user, id, json!(3)).await?;
    assert_eq!(reply.status, 200, "{reply}");
    assert_product(&reply.body, "reserve");
    assert_eq!(reply.body["quantity"], 7, "quantity already decreased");
    for key in ["id", "name", "description", "price", "created_at"] {
        assert_eq!(reply.body[key], product[key], "{key} unchanged by reserve");
    }
    assert_get(platform, &reply.body, "after reserve").await?;

    let refused = reserve(platform, &user, id, json!(8)).await?;
    assert_eq!(refused.status, 409, "more than in stock: {refused}");
    assert!(refused.body["detail"].is_string(), "{refused}");
    assert_eq!(
        get(platform, id).await?.body["quantity"],
        7,
        "a refused reservation takes nothing"
    );

    let all = reserve(platform, &user, id, json!(7)).await?;
    assert_eq!(all.status, 200, "everything in stock: {all}");
    assert_eq!(all.body["quantity"], 0);
    let empty = reserve(platform, &user, id, json!(1)).await?;
    assert_eq!(empty.status, 409, "nothing left: {empty}");
    assert_eq!(stored_quantity(platform, id).await?, Some(0));
    assert_eq!(get(platform, id).await?.body["quantity"], 0);
    Ok(())
}

async fn reserve_requires_a_token_an_existing_product_and_a_positive_quantity(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 5).await?;
    let id = id_of(&product)?;
    let body = json!({ "quantity": 1 });
    let reply = write(
        platform,
        reqwest::Method::POST,
        id,
        "/reserve",
        None,
        Some(&body),
    )
    .await?;
    assert_401(&reply, "reserve without a token");
    assert_404(
        &reserve(platform, &user, UNKNOWN_ID, json!(1)).await?,
        "reserve unknown id",
    );
    for quantity in [json!(0), json!(-1), json!(1.5), json!("abc"), json!(null)] {
        let reply = reserve(platform, &user, id, quantity.clone()).await?;
        assert_422(
            &reply,
            &["body", "quantity"],
            None,
            &format!("reserve quantity {quantity}"),
        );
    }
    let reply = write(
        platform,
        reqwest::Method::POST,
        id,
        "/reserve",
        Some(&user.bearer()),
        Some(&json!({})),
    )
    .await?;
    assert_422(
        &reply,
        &["body", "quantity"],
        Some("missing"),
        "reserve without quantity",
    );
    assert_get(platform, &product, "nothing reserved").await?;
    Ok(())
}

// ---------- POST /products/{id}/release ----------

async fn release_puts_stock_back(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 0).await?;
    let id = id_of(&product)?;
    let reply = release(platform, &user, id, json!(4)).await?;
    assert_eq!(reply.status, 200, "{reply}");
    assert_product(&reply.body, "release");
    assert_eq!(reply.body["quantity"], 4, "quantity increased");
    for key in ["id", "name", "description", "price", "created_at"] {
        assert_eq!(reply.body[key], product[key], "{key} unchanged by release");
    }
    assert_get(platform, &reply.body, "after release").await?;
    let reply = release(platform, &user, id, json!(1)).await?;
    assert_eq!(reply.body["quantity"], 5);
    assert_eq!(stored_quantity(platform, id).await?, Some(5));
    // What was released can be reserved.
    assert_eq!(reserve(platform, &user, id, json!(5)).await?.status, 200);
    Ok(())
}

async fn release_requires_a_token_an_existing_product_and_a_positive_quantity(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 5).await?;
    let id = id_of(&product)?;
    let body = json!({ "quantity": 1 });
    let reply = write(
        platform,
        reqwest::Method::POST,
        id,
        "/release",
        None,
        Some(&body),
    )
    .await?;
    assert_401(&reply, "release without a token");
    assert_404(
        &release(platform, &user, UNKNOWN_ID, json!(1)).await?,
        "release unknown id",
    );
    for quantity in [json!(0), json!(-1), json!(1.5), json!("abc"), json!(null)] {
        let reply = release(platform, &user, id, quantity.clone()).await?;
        assert_422(
            &reply,
            &["body", "quantity"],
            None,
            &format!("release quantity {quantity}"),
        );
    }
    let reply = write(
        platform,
        reqwest::Method::POST,
        id,
        "/release",
        Some(&user.bearer()),
        Some(&json!({})),
    )
    .await?;
    assert_422(
        &reply,
        &["body", "quantity"],
        Some("missing"),
        "release without quantity",
    );
    assert_get(platform, &product, "nothing released").await?;
    Ok(())
}

// ---------- authentication of every write ----------

async fn every_write_refuses_invalid_tokens_with_401(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "6.00", 6).await?;
    let id = id_of(&product)?;
    let mut authorizations: Vec<(String, Option<String>)> = vec![("no header".into(), None)];
    for (what, token) in rejected_tokens(platform, &user) {
        authorizations.push((what.to_string(), Some(format!("Bearer {token}"))));
    }
    let deleted = disabled_user(platform, true).await?;
    authorizations.push(("deleted user".into(), Some(deleted.bearer())));
    let inactive = disabled_user(platform, false).await?;
    authorizations.push(("inactive user".into(), Some(inactive.bearer())));
    let writes = [
        (reqwest::Method::PUT, "", Some(json!({ "quantity": 0 }))),
        (reqwest::Method::DELETE, "", None),
        (
            reqwest::Method::POST,
            "/reserve",
            Some(json!({ "quantity": 1 })),
        ),
        (
            reqwest::Method::POST,
            "/release",
            Some(json!({ "quantity": 1 })),
        ),
    ];
    for (method, suffix, body) in &writes {
        for (what, authorization) in &authorizations {
            let reply = write(
                platform,
                method.clone(),
                id,
                suffix,
                authorization.as_deref(),
                body.as_ref(),
            )
            .await?;
            assert_401(
                &reply,
                &format!("{method} /products/{{id}}{suffix}: {what}"),
            );
        }
    }
    assert_get(platform, &product, "untouched by refused writes").await?;
    Ok(())
}

// ---------- the cache ----------

/// GET (filling the cache) -> write -> GET shows the write at once.
async fn reads_after_writes_see_the_new_state(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "5.00", 10).await?;
    let id = id_of(&product)?;
    let warm = || async {
        for _ in 0..2 {
            assert_eq!(get(platform, id).await?.status, 200);
        }
        anyhow::Ok(())
    };

    warm().await?;
    let updated = put(
        platform,
        &user,
        id,
        &json!({ "name": "after put", "price": "6.10", "quantity": 20 }),
    )
    .await?;
    assert_eq!(updated.status, 200, "{updated}");
    assert_get(platform, &updated.body, "GET after PUT").await?;

    warm().await?;
    let reserved = reserve(platform, &user, id, json!(5)).await?;
    assert_eq!(reserved.body["quantity"], 15, "{reserved}");
    assert_get(platform, &reserved.body, "GET after reserve").await?;

    warm().await?;
    let refused = reserve(platform, &user, id, json!(16)).await?;
    assert_eq!(refused.status, 409, "{refused}");
    assert_get(platform, &reserved.body, "GET after a refused reserve").await?;

    warm().await?;
    let released = release(platform, &user, id, json!(2)).await?;
    assert_eq!(released.body["quantity"], 17, "{released}");
    assert_get(platform, &released.body, "GET after release").await?;

    warm().await?;
    let cleared = put(platform, &user, id, &json!({ "description": null })).await?;
    assert!(cleared.body["description"].is_null(), "{cleared}");
    assert_get(
        platform,
        &cleared.body,
        "GET after clearing the description",
    )
    .await?;

    warm().await?;
    assert_eq!(delete(platform, &user, id).await?.status, 204);
    assert_404(&get(platform, id).await?, "GET after DELETE");
    assert_404(&get(platform, id).await?, "GET after DELETE, again");
    Ok(())
}

/// The contract names the key (`product:{id}`) and the TTL (300 s); the host prefixes
/// the service's cache namespace.
async fn get_fills_the_cache_with_a_ttl_and_writes_invalidate_it(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let redis_url = platform.config["cache"]["url"]
        .as_str()
        .context("cache url")?;
    let namespace = platform.config["services"]["product"]["cache_namespace"]
        .as_str()
        .context("cache namespace")?;
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "2.00", 4).await?;
    let id = id_of(&product)?;
    let key = format!("{namespace}:product:{id}");
    assert_get(platform, &product, "first GET").await?;
    let seconds: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await?;
    assert!(
        (1..=300).contains(&seconds),
        "`{key}` cached with a TTL of at most 300 s, got {seconds}"
    );
    let cached: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
    let cached: Value = serde_json::from_slice(&cached.context("a cached value")?)?;
    assert_eq!(cached, product, "the cache holds the product");

    let reply = reserve(platform, &user, id, json!(1)).await?;
    assert_eq!(reply.status, 200, "{reply}");
    let left: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
    if let Some(bytes) = left {
        // Only a fresh value may be there (e.g. a concurrent GET refilled it).
        let value: Value = serde_json::from_slice(&bytes)?;
        assert_eq!(value["quantity"], 3, "the write invalidated `{key}`");
    }
    assert_get(platform, &reply.body, "GET after reserve").await?;
    Ok(())
}

// ---------- atomic stock ----------

async fn concurrent_reservations_never_oversell(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 10).await?;
    let id = id_of(&product)?;
    assert_get(platform, &product, "warm the cache").await?;
    let replies =
        futures::future::join_all((0..40).map(|_| reserve(platform, &user, id, json!(1)))).await;
    let mut remaining = Vec::new();
    let mut refused = 0;
    for reply in replies {
        let reply = reply?;
        match reply.status {
            200 => remaining.push(reply.body["quantity"].as_i64().context("quantity")?),
            409 => refused += 1,
            _ => panic!("a reservation answered {reply}"),
        }
    }
    assert_eq!(
        (remaining.len(), refused),
        (10, 30),
        "10 reservations succeed, 30 are refused"
    );
    remaining.sort();
    assert_eq!(
        remaining,
        (0..10).collect::<Vec<_>>(),
        "each success saw its own decrement"
    );
    assert_eq!(stored_quantity(platform, id).await?, Some(0));
    assert_eq!(
        get(platform, id).await?.body["quantity"],
        0,
        "GET after the reservations"
    );
    Ok(())
}

async fn concurrent_reserves_and_releases_lose_no_update(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 10).await?;
    let id = id_of(&product)?;
    let requests = (0..40).map(|i| {
        let user = &user;
        async move {
            if i % 2 == 0 {
                reserve(platform, user, id, json!(2)).await
            } else {
                release(platform, user, id, json!(1)).await
            }
        }
    });
    let replies = futures::future::join_all(requests).await;
    let mut reserved = 0;
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply?;
        match (i % 2, reply.status) {
            (0, 200) => reserved += 2,
            (0, 409) => {}
            (1, 200) => {}
            _ => panic!("request {i} answered {reply}"),
        }
    }
    let expected = 10 - reserved + 20;
    assert_eq!(
        stored_quantity(platform, id).await?,
        Some(expected),
        "{reserved} reserved, 20 released"
    );
    assert_eq!(get(platform, id).await?.body["quantity"], expected);
    Ok(())
}
