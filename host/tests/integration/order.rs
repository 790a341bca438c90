//! The order service's contract (`../shared/contract/rest-api.md`), row by row.
//!
//! Every test creates its own users and products; the stock of a product is read back
//! through the product service (`GET /products/{id}`) to check reservations and releases.

use crate::support::{assert_utc_timestamp, id_of, Platform, Test, TestUser};
use anyhow::{ensure, Context};
use serde_json::{json, Value};

pub fn tests() -> Vec<Test> {
    crate::tests![
        placing_an_order_reserves_stock_at_the_current_price,
        order_totals_are_exact_decimal_arithmetic,
        ordering_all_remaining_stock_then_one_more_is_400,
        unknown_product_is_400_naming_it,
        not_enough_stock_is_400_and_reserves_nothing,
        a_total_over_the_money_limit_is_400_and_reserves_nothing,
        every_order_route_requires_a_valid_token,
        invalid_order_bodies_are_422_and_reserve_nothing,
        listing_shows_only_the_callers_orders_newest_first,
        listing_pagination_out_of_range_is_422,
        reading_an_order_is_200_403_or_404,
        changing_the_status_is_200_403_404_or_422,
        cancelling_releases_the_stock_exactly_once,
        concurrent_cancels_release_the_stock_exactly_once,
        deleting_an_active_order_releases_its_stock_once,
        deleting_a_cancelled_order_does_not_release_again,
        deleting_is_403_for_another_users_order_and_404_for_an_unknown_one,
        concurrent_cancels_and_deletes_release_the_stock_exactly_once,
        calls_to_product_and_user_stay_in_process_with_the_request_id,
    ]
}

// ---- helpers -------------------------------------------------------------------------

/// `POST /orders` with an arbitrary body, as `user`.
async fn post_order(
    platform: &Platform,
    user: &TestUser,
    body: Value,
) -> anyhow::Result<reqwest::Response> {
    Ok(platform
        .http()
        .post(platform.url("order", "/orders"))
        .header("authorization", user.bearer())
        .json(&body)
        .send()
        .await?)
}

/// Places an order that must succeed and returns it.
async fn place(
    platform: &Platform,
    user: &TestUser,
    product_id: i64,
    quantity: i64,
) -> anyhow::Result<Value> {
    let response = post_order(
        platform,
        user,
        json!({ "product_id": product_id, "quantity": quantity }),
    )
    .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(
        status == 201,
        "POST /orders {product_id} x {quantity}: {status} {text}"
    );
    Ok(serde_json::from_str(&text)?)
}

async fn get_order(
    platform: &Platform,
    user: &TestUser,
    order_id: i64,
) -> anyhow::Result<reqwest::Response> {
    Ok(platform
        .http()
        .get(platform.url("order", &format!("/orders/{order_id}")))
        .header("authorization", user.bearer())
        .send()
        .await?)
}

async fn put_status(
    platform: &Platform,
    user: &TestUser,
    order_id: i64,
    body: Value,
) -> anyhow::Result<reqwest::Response> {
    Ok(platform
        .http()
        .put(platform.url("order", &format!("/orders/{order_id}")))
        .header("authorization", user.bearer())
        .json(&body)
        .send()
        .await?)
}

async fn delete_order(
    platform: &Platform,
    user: &TestUser,
    order_id: i64,
) -> anyhow::Result<reqwest::Response> {
    Ok(platform
        .http()
        .delete(platform.url("order", &format!("/orders/{order_id}")))
        .header("authorization", user.bearer())
        .send()
        .await?)
}

/// `GET /orders` with a query string (`""` for none), which must succeed.
async fn list_orders(
    platform: &Platform,
    user: &TestUser,
    query: &str,
) -> anyhow::Result<Vec<Value>> {
    let response = platform
        .http()
        .get(platform.url("order", &format!("/orders{query}")))
        .header("authorization", user.bearer())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status == 200, "GET /orders{query}: {status} {text}");
    let body: Value = serde_json::from_str(&text)?;
    body.as_array()
        .cloned()
        .context("GET /orders answers a list")
}

