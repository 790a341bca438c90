//! Stock exactly once, whatever times out: a proxy between the order and the product
//! service holds the product service's answers past the order service's timeout, so the
//! reservation or release takes effect while the order service sees a timeout; settling (the order service's `maintenance`
//! schedule) repeats it under the same `Idempotency-Key`, so stock ends where it started.
//! And orders placed while the broker is cut are all published once it is back, with no
//! further write to carry them.

use crate::fault_proxy::FaultProxy;
use crate::support::{
    eventually, free_ports, id_of, set, shop_config, shop_config_on, with_platform, Platform,
    RunNames, Test, TestUser,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub fn tests() -> Vec<Test> {
    let mut tests =
        crate::tests![stock_ends_where_it_started_when_the_product_service_answers_late];
    tests.extend(crate::real_backend_tests![
        orders_placed_while_the_broker_is_cut_are_all_published_once_it_is_back
    ]);
    tests
}

/// The order service gives up on the product service after this long.
const PRODUCT_TIMEOUT_MS: u64 = 1_000;

fn shop_ports() -> BTreeMap<&'static str, u16> {
    ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect()
}

async fn place_order(
    platform: &Platform,
    user: &TestUser,
    product: i64,
    quantity: i64,
) -> anyhow::Result<reqwest::Response> {
    Ok(platform
        .http()
        .post(platform.url("order", "/orders"))
        .header("authorization", user.bearer())
        .json(&json!({ "product_id": product, "quantity": quantity }))
        .send()
        .await?)
}

/// The order service settles every second, a change once it is 6 s old.
pub(crate) fn settle_quickly(config: &mut toml::Table) {
    let order = ["services", "order"];
    set(
        config,
        &[order[0], order[1], "schedules"],
        toml::Value::Array(vec![toml::Value::Table(
            [
                ("name".to_string(), "maintenance".into()),
                ("every_seconds".to_string(), 1.into()),
            ]
            .into_iter()
            .collect(),
        )]),
    );
    set(
        config,
        &[order[0], order[1], "config", "settle_after_seconds"],
        "6".into(),
    );
}

async fn stock_ends_where_it_started_when_the_product_service_answers_late(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let ports = shop_ports();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", ports["product"])).await?;
    let mut config = shop_config_on(shared.backends(), &names, &ports);
    let order = ["services", "order"];
    set(
        &mut config,
        &[order[0], order[1], "allowed_hosts"],
        vec![proxy.address.clone()].into(),
    );
    set(
        &mut config,
        &[order[0], order[1], "config", "product_service_url"],
        format!("http://{}", proxy.address).into(),
    );
    set(
        &mut config,
        &[order[0], order[1], "config", "product_timeout_ms"],
        PRODUCT_TIMEOUT_MS.to_string().into(),
    );
    settle_quickly(&mut config);
    let result = with_platform(names, config, async |platform| {
        let result = late_answers(platform, &proxy).await;
        if result.is_err() {
            eprintln!("---- the test's host ----\n{}", platform.log());
        }
        result
    })
    .await;
    proxy.resume();
    result
}

async fn late_answers(platform: &Platform, proxy: &FaultProxy) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = id_of(&platform.new_product(&user, "2.50", 10).await?)?;
    let product_url = platform.url("product", &format!("/products/{product}"));
    let stock = || async {
        let product: Value = platform
            .http()
            .get(&product_url)
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(product["quantity"].as_i64())
    };
    let stock_is = |expected: i64| {
        let stock = &stock;
        async move { Ok((stock().await? == Some(expected)).then_some(())) }
    };
    let orders_url = platform.url("order", "/orders");
    let settled_lines = || {
        platform
            .log()
            .lines()
            .filter(|line| line.contains("stock change(s) settled"))
            .count()
    };

    // A reservation whose answer comes too late: the order fails, the stock is taken...
    proxy.pause_answers();
    let asked = Instant::now();
    let response = place_order(platform, &user, product, 3).await?;
    assert_eq!(response.status(), 503, "{}", response.text().await?);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    proxy.resume();
    eventually(
        "the late reservation to land",
        Duration::from_secs(10),
        || stock_is(7),
    )
    .await?;
    // ...and settling gives it back, since no order owns it.
    eventually("settling to give it back", Duration::from_secs(30), || {
        stock_is(10)
    })
    .await?;
    let orders: Value = platform
        .http()
        .get(&orders_url)
        .header("authorization", user.bearer())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(orders, json!([]), "no order was stored");

    // A cancel whose release answers too late: the cancel stands, a second one is refused,
    // and settling repeats the release under its key without giving the stock back twice.
    let response = place_order(platform, &user, product, 3).await?;
    assert_eq!(response.status(), 201);
    let order = id_of(&response.json().await?)?;
    assert_eq!(stock().await?, Some(7));
    let order_url = platform.url("order", &format!("/orders/{order}"));
    let settled_before = settled_lines();
    proxy.pause_answers();
    for expected in [200, 409] {
        let response = platform
            .http()
            .put(&order_url)
            .header("authorization", user.bearer())
            .json(&json!({ "status": "cancelled" }))
            .send()
            .await?;
        assert_eq!(response.status(), expected, "{}", response.text().await?);
    }
    proxy.resume();
    assert_eq!(stock().await?, Some(10), "the release took effect");
    eventually(
        "settling to repeat the release",
        Duration::from_secs(30),
        || async { Ok((settled_lines() > settled_before).then_some(())) },
    )
    .await?;
    assert_eq!(stock().await?, Some(10), "the release was applied once");
    Ok(())
}

/// RabbitMQ is cut off (every connection reset, new ones refused) while orders are placed:
/// each is answered 201 in normal time, and once RabbitMQ is reachable again every
/// order's notification arrives, with nothing else written to carry the events.
async fn orders_placed_while_the_broker_is_cut_are_all_published_once_it_is_back(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let proxy = FaultProxy::start("127.0.0.1:5672").await?;
    let names = RunNames::new();
    let ports = shop_ports();
    let mut config = shop_config(&names, &ports);
    set(
        &mut config,
        &["messaging", "url"],
        format!("amqp://guest:guest@{}/%2f", proxy.address).into(),
    );
    settle_quickly(&mut config);
    let result = with_platform(names, config, async |platform| {
        broker_cut(platform, &proxy).await
    })
    .await;
    proxy.up();
    result
}

async fn broker_cut(platform: &Platform, proxy: &FaultProxy) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = id_of(&platform.new_product(&user, "1.00", 100).await?)?;
    proxy.down();
    let mut placed = Vec::new();
    for _ in 0..5 {
        let asked = Instant::now();
        let response = place_order(platform, &user, product, 1).await?;
        assert_eq!(response.status(), 201, "{}", response.text().await?);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "an order took {:?} while the broker was down",
            asked.elapsed()
        );
        placed.push(id_of(&response.json().await?)?);
    }
    proxy.up();
    let notified = eventually(
        "a notification for every order",
        Duration::from_secs(60),
        || async {
            let notifications: Value = platform
                .http()
                .get(platform.url("notification", "/notifications"))
                .header("authorization", user.bearer())
                .send()
                .await?
                .json()
                .await?;
            let mut orders: Vec<i64> = notifications
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|notification| notification["order_id"].as_i64())
                .collect();
            orders.sort_unstable();
            Ok((orders.len() >= placed.len()).then_some(orders))
        },
    )
    .await?;
    assert_eq!(notified, placed, "each order notified once");
    Ok(())
}
