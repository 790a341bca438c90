//! Backing services that are down: the contract requires product reads and writes to keep
//! working from the database when the cache is unreachable.

use crate::support::{free_ports, set, shop_config, Platform, RunNames, Test};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn tests() -> Vec<Test> {
    // Starts a host of its own with Redis on a closed port.
    crate::real_backend_tests![
        product_reads_and_writes_work_without_the_cache,
        an_invalidation_redis_missed_never_serves_the_old_price,
    ]
}

/// Redis stalls (a proxy between the host and Redis stops moving bytes) while a product's
/// price changes, and the stalled connection is then reset: the invalidation is lost on the
/// way, yet once Redis answers again no read serves the old price from the stale entry.
async fn an_invalidation_redis_missed_never_serves_the_old_price(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let proxy = crate::fault_proxy::FaultProxy::start("127.0.0.1:6379").await?;
    let names = RunNames::new();
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config(&names, &ports);
    set(
        &mut config,
        &["cache", "url"],
        format!("redis://{}", proxy.address).into(),
    );
    let platform = Platform::start(names, config).await?;
    let result = stalled_invalidation(&platform, &proxy).await;
    proxy.resume();
    platform.stop().await;
    result
}

async fn stalled_invalidation(
    platform: &Platform,
    proxy: &crate::fault_proxy::FaultProxy,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "5.00", 3).await?;
    let other = platform.new_product(&user, "1.00", 3).await?;
    let url = platform.url("product", &format!("/products/{}", product["id"]));
    let other_url = platform.url("product", &format!("/products/{}", other["id"]));
    let price = || async {
        let read: Value = platform.http().get(&url).send().await?.json().await?;
        anyhow::Ok(read["price"].clone())
    };
    // Read twice: the second read is a cache hit, so Redis holds the product.
    assert_eq!(price().await?, json!(5.0));
    assert_eq!(price().await?, json!(5.0));

    proxy.pause();
    let response = platform
        .http()
        .put(&url)
        .header("authorization", user.bearer())
        .json(&json!({ "price": "7.25" }))
        .send()
        .await?;
    assert_eq!(response.status(), 200, "the write does not wait for Redis");
    assert_eq!(price().await?, json!(7.25), "while Redis stalls");
    // The stalled connection is torn down, the DEL it held with it; Redis answers again.
    proxy.cut();
    proxy.resume();
    // Reads of another product bring the host's Redis connection back first, so that the
    // reads below do reach the entry the lost DEL left behind.
    for _ in 0..5 {
        platform.http().get(&other_url).send().await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for _ in 0..20 {
        assert_eq!(price().await?, json!(7.25), "after Redis answers again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
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