fn ids(orders: &[Value]) -> Vec<i64> {
    orders
        .iter()
        .map(|order| order["id"].as_i64().unwrap_or_default())
        .collect()
}

/// The product's units in stock, as the product service reports them.
async fn stock(platform: &Platform, product_id: i64) -> anyhow::Result<i64> {
    let response = platform
        .http()
        .get(platform.url("product", &format!("/products/{product_id}")))
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "GET /products/{product_id}: {}",
        response.status()
    );
    let product: Value = response.json().await?;
    product["quantity"].as_i64().context("product quantity")
}

/// The `detail` string of an error response with `status`.
async fn expect_detail(
    response: reqwest::Response,
    status: u16,
    what: &str,
) -> anyhow::Result<String> {
    let actual = response.status();
    let text = response.text().await?;
    ensure!(
        actual == status,
        "{what}: expected {status}, got {actual} {text}"
    );
    let body: Value =
        serde_json::from_str(&text).with_context(|| format!("{what}: JSON error body: {text}"))?;
    body["detail"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{what}: `detail` is a string: {text}"))
}

/// A 422 whose `detail` lists an entry at `loc`.
async fn expect_validation_error(
    response: reqwest::Response,
    loc: Value,
    what: &str,
) -> anyhow::Result<()> {
    let status = response.status();
    let text = response.text().await?;
    ensure!(status == 422, "{what}: expected 422, got {status} {text}");
    let body: Value = serde_json::from_str(&text)?;
    let detail = body["detail"]
        .as_array()
        .with_context(|| format!("{what}: detail is a list: {text}"))?;
    ensure!(
        detail.iter().any(|entry| entry["loc"] == loc
            && entry["msg"].is_string()
            && entry["type"].is_string()),
        "{what}: no error at {loc} with msg and type in {text}"
    );
    Ok(())
}

/// A product id that does not exist (a product created and deleted again).
async fn deleted_product_id(platform: &Platform, user: &TestUser) -> anyhow::Result<i64> {
    let product = platform.new_product(user, "5.00", 10).await?;
    let id = id_of(&product)?;
    let response = platform
        .http()
        .delete(platform.url("product", &format!("/products/{id}")))
        .header("authorization", user.bearer())
        .send()
        .await?;
    ensure!(
        response.status() == 204,
        "deleting product {id}: {}",
        response.status()
    );
    Ok(id)
}

/// An order id that does not exist (an order placed and deleted again).
async fn deleted_order_id(platform: &Platform, user: &TestUser) -> anyhow::Result<i64> {
    let product = platform.new_product(user, "1.00", 5).await?;
    let order = place(platform, user, id_of(&product)?, 1).await?;
    let id = id_of(&order)?;
    let response = delete_order(platform, user, id).await?;
    ensure!(
        response.status() == 204,
        "deleting order {id}: {}",
        response.status()
    );
    Ok(id)
}

// ---- POST /orders --------------------------------------------------------------------

async fn placing_an_order_reserves_stock_at_the_current_price(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "0.10", 10).await?;
    let product_id = id_of(&product)?;

    let response = post_order(
        platform,
        &user,
        json!({ "product_id": product_id, "quantity": 3 }),
    )
    .await?;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await?;
    let order_id = id_of(&order)?;
    assert!(order_id > 0);
    assert_eq!(order["user_id"], user.id);
    assert_eq!(order["product_id"], product_id);
    assert_eq!(order["product_name"], product["name"]);
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["status"], "pending");
    assert!(
        order["unit_price"].is_number(),
        "unit_price is a JSON number: {order}"
    );
    assert!(
        order["total_price"].is_number(),
        "total_price is a JSON number: {order}"
    );
    assert_eq!(order["unit_price"].to_string(), "0.1", "{order}");
    assert_eq!(
        order["total_price"].to_string(),
        "0.3",
        "0.10 x 3 is exactly 0.3: {order}"
    );
    assert_utc_timestamp(&order["created_at"], "created_at");
    assert_utc_timestamp(&order["updated_at"], "updated_at");
    assert_eq!(
        stock(platform, product_id).await?,
        7,
        "the stock is reserved"
    );

    // The order keeps the price it was placed at when the product's price changes.
    let response = platform
        .http()
        .put(platform.url("product", &format!("/products/{product_id}")))
        .header("authorization", user.bearer())
        .json(&json!({ "price": "0.20" }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let response = get_order(platform, &user, order_id).await?;
    assert_eq!(response.status(), 200);
    let read: Value = response.json().await?;
    assert_eq!(read, order, "GET returns the order as placed");

    // A new order is priced at the new price.
    let second = place(platform, &user, product_id, 2).await?;
    assert_eq!(second["unit_price"].to_string(), "0.2", "{second}");
    assert_eq!(second["total_price"].to_string(), "0.4", "{second}");
    assert_eq!(stock(platform, product_id).await?, 5);
    Ok(())
}

async fn order_totals_are_exact_decimal_arithmetic(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    for (price, quantity, unit, total) in [
        ("19.99", 3, "19.99", "59.97"),
        ("0.10", 7, "0.1", "0.7"),
        ("1.15", 3, "1.15", "3.45"),
        ("0.01", 1, "0.01", "0.01"),
        ("33.33", 3, "33.33", "99.99"),
    ] {
        let product = platform.new_product(&user, price, 100).await?;
        let order = place(platform, &user, id_of(&product)?, quantity).await?;
        assert_eq!(
            order["unit_price"].to_string(),
            unit,
            "{price} x {quantity}: {order}"
        );
        assert_eq!(
            order["total_price"].to_string(),
            total,
            "{price} x {quantity}: {order}"
        );
    }
    Ok(())
}

async fn ordering_all_remaining_stock_then_one_more_is_400(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "2.50", 4).await?;
    let product_id = id_of(&product)?;
    place(platform, &user, product_id, 4).await?;
    assert_eq!(stock(platform, product_id).await?, 0);
    let response = post_order(
        platform,
        &user,
        json!({ "product_id": product_id, "quantity": 1 }),
    )
    .await?;
    let detail = expect_detail(response, 400, "ordering from an empty stock").await?;
    assert!(
        detail.to_lowercase().contains("stock"),
        "detail says the stock is short: {detail}"
    );
    assert_eq!(
        stock(platform, product_id).await?,
        0,
        "the stock never goes below zero"
    );
    Ok(())
}

