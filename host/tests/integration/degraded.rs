//! Backing services that are down: the contract requires product reads and writes to keep
//! working from the database when the cache is unreachable; database connections the server
//! closed, or a call abandoned, are never handed to another call.

use crate::support::{
    eventually, fixture_config, free_ports, set, shop_config, Backends, Platform, RunNames, Test,
    POSTGRES_URL,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    // Starts a host of its own with Redis on a closed port.
    crate::real_backend_tests![
        product_reads_and_writes_work_without_the_cache,
        an_invalidation_redis_missed_never_serves_the_old_price,
        database_connections_in_doubt_are_never_reused,
    ]
}

/// The host keeps its PostgreSQL connections between calls without pinging them (a round
/// trip each time, which sqlx's pool made twice per statement). So it must not hand out one
/// whose state it cannot vouch for: one the server closed while it sat idle, one whose
/// statement a call abandoned at its deadline, one a call left inside a transaction.
async fn database_connections_in_doubt_are_never_reused(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let mut config = fixture_config(
        Backends::Real,
        &names,
        &["misbehaving"],
        &["database", "logging"],
    );
    // Two connections, so every case below goes through all of them.
    set(&mut config, &["database", "max_connections"], 2.into());
    set(
        &mut config,
        &["services", "misbehaving", "request_timeout_ms"],
        700.into(),
    );
    let database = config["services"]["misbehaving"]["database"]
        .as_str()
        .expect("a database name")
        .to_string();
    crate::support::with_platform(names, config, async |platform| {
        let server = sqlx::PgPool::connect(POSTGRES_URL).await?;
        let served = async || -> anyhow::Result<()> {
            for _ in 0..4 {
                let response = platform
                    .http()
                    .get(platform.url("misbehaving", "/db"))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "GET /db: {}",
                    response.text().await?
                );
            }
            Ok(())
        };
        served().await?;

        // Calls that end (at their deadline) in the middle of a statement.
        let abandoned = futures::future::join_all((0..2).map(|_| {
            platform
                .http()
                .post(platform.url("misbehaving", "/sql"))
                .body("SELECT pg_sleep(3)")
                .send()
        }))
        .await;
        for response in abandoned {
            assert_eq!(response?.status(), 500, "the call ends at its deadline");
        }
        served().await?;

        // Calls that leave a transaction open: rolled back before the connection is reused.
        for _ in 0..4 {
            let response = platform
                .http()
                .get(platform.url("misbehaving", "/open-transaction"))
                .send()
                .await?;
            assert_eq!(response.status(), 200);
        }
        let in_transaction = "SELECT count(*) FROM pg_stat_activity \
                              WHERE datname = $1 AND state LIKE 'idle in transaction%'";
        eventually(
            "no connection left in a transaction",
            Duration::from_secs(5),
            || {
                let (server, database) = (server.clone(), database.clone());
                async move {
                    let open: i64 = sqlx::query_scalar(in_transaction)
                        .bind(&database)
                        .fetch_one(&server)
                        .await?;
                    Ok((open == 0).then_some(()))
                }
            },
        )
        .await?;
        served().await?;

        // The server closes every connection (a restart, an idle timeout): once they sat
        // idle past the host's 1 s without a check, they are checked, and no call fails.
        let closed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(&database)
        .fetch_all(&server)
        .await?;
        assert!(!closed.is_empty(), "the host held connections to close");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        served().await
    })
    .await
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
