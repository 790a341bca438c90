//! Opt-in instance reuse (`[services.<name>.instances] reuse = true`): what carries over
//! between requests (the instance's memory, here a counter the fixture keeps in a static)
//! and what never does: the memory of a trapped, timed-out, expired or retired instance,
//! or of another service's.

use crate::support::{fixture_config, fixture_path, set, Platform, RunNames, Test};
use serde_json::Value;
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    // These start hosts of their own, on the backend set of the run they belong to.
    crate::tests![
        reused_instances_keep_memory_until_a_trap_a_timeout_or_their_limits,
        services_reuse_only_their_own_instances_and_never_by_default,
    ]
}

const IDLE_TIMEOUT_SECONDS: u64 = 1;

fn reuse_config(backends: crate::support::Backends, names: &RunNames) -> toml::Table {
    let mut config = fixture_config(
        backends,
        names,
        &["reusing", "neighbour", "fresh"],
        &["database", "logging"],
    );
    for service in ["reusing", "neighbour"] {
        let path = |key: &'static str| ["services", service, "instances", key];
        set(&mut config, &path("reuse"), true.into());
        set(&mut config, &path("max_requests"), 3.into());
        set(
            &mut config,
            &path("idle_timeout_seconds"),
            (IDLE_TIMEOUT_SECONDS as i64).into(),
        );
    }
    config
}

/// How many requests the instance that answered `GET /counter` has served.
async fn served(platform: &Platform, service: &str) -> anyhow::Result<u64> {
    let response = platform
        .http()
        .get(platform.url(service, "/counter"))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "{service}: {}", response.status());
    let body: Value = response.json().await?;
    body["served"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no count in {body}"))
}

async fn status(platform: &Platform, service: &str, path: &str) -> anyhow::Result<u16> {
    let response = platform
        .http()
        .get(platform.url(service, path))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn reused_instances_keep_memory_until_a_trap_a_timeout_or_their_limits(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = reuse_config(shared.backends(), &names);
    crate::support::with_platform(names, config, async |platform| {
        // One client, one request at a time: each request gets the instance the last left.
        let counts = [
            served(platform, "reusing").await?,
            served(platform, "reusing").await?,
            served(platform, "reusing").await?,
            served(platform, "reusing").await?,
        ];
        assert_eq!(
            counts,
            [1, 2, 3, 1],
            "max_requests = 3, then a fresh instance"
        );

        // A trap discards the instance it ran on.
        assert_eq!(status(platform, "reusing", "/panic").await?, 500);
        assert_eq!(served(platform, "reusing").await?, 1);
        // So does a timeout.
        assert_eq!(status(platform, "reusing", "/loop").await?, 500);
        assert_eq!(served(platform, "reusing").await?, 1);
        // And a transaction left open.
        assert_eq!(status(platform, "reusing", "/open-transaction").await?, 200);
        assert_eq!(served(platform, "reusing").await?, 1);

        // An instance idle past idle_timeout_seconds is not used again.
        assert_eq!(served(platform, "reusing").await?, 2);
        tokio::time::sleep(Duration::from_millis(IDLE_TIMEOUT_SECONDS * 1000 + 300)).await;
        assert_eq!(served(platform, "reusing").await?, 1);

        // A new version starts with fresh instances: none of the old version's memory.
        assert_eq!(served(platform, "reusing").await?, 2);
        let v2 = fixture_path("v2").display().to_string();
        let output = platform.cli(&["deploy", "reusing", &v2]).await?;
        anyhow::ensure!(output.code == 0, "deploy: {}", output.stderr);
        assert_eq!(served(platform, "reusing").await?, 1);
        assert_eq!(served(platform, "reusing").await?, 2);
        Ok(())
    })
    .await
}

async fn services_reuse_only_their_own_instances_and_never_by_default(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = reuse_config(shared.backends(), &names);
    crate::support::with_platform(names, config, async |platform| {
        assert_eq!(served(platform, "reusing").await?, 1);
        assert_eq!(served(platform, "reusing").await?, 2);
        // The same component under another service name: its own instances.
        assert_eq!(served(platform, "neighbour").await?, 1);
        assert_eq!(served(platform, "reusing").await?, 3);
        assert_eq!(served(platform, "neighbour").await?, 2);
        // Without `instances.reuse`, every request gets a fresh instance.
        for _ in 0..3 {
            assert_eq!(served(platform, "fresh").await?, 1);
        }
        Ok(())
    })
    .await
}