async fn unknown_product_is_400_naming_it(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product_id = deleted_product_id(platform, &user).await?;
    let response = post_order(
        platform,
        &user,
        json!({ "product_id": product_id, "quantity": 1 }),
    )
    .await?;
    let detail = expect_detail(response, 400, "ordering an unknown product").await?;
    assert!(
        detail.contains(&product_id.to_string()),
        "detail names product {product_id}: {detail}"
    );
    assert!(
        detail.to_lowercase().contains("not found"),
        "detail says the product is unknown: {detail}"
    );
    assert!(
        !detail.to_lowercase().contains("stock"),
        "detail is not about stock: {detail}"
    );
    assert!(
        list_orders(platform, &user, "").await?.is_empty(),
        "no order was stored"
    );
    Ok(())
}

async fn not_enough_stock_is_400_and_reserves_nothing(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "9.99", 2).await?;
    let product_id = id_of(&product)?;
    let response = post_order(
        platform,
        &user,
        json!({ "product_id": product_id, "quantity": 3 }),
    )
    .await?;
    let detail = expect_detail(response, 400, "ordering more than the stock").await?;
    assert!(
        detail.to_lowercase().contains("stock"),
        "detail says the stock is short: {detail}"
    );
    assert!(
        !detail.to_lowercase().contains("not found"),
        "detail is not about an unknown product: {detail}"
    );
    assert_eq!(
        stock(platform, product_id).await?,
        2,
        "nothing was reserved"
    );
    assert!(
        list_orders(platform, &user, "").await?.is_empty(),
        "no order was stored"
    );
    Ok(())
}

