//! Backing services that are down: the contract requires product reads and writes to keep
//! working from the database when the cache is unreachable.

use crate::support::{free_ports, set, shop_config, Platform, RunNames, Test};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn tests() -> Vec<Test> {
    // Starts a host of its own with Redis on a closed port.
    crate::real_backend_tests![product_reads_and_writes_work_without_the_cache]
}

async fn product_reads_and_writes_work_without_the_cache(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config(&names, &ports);
    // Nothing listens on port 1: every cache call fails at once.
    set(&mut config, &["cache", "url"], "redis://127.0.0.1:1".into());
    let platform = Platform::start(names, config).await?;
    let result = exercise_products(&platform).await;
    platform.stop().await;
    result
}

async fn exercise_products(platform: &Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "5.00", 3).await?;
    let url = platform.url("product", &format!("/products/{}", product["id"]));
    let get = || async { anyhow::Ok(platform.http().get(&url).send().await?) };

    let read: Value = get().await?.json().await?;
    assert_eq!(read, product);

    let response = platform
        .http()
        .put(&url)
        .header("authorization", user.bearer())
        .json(&json!({ "price": "6.50" }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(get().await?.json::<Value>().await?["price"], json!(6.5));

    let response = platform
        .http()
        .post(format!("{url}/reserve"))
        .header("authorization", user.bearer())
        .json(&json!({ "quantity": 2 }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(get().await?.json::<Value>().await?["quantity"], 1);

    let response = platform
        .http()
        .delete(&url)
        .header("authorization", user.bearer())
        .send()
        .await?;
    assert_eq!(response.status(), 204);
    assert_eq!(get().await?.status(), 404);
    assert!(
        platform.log().contains("cache"),
        "cache failures are logged"
    );
    Ok(())
}
