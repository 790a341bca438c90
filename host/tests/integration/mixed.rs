//! Mixed backend sets: each backend is chosen on its own, so a real server can stand beside
//! embedded ones (here PostgreSQL with the in-process cache and broker, and the reverse).

use crate::support::{
    eventually, free_ports, id_of, set, shop_config_on, Backends, Platform, RunNames, Test,
    POSTGRES_URL, REDIS_URL,
};
use anyhow::ensure;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    // These start hosts of their own, with some of the real servers.
    crate::real_backend_tests![
        postgres_with_the_embedded_cache_and_broker,
        embedded_databases_with_redis,
    ]
}

async fn postgres_with_the_embedded_cache_and_broker(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    order_to_notification(
        &[(&["database", "url"], POSTGRES_URL)],
        "database: PostgreSQL",
    )
    .await
}

async fn embedded_databases_with_redis(_shared: &'static Platform) -> anyhow::Result<()> {
    order_to_notification(&[(&["cache", "url"], REDIS_URL)], "cache: Redis").await
}

/// Starts the shop with the embedded backends except `servers`, checks the host says so
/// (`announced`), then walks an order through to its notification.
async fn order_to_notification(servers: &[(&[&str], &str)], announced: &str) -> anyhow::Result<()> {
    let names = RunNames::new();
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config_on(Backends::Embedded, &names, &ports);
    for (path, url) in servers {
        set(&mut config, path, (*url).into());
    }
    let platform = Platform::start(names, config).await?;
    let result = async {
        let log = platform.log();
        ensure!(
            log.contains(announced),
            "the host did not say `{announced}`"
        );
        let user = platform.new_user().await?;
        let product = platform.new_product(&user, "4.50", 3).await?;
        let response = platform
            .http()
            .post(platform.url("order", "/orders"))
            .bearer_auth(&user.token)
            .json(&json!({ "product_id": id_of(&product)?, "quantity": 2 }))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "placing an order: {}",
            response.status()
        );
        let order: Value = response.json().await?;
        let order_id = id_of(&order)?;
        let platform = &platform;
        let user = &user;
        eventually(
            "the order's notification",
            Duration::from_secs(30),
            || async move {
                let listed: Vec<Value> = platform
                    .http()
                    .get(platform.url("notification", "/notifications"))
                    .bearer_auth(&user.token)
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(listed
                    .iter()
                    .any(|n| n["order_id"] == order_id && n["event"] == "order.created")
                    .then_some(()))
            },
        )
        .await?;
        let stock: Value = platform
            .http()
            .get(platform.url("product", &format!("/products/{}", id_of(&product)?)))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(stock["quantity"], 1, "the order reserved two of three");
        Ok(())
    }
    .await;
    platform.stop().await;
    result
}