async fn a_total_over_the_money_limit_is_400_and_reserves_nothing(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    // Money is at most 99999999.99: 99999999.99 x 2 cannot be an order's total.
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "99999999.99", 5).await?;
    let product_id = id_of(&product)?;
    let response = post_order(
        platform,
        &user,
        json!({ "product_id": product_id, "quantity": 2 }),
    )
    .await?;
    let detail = expect_detail(response, 400, "a total over 99999999.99").await?;
    assert!(!detail.is_empty());
    assert_eq!(
        stock(platform, product_id).await?,
        5,
        "the reservation was released"
    );
    assert!(list_orders(platform, &user, "").await?.is_empty());

    let order = place(platform, &user, product_id, 1).await?;
    assert_eq!(order["total_price"].to_string(), "99999999.99");
    assert_eq!(stock(platform, product_id).await?, 4);
    Ok(())
}

async fn every_order_route_requires_a_valid_token(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let owner = platform.new_user().await?;
    let product = platform.new_product(&owner, "3.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &owner, product_id, 2).await?;
    let order_id = id_of(&order)?;
    let item = format!("/orders/{order_id}");

    for authorization in [
        None,
        Some("Bearer not-a-token".to_string()),
        Some(format!("Basic {}", owner.token)),
    ] {
        let requests = [
            (
                "POST /orders",
                platform
                    .http()
                    .post(platform.url("order", "/orders"))
                    .json(&json!({ "product_id": product_id, "quantity": 1 })),
            ),
            (
                "GET /orders",
                platform.http().get(platform.url("order", "/orders")),
            ),
            (
                "GET /orders/{id}",
                platform.http().get(platform.url("order", &item)),
            ),
            (
                "PUT /orders/{id}",
                platform
                    .http()
                    .put(platform.url("order", &item))
                    .json(&json!({ "status": "cancelled" })),
            ),
            (
                "DELETE /orders/{id}",
                platform.http().delete(platform.url("order", &item)),
            ),
        ];
        for (what, request) in requests {
            let request = match &authorization {
                Some(value) => request.header("authorization", value),
                None => request,
            };
            let response = request.send().await?;
            let what = format!("{what} with authorization {authorization:?}");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|value| value.to_str().unwrap_or_default().to_string());
            let detail = expect_detail(response, 401, &what).await?;
            assert!(!detail.is_empty(), "{what}");
            assert_eq!(
                challenge.as_deref(),
                Some("Bearer"),
                "{what}: www-authenticate"
            );
        }
    }

    // None of the refused requests changed anything.
    assert_eq!(stock(platform, product_id).await?, 8);
    let response = get_order(platform, &owner, order_id).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await?["status"], "pending");
    assert_eq!(
        ids(&list_orders(platform, &owner, "").await?),
        vec![order_id]
    );
    Ok(())
}

async fn invalid_order_bodies_are_422_and_reserve_nothing(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "4.00", 10).await?;
    let product_id = id_of(&product)?;
    let cases = [
        (
            json!({ "product_id": product_id, "quantity": 0 }),
            json!(["body", "quantity"]),
        ),
        (
            json!({ "product_id": product_id, "quantity": -2 }),
            json!(["body", "quantity"]),
        ),
        (
            json!({ "product_id": product_id, "quantity": "many" }),
            json!(["body", "quantity"]),
        ),
        (
            json!({ "product_id": product_id }),
            json!(["body", "quantity"]),
        ),
        (json!({ "quantity": 1 }), json!(["body", "product_id"])),
        (
            json!({ "product_id": "x", "quantity": 1 }),
            json!(["body", "product_id"]),
        ),
        (
            json!({ "product_id": 0, "quantity": 1 }),
            json!(["body", "product_id"]),
        ),
        (
            json!({ "product_id": -product_id, "quantity": 1 }),
            json!(["body", "product_id"]),
        ),
    ];
    for (body, loc) in cases {
        let response = post_order(platform, &user, body.clone()).await?;
        expect_validation_error(response, loc, &format!("POST /orders {body}")).await?;
    }
    // Both fields wrong: both are reported.
    let response = post_order(platform, &user, json!({ "quantity": 0 })).await?;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await?;
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .context("detail list")?
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert!(
        locs.contains(&&json!(["body", "product_id"]))
            && locs.contains(&&json!(["body", "quantity"])),
        "{body}"
    );

    assert_eq!(
        stock(platform, product_id).await?,
        10,
        "nothing was reserved"
    );
    assert!(
        list_orders(platform, &user, "").await?.is_empty(),
        "no order was stored"
    );
    Ok(())
}

// ---- GET /orders ---------------------------------------------------------------------

async fn listing_shows_only_the_callers_orders_newest_first(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let alice = platform.new_user().await?;
    let bob = platform.new_user().await?;
    let product = platform.new_product(&alice, "1.50", 20).await?;
    let product_id = id_of(&product)?;

    assert!(
        list_orders(platform, &alice, "").await?.is_empty(),
        "a new user has no orders"
    );
    let mut placed = Vec::new();
    for quantity in 1..=3 {
        placed.push(place(platform, &alice, product_id, quantity).await?);
    }
    let bobs = place(platform, &bob, product_id, 1).await?;
    let newest_first: Vec<i64> = placed
        .iter()
        .rev()
        .map(|order| id_of(order).unwrap())
        .collect();

    let mine = list_orders(platform, &alice, "").await?;
    assert_eq!(ids(&mine), newest_first, "alice's orders, newest first");
    assert_eq!(mine[0], placed[2], "the list carries whole orders");
    assert!(mine.iter().all(|order| order["user_id"] == alice.id));
    assert_eq!(
        ids(&list_orders(platform, &bob, "").await?),
        vec![id_of(&bobs)?],
        "bob sees only his"
    );

    assert_eq!(
        ids(&list_orders(platform, &alice, "?limit=2").await?),
        newest_first[..2]
    );
    assert_eq!(
        ids(&list_orders(platform, &alice, "?skip=1&limit=1").await?),
        newest_first[1..2]
    );
    assert_eq!(
        ids(&list_orders(platform, &alice, "?skip=2").await?),
        newest_first[2..]
    );
    assert!(list_orders(platform, &alice, "?skip=3").await?.is_empty());
    assert_eq!(
        ids(&list_orders(platform, &alice, "?skip=0&limit=100").await?),
        newest_first
    );
    Ok(())
}

async fn listing_pagination_out_of_range_is_422(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=x", "limit"),
        ("skip=-1", "skip"),
        ("skip=x", "skip"),
    ] {
        let response = platform
            .http()
            .get(platform.url("order", &format!("/orders?{query}")))
            .header("authorization", user.bearer())
            .send()
            .await?;
        expect_validation_error(
            response,
            json!(["query", field]),
            &format!("GET /orders?{query}"),
        )
        .await?;
    }
    Ok(())
}

// ---- GET /orders/{order_id} -----------------------------------------------------------

async fn reading_an_order_is_200_403_or_404(platform: &'static Platform) -> anyhow::Result<()> {
    let owner = platform.new_user().await?;
    let other = platform.new_user().await?;
    let product = platform.new_product(&owner, "7.25", 10).await?;
    let order = place(platform, &owner, id_of(&product)?, 2).await?;
    let order_id = id_of(&order)?;

    let response = get_order(platform, &owner, order_id).await?;
    assert_eq!(response.status(), 200);
    let read: Value = response.json().await?;
    assert_eq!(read, order);
    for field in [
        "id",
        "user_id",
        "product_id",
        "product_name",
        "quantity",
        "unit_price",
        "total_price",
        "status",
        "created_at",
        "updated_at",
    ] {
        assert!(read.get(field).is_some(), "order has `{field}`: {read}");
    }
    assert_eq!(read["total_price"].to_string(), "14.5");

    let response = get_order(platform, &other, order_id).await?;
    let detail = expect_detail(response, 403, "GET another user's order").await?;
    assert!(
        !detail.contains(&owner.username),
        "403 leaks nothing: {detail}"
    );

    let missing = deleted_order_id(platform, &owner).await?;
    expect_detail(
        get_order(platform, &owner, missing).await?,
        404,
        "GET a deleted order",
    )
    .await?;
    expect_detail(
        get_order(platform, &owner, i64::from(i32::MAX)).await?,
        404,
        "GET an unknown order",
    )
    .await?;
    Ok(())
}

// ---- PUT /orders/{order_id} -----------------------------------------------------------

async fn changing_the_status_is_200_403_404_or_422(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let owner = platform.new_user().await?;
    let other = platform.new_user().await?;
    let product = platform.new_product(&owner, "2.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &owner, product_id, 3).await?;
    let order_id = id_of(&order)?;

    for status in ["confirmed", "shipped", "delivered", "pending", "confirmed"] {
        let response = put_status(platform, &owner, order_id, json!({ "status": status })).await?;
        assert_eq!(response.status(), 200, "-> {status}");
        let updated: Value = response.json().await?;
        assert_eq!(updated["status"], status);
        assert_eq!(updated["id"], order_id);
        assert_eq!(updated["total_price"], order["total_price"]);
        assert_eq!(updated["created_at"], order["created_at"]);
        assert_utc_timestamp(&updated["updated_at"], "updated_at");
        let read: Value = get_order(platform, &owner, order_id).await?.json().await?;
        assert_eq!(read["status"], status, "the change is stored");
    }
    let read: Value = get_order(platform, &owner, order_id).await?.json().await?;
    let updated_at =
        chrono::DateTime::parse_from_rfc3339(read["updated_at"].as_str().unwrap_or_default())?;
    let created_at =
        chrono::DateTime::parse_from_rfc3339(read["created_at"].as_str().unwrap_or_default())?;
    assert!(updated_at >= created_at, "{read}");
    assert_eq!(
        stock(platform, product_id).await?,
        7,
        "status changes other than cancel keep the reservation"
    );

    let response = put_status(platform, &other, order_id, json!({ "status": "cancelled" })).await?;
    expect_detail(response, 403, "PUT another user's order").await?;

    for body in [
        json!({ "status": "lost" }),
        json!({ "status": "Cancelled" }),
        json!({ "status": "" }),
        json!({ "status": 3 }),
        json!({ "status": null }),
        json!({}),
    ] {
        let response = put_status(platform, &owner, order_id, body.clone()).await?;
        expect_validation_error(response, json!(["body", "status"]), &format!("PUT {body}"))
            .await?;
    }

    let missing = deleted_order_id(platform, &owner).await?;
    let response = put_status(platform, &owner, missing, json!({ "status": "shipped" })).await?;
    expect_detail(response, 404, "PUT a deleted order").await?;

    let read: Value = get_order(platform, &owner, order_id).await?.json().await?;
    assert_eq!(
        read["status"], "confirmed",
        "refused changes changed nothing"
    );
    assert_eq!(
        stock(platform, product_id).await?,
        7,
        "refused cancels released nothing"
    );
    Ok(())
}

async fn cancelling_releases_the_stock_exactly_once(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "6.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &user, product_id, 4).await?;
    let order_id = id_of(&order)?;
    assert_eq!(stock(platform, product_id).await?, 6);

    let response = put_status(platform, &user, order_id, json!({ "status": "confirmed" })).await?;
    assert_eq!(response.status(), 200);
    let response = put_status(platform, &user, order_id, json!({ "status": "cancelled" })).await?;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await?;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["quantity"], 4);
    assert_eq!(
        stock(platform, product_id).await?,
        10,
        "cancelling gives the stock back"
    );

    let response = put_status(platform, &user, order_id, json!({ "status": "cancelled" })).await?;
    let detail = expect_detail(response, 409, "cancelling twice").await?;
    assert!(detail.to_lowercase().contains("cancel"), "{detail}");
    assert_eq!(
        stock(platform, product_id).await?,
        10,
        "a second cancel releases nothing"
    );

    for status in ["pending", "confirmed", "shipped", "delivered"] {
        let response = put_status(platform, &user, order_id, json!({ "status": status })).await?;
        expect_detail(response, 409, &format!("cancelled -> {status}")).await?;
    }
    let read: Value = get_order(platform, &user, order_id).await?.json().await?;
    assert_eq!(read["status"], "cancelled", "a cancelled order is final");
    assert_eq!(stock(platform, product_id).await?, 10);
    Ok(())
}

async fn concurrent_cancels_release_the_stock_exactly_once(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &user, product_id, 3).await?;
    let order_id = id_of(&order)?;

    let cancels =
        (0..4).map(|_| put_status(platform, &user, order_id, json!({ "status": "cancelled" })));
    let mut statuses = Vec::new();
    for response in futures::future::join_all(cancels).await {
        statuses.push(response?.status().as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409], "exactly one cancel wins");
    assert_eq!(
        stock(platform, product_id).await?,
        10,
        "released exactly once"
    );
    Ok(())
}

// ---- DELETE /orders/{order_id} --------------------------------------------------------

async fn deleting_an_active_order_releases_its_stock_once(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "8.00", 10).await?;
    let product_id = id_of(&product)?;
    let kept = place(platform, &user, product_id, 1).await?;
    let order = place(platform, &user, product_id, 4).await?;
    let order_id = id_of(&order)?;
    assert_eq!(stock(platform, product_id).await?, 5);
    let response = put_status(platform, &user, order_id, json!({ "status": "shipped" })).await?;
    assert_eq!(response.status(), 200);

    let response = delete_order(platform, &user, order_id).await?;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await?.is_empty(), "204 has no body");
    assert_eq!(
        stock(platform, product_id).await?,
        9,
        "deleting gives the stock back"
    );

    expect_detail(
        get_order(platform, &user, order_id).await?,
        404,
        "GET a deleted order",
    )
    .await?;
    expect_detail(
        delete_order(platform, &user, order_id).await?,
        404,
        "deleting twice",
    )
    .await?;
    assert_eq!(
        stock(platform, product_id).await?,
        9,
        "a second delete releases nothing"
    );
    assert_eq!(
        ids(&list_orders(platform, &user, "").await?),
        vec![id_of(&kept)?]
    );
    Ok(())
}

async fn deleting_a_cancelled_order_does_not_release_again(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "8.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &user, product_id, 4).await?;
    let order_id = id_of(&order)?;
    let response = put_status(platform, &user, order_id, json!({ "status": "cancelled" })).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(stock(platform, product_id).await?, 10);

    let response = delete_order(platform, &user, order_id).await?;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await?.is_empty(), "204 has no body");
    assert_eq!(
        stock(platform, product_id).await?,
        10,
        "the cancel already released it"
    );
    expect_detail(
        get_order(platform, &user, order_id).await?,
        404,
        "GET a deleted order",
    )
    .await?;
    Ok(())
}

async fn deleting_is_403_for_another_users_order_and_404_for_an_unknown_one(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let owner = platform.new_user().await?;
    let other = platform.new_user().await?;
    let product = platform.new_product(&owner, "8.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &owner, product_id, 2).await?;
    let order_id = id_of(&order)?;

    expect_detail(
        delete_order(platform, &other, order_id).await?,
        403,
        "deleting another user's order",
    )
    .await?;
    assert_eq!(
        stock(platform, product_id).await?,
        8,
        "a refused delete releases nothing"
    );
    let response = get_order(platform, &owner, order_id).await?;
    assert_eq!(response.status(), 200, "the order is still there");

    let missing = deleted_order_id(platform, &owner).await?;
    expect_detail(
        delete_order(platform, &owner, missing).await?,
        404,
        "deleting a deleted order",
    )
    .await?;
    expect_detail(
        delete_order(platform, &owner, i64::from(i32::MAX)).await?,
        404,
        "deleting an unknown order",
    )
    .await?;
    assert_eq!(stock(platform, product_id).await?, 8);
    Ok(())
}

async fn concurrent_cancels_and_deletes_release_the_stock_exactly_once(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "1.00", 10).await?;
    let product_id = id_of(&product)?;
    let order = place(platform, &user, product_id, 5).await?;
    let order_id = id_of(&order)?;

    let (cancel_a, delete_a, cancel_b, delete_b) = tokio::join!(
        put_status(platform, &user, order_id, json!({ "status": "cancelled" })),
        delete_order(platform, &user, order_id),
        put_status(platform, &user, order_id, json!({ "status": "cancelled" })),
        delete_order(platform, &user, order_id),
    );
    let cancels = [cancel_a?.status().as_u16(), cancel_b?.status().as_u16()];
    let deletes = [delete_a?.status().as_u16(), delete_b?.status().as_u16()];
    assert!(
        cancels.iter().all(|s| [200, 404, 409].contains(s)),
        "cancels: {cancels:?}"
    );
    assert!(
        cancels.iter().filter(|s| **s == 200).count() <= 1,
        "cancels: {cancels:?}"
    );
    let mut sorted = deletes;
    sorted.sort();
    assert_eq!(sorted, [204, 404], "exactly one delete wins: {deletes:?}");
    expect_detail(
        get_order(platform, &user, order_id).await?,
        404,
        "GET the deleted order",
    )
    .await?;
    assert_eq!(
        stock(platform, product_id).await?,
        10,
        "released exactly once ({cancels:?}, {deletes:?})"
    );
    Ok(())
}

/// The order service reaches the product service (outgoing HTTP) and the user service
/// (token validation) on the same host: in process, not over a loopback socket, with the
/// order request's id, and the client's token is checked once. A host of its own, so the
/// counts are exact.
async fn calls_to_product_and_user_stay_in_process_with_the_request_id(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = crate::support::RunNames::new();
    let ports = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(crate::support::free_ports(4))
        .collect();
    let config = crate::support::shop_config_on(shared.backends(), &names, &ports);
    crate::support::with_platform(names, config, async |platform| {
        let user = platform.new_user().await?;
        let product_id = id_of(&platform.new_product(&user, "2.50", 10).await?)?;
        let in_process = async |service: &str| {
            platform
                .metric(service, "http_requests_in_process_total", &[])
                .await
        };
        let (user_before, product_before) =
            (in_process("user").await?, in_process("product").await?);

        let request_id = crate::support::unique("order-request");
        let response = platform
            .http()
            .post(platform.url("order", "/orders"))
            .header("authorization", user.bearer())
            .header("x-request-id", &request_id)
            .json(&json!({ "product_id": product_id, "quantity": 2 }))
            .send()
            .await?;
        assert_eq!(response.status(), 201);

        // The reservation, and one token check: the reservation carries the order's token,
        // and the product service takes the check the order's request made of it.
        assert_eq!(in_process("product").await? - product_before, 1.0);
        assert_eq!(in_process("user").await? - user_before, 1.0);
        let reserved = format!("reserve of 2 unit(s) of product {product_id}");
        let log = platform.log();
        let line = log
            .lines()
            .find(|line| line.contains(&reserved))
            .with_context(|| format!("no `{reserved}` in the log"))?;
        assert!(
            line.contains(&format!("request_id=\"{request_id}\"")),
            "the product service served the reservation under the order's request id: {line}"
        );
        Ok(())
    })
    .await
}
