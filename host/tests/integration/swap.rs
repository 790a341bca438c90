//! Hot swap: `platform deploy`, `rollback` and `up --watch` replace one service's component
//! inside the running host, under load, without a failed request; refused versions leave the
//! old one serving; the admin API needs its token; a restart comes back with the last
//! deployed versions from the compiled-code cache.

use crate::support::{
    cargo_build, component_path, eventually, fixture_config, fixture_path, free_ports, set,
    workspace_root, Platform, RunNames, Test,
};
use anyhow::ensure;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    // These start hosts of their own, on the backend set of the run they belong to.
    let mut tests = crate::tests![
        deploy_and_rollback_under_load_fail_no_request,
        refused_versions_leave_the_running_one_serving,
        the_admin_api_needs_its_token,
        the_admin_api_stays_on_loopback_without_an_explicit_token,
        a_restart_comes_back_with_the_last_deployed_versions,
        a_damaged_recorded_version_falls_back_to_the_previous_one_at_start,
        a_corrupt_history_costs_its_service_the_history_not_the_host_its_start,
        a_host_killed_during_a_deploy_comes_back_consistent,
        swapping_the_consumer_loses_and_repeats_no_message,
    ];
    // Rebuilds a shared fixture: once is enough.
    tests.extend(crate::real_backend_tests![
        watch_swaps_on_a_source_change_and_survives_a_compile_error,
    ]);
    tests
}

/// The version `service`'s fixture answers with.
async fn version_of(platform: &Platform, service: &str) -> anyhow::Result<String> {
    let body: Value = platform
        .http()
        .get(platform.url(service, "/version"))
        .send()
        .await?
        .json()
        .await?;
    Ok(body["version"].as_str().unwrap_or_default().to_string())
}

/// Per client: the versions it saw, in order, and its failures.
#[derive(Default)]
struct ClientLog {
    versions: Vec<String>,
    failures: Vec<String>,
}

async fn deploy_and_rollback_under_load_fail_no_request(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary", "bystander"],
        &["database", "logging"],
    );
    let platform = Arc::new(Platform::start(names, config).await?);
    let result = swap_under_load(&platform).await;
    platform.stop().await;
    result
}

async fn swap_under_load(platform: &Arc<Platform>) -> anyhow::Result<()> {
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (platform, running) = (platform.clone(), running.clone());
        // Six clients on the swapped service, two on the other one.
        let (service, path) = if client < 6 {
            ("canary", "/version")
        } else {
            ("bystander", "/ok")
        };
        clients.push(tokio::spawn(async move {
            let mut log = ClientLog::default();
            while running.load(Ordering::Relaxed) {
                match platform
                    .http()
                    .get(platform.url(service, path))
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 200 => {
                        let body: Value = response.json().await.unwrap_or_default();
                        log.versions
                            .push(body["version"].as_str().unwrap_or("ok").to_string());
                    }
                    Ok(response) => log
                        .failures
                        .push(format!("{service}: {}", response.status())),
                    Err(error) => log.failures.push(format!("{service}: {error}")),
                }
            }
            log
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let v2 = fixture_path("v2").display().to_string();
    let deployed = platform
        .cli(&["deploy", "canary", &v2, "--json"])
        .await?
        .json()?;
    assert_eq!(deployed["service"], "canary");
    assert_eq!(
        version_of(platform, "canary").await?,
        "v2",
        "the next request after the deploy"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rolled_back = platform
        .cli(&["rollback", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(rolled_back["digest"], deployed["previous"]);
    assert_eq!(
        version_of(platform, "canary").await?,
        "v1",
        "the next request after the rollback"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::Relaxed);

    let mut served = 0;
    for client in clients {
        let log = client.await?;
        assert!(
            log.failures.is_empty(),
            "failed requests during the swaps: {:?}",
            log.failures
        );
        served += log.versions.len();
        // Each client's requests are sequential: it sees v1, then v2, then v1 again, never
        // an old version after a newer one (bystander clients only ever see "ok").
        let mut phases: Vec<&str> = log.versions.iter().map(String::as_str).collect();
        phases.dedup();
        assert!(
            ["v1", "v2", "v1"].starts_with(&phases) || phases == ["v2", "v1"] || phases == ["ok"],
            "versions out of order: {phases:?}"
        );
    }
    assert!(served > 100, "only {served} requests were served");

    let ps = platform.cli(&["ps", "--json"]).await?.json()?;
    let canary = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "canary")
        .unwrap();
    assert_eq!(canary["source"], "rollback");
    assert_eq!(canary["errors"], 0);
    Ok(())
}

async fn refused_versions_leave_the_running_one_serving(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, refuse_versions).await
}

async fn refuse_versions(platform: &Platform) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let garbage = scratch.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component")?;
    // A valid, empty component: it exports nothing.
    let empty = scratch.path().join("empty.wasm");
    std::fs::write(&empty, [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00])?;
    let cases = [
        (garbage.display().to_string(), "not a valid component"),
        (
            empty.display().to_string(),
            "does not target the platform:service/service world",
        ),
        (
            component_path("order").display().to_string(),
            "imports `messaging`, which this service was not granted",
        ),
        (
            fixture_path("routes-trap").display().to_string(),
            "route table",
        ),
        (
            fixture_path("unhealthy").display().to_string(),
            "health check failed: unhealthy is unhealthy on purpose",
        ),
    ];
    let before = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    for (file, reason) in cases {
        let output = platform.cli(&["deploy", "canary", &file]).await?;
        assert_eq!(output.code, 4, "{file}: {output:?}");
        assert!(
            output.stderr.contains(reason),
            "{file}: expected `{reason}` in {}",
            output.stderr
        );
        assert_eq!(version_of(platform, "canary").await?, "v1");
    }
    let after = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(before, after, "refused versions are not recorded");

    let output = platform.cli(&["deploy", "nope"]).await?;
    assert_eq!(output.code, 2);
    assert!(
        output.stderr.contains("unknown service `nope`"),
        "{}",
        output.stderr
    );
    let output = platform
        .cli(&["deploy", "canary", "/nonexistent.wasm"])
        .await?;
    assert_eq!(output.code, 2);
    assert!(
        output.stderr.contains("/nonexistent.wasm"),
        "{}",
        output.stderr
    );
    let output = platform.cli(&["rollback", "canary"]).await?;
    assert_eq!(output.code, 4);
    assert!(
        output.stderr.contains("no earlier version"),
        "{}",
        output.stderr
    );
    Ok(())
}

async fn the_admin_api_needs_its_token(shared: &'static Platform) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, check_admin_token).await
}

async fn check_admin_token(platform: &Platform) -> anyhow::Result<()> {
    let http = platform.http();
    let deploy = platform.admin_url("/v1/services/canary/deploy");
    let v2 = std::fs::read(fixture_path("v2"))?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let admin_address = platform.config["admin"]["bind"]
        .as_str()
        .unwrap()
        .to_string();
    for token in [None, Some("wrong"), Some("")] {
        // A client that waits for `100 Continue` gets the 401 before it sends its upload:
        // the host reads none of it.
        let mut stream = tokio::net::TcpStream::connect(&admin_address).await?;
        let authorization = token
            .map(|token| format!("authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /v1/services/canary/deploy HTTP/1.1\r\nhost: admin\r\n{authorization}\
             content-length: {}\r\nexpect: 100-continue\r\n\r\n",
            v2.len()
        );
        stream.write_all(head.as_bytes()).await?;
        let mut answer = vec![0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await??;
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "token {token:?}: {answer}"
        );
        let response = http.get(platform.admin_url("/v1/services")).send().await?;
        assert_eq!(response.status(), 401);
    }
    // The CLI with a wrong token says so, and sends no component.
    let wrong = platform
        .cli_with_token(
            "wrong",
            &[
                "deploy",
                "canary",
                &fixture_path("v2").display().to_string(),
            ],
        )
        .await?;
    assert_eq!(wrong.code, 4, "{wrong:?}");
    assert!(wrong.stderr.contains("admin token"), "{}", wrong.stderr);
    assert_eq!(
        version_of(platform, "canary").await?,
        "v1",
        "nothing changed"
    );

    let token = platform.admin_token()?;
    let mode = std::fs::metadata(
        platform
            .config_path()
            .with_file_name(".platform/admin-token"),
    )?;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    let response = http
        .post(&deploy)
        .header("authorization", format!("Bearer {token}"))
        .body(v2)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(version_of(platform, "canary").await?, "v2");

    // Uploads over the limit are refused before the body is read...
    let mut stream =
        tokio::net::TcpStream::connect(platform.config["admin"]["bind"].as_str().unwrap()).await?;
    let request = format!(
        "POST /v1/services/canary/deploy HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {token}\r\ncontent-length: 2000000000\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // ...and the CLI does not even send them.
    let big = platform.config_path().with_file_name("big.wasm");
    std::fs::write(&big, vec![0u8; 65 * 1024 * 1024])?;
    let output = platform
        .cli(&["deploy", "canary", &big.display().to_string()])
        .await?;
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("max_upload_mb"), "{}", output.stderr);
    assert_eq!(version_of(platform, "canary").await?, "v2");

    // The host is down: the CLI says so, with its own exit code.
    platform.stop().await;
    let output = platform.cli(&["ps"]).await?;
    assert_eq!(output.code, 3, "{output:?}");
    assert!(output.stderr.contains("not running"), "{}", output.stderr);
    Ok(())
}

async fn the_admin_api_stays_on_loopback_without_an_explicit_token(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let mut config = fixture_config(
        shared.backends(),
        &names,
        &["canary"],
        &["database", "logging"],
    );
    set(
        &mut config,
        &["admin", "bind"],
        format!("0.0.0.0:{}", free_ports(1)[0]).into(),
    );
    let error = match Platform::start(names, config).await {
        Ok(platform) => {
            platform.stop().await;
            anyhow::bail!("the admin API listened on 0.0.0.0 without PLATFORM_ADMIN_TOKEN");
        }
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("is not a loopback address: set PLATFORM_ADMIN_TOKEN"),
        "{error}"
    );
    Ok(())
}

async fn a_restart_comes_back_with_the_last_deployed_versions(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary", "bystander"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, restart_with_state).await
}

async fn restart_with_state(platform: &Platform) -> anyhow::Result<()> {
    let v2 = fixture_path("v2").display().to_string();
    platform
        .cli(&["deploy", "canary", &v2, "--json"])
        .await?
        .json()?;
    let history = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(history.as_array().map(Vec::len), Some(2));

    platform.restart().await?;
    assert_eq!(
        version_of(platform, "canary").await?,
        "v2",
        "the last deployed version, not platform.toml's"
    );
    assert_eq!(version_of(platform, "bystander").await?, "v1");
    let after = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(after, history, "the history survives the restart");
    assert_eq!(after[0]["current"], true);
    assert_eq!(after[0]["source"], "deploy");
    assert_eq!(after[1]["source"], "up");

    // The second start loaded every component from the compiled-code cache.
    let log = platform.log();
    let loads: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("component loaded"))
        .collect();
    assert_eq!(loads.len(), 4, "two services, two starts: {loads:#?}");
    assert!(
        loads[2..]
            .iter()
            .all(|line| line.contains("compiled=Cache")),
        "{loads:#?}"
    );
    Ok(())
}

async fn a_damaged_recorded_version_falls_back_to_the_previous_one_at_start(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, fall_back_at_start).await
}

async fn fall_back_at_start(platform: &Platform) -> anyhow::Result<()> {
    let v2 = fixture_path("v2").display().to_string();
    let deployed = platform
        .cli(&["deploy", "canary", &v2, "--json"])
        .await?
        .json()?;
    let v2_digest = deployed["digest"].as_str().unwrap_or_default().to_string();
    let v1_digest = deployed["previous"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(version_of(platform, "canary").await?, "v2");

    // The stored copy of the last deployed version is damaged on disk (half of it lost).
    let stored = platform
        .config_path()
        .with_file_name(".platform")
        .join("services/canary")
        .join(format!("{v2_digest}.wasm"));
    let bytes = std::fs::read(&stored)?;
    std::fs::write(&stored, &bytes[..bytes.len() / 2])?;

    platform.restart().await?;
    assert_eq!(
        version_of(platform, "canary").await?,
        "v1",
        "the previous good version serves"
    );
    let log = platform.log();
    let refusal = log
        .lines()
        .find(|line| line.contains("refused at start"))
        .unwrap_or_default();
    assert!(
        refusal.contains(&v2_digest[..12]) && refusal.contains("not a valid component"),
        "the refusal names the version and why: {refusal:?}"
    );
    let versions = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(versions[0]["digest"], v1_digest.as_str(), "{versions:#}");
    assert_eq!(versions[0]["current"], true);
    assert_eq!(versions[0]["source"], "up");
    Ok(())
}

async fn a_corrupt_history_costs_its_service_the_history_not_the_host_its_start(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary", "bystander"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, corrupt_history).await
}

async fn corrupt_history(platform: &Platform) -> anyhow::Result<()> {
    let v2 = fixture_path("v2").display().to_string();
    for service in ["canary", "bystander"] {
        platform
            .cli(&["deploy", service, &v2, "--json"])
            .await?
            .json()?;
    }
    // A crash of the disk, not of the host: canary's history is cut short.
    let history = platform
        .config_path()
        .with_file_name(".platform/services/canary/history.json");
    std::fs::write(&history, b"[{\"digest\": \"abc")?;

    platform.restart().await?;
    assert_eq!(
        version_of(platform, "canary").await?,
        "v1",
        "canary serves the configured component"
    );
    assert_eq!(
        version_of(platform, "bystander").await?,
        "v2",
        "bystander keeps its own"
    );
    assert!(
        platform.log().contains("the deploy history is unreadable"),
        "the fallback is loud"
    );
    let versions = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions:#}");
    assert!(history.with_extension("json.corrupt").exists());
    Ok(())
}

async fn a_host_killed_during_a_deploy_comes_back_consistent(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["canary"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, killed_during_deploys).await
}

/// SIGKILL at several points of a deploy (before, while and after it compiles and
/// records): every restart serves a version whose record is the newest of the history.
async fn killed_during_deploys(platform: &Platform) -> anyhow::Result<()> {
    for (round, delay_ms) in [0u64, 30, 80, 150, 400].into_iter().enumerate() {
        let variant = if round % 2 == 0 { "v2" } else { "v1" };
        let file = fixture_path(variant).display().to_string();
        let args = ["deploy", "canary", file.as_str(), "--json"];
        let deploying = platform.cli(&args);
        tokio::pin!(deploying);
        let finished = tokio::select! {
            _ = &mut deploying => true,
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => false,
        };
        platform.crash().await;
        if !finished {
            // The CLI sees the host go away (or its answer, if it came first).
            let _ = deploying.await;
        }
        platform.restart().await?;
        let serving = version_of(platform, "canary").await?;
        assert!(
            serving == "v1" || serving == "v2",
            "round {round}: serving {serving:?}"
        );
        let health: Value = platform
            .http()
            .get(platform.url("canary", "/health"))
            .send()
            .await?
            .json()
            .await?;
        let versions = platform
            .cli(&["versions", "canary", "--json"])
            .await?
            .json()?;
        assert_eq!(
            versions[0]["digest"], health["component"]["digest"],
            "round {round} (killed after {delay_ms} ms): the newest record serves"
        );
        assert_eq!(versions[0]["current"], true, "round {round}");
    }
    Ok(())
}

async fn swapping_the_consumer_loses_and_repeats_no_message(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let platform = Platform::start_shop(shared.backends()).await?;
    let result = swap_consumer(&platform).await;
    platform.stop().await;
    result
}

async fn swap_consumer(platform: &Platform) -> anyhow::Result<()> {
    const EVENTS: usize = 60;
    let user = platform.new_user().await?;
    let queue = platform.queue();
    let acked = [("queue", queue.as_str()), ("outcome", "ack")];
    ensure!(
        platform
            .metric("notification", "messages_consumed_total", &acked)
            .await?
            == 0.0
    );

    let publisher = async {
        for order_id in 1..=EVENTS {
            let event = json!({
                "event": "order.created",
                "event_id": uuid::Uuid::new_v4().to_string(),
                "occurred_at": "2026-11-26T10:00:00Z",
                "data": {
                    "order_id": order_id, "user_id": user.id, "username": "swap", "product_id": 1,
                    "product_name": "Widget", "quantity": 1, "unit_price": 1.5, "total_price": 1.5,
                    "status": "pending", "created_at": "2026-11-26T10:00:00Z"
                }
            });
            platform
                .publish(&[("order.created", event.to_string().as_bytes())])
                .await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    };
    // Swap the consumer's component twice while the events flow.
    let swaps = async {
        let notification = component_path("notification").display().to_string();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deployed = platform
            .cli(&["deploy", "notification", &notification, "--json"])
            .await?
            .json()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The same build again, by its digest: a second swap of the running consumer.
        let digest = deployed["digest"].as_str().unwrap_or_default().to_string();
        platform
            .cli(&["rollback", "notification", "--to", &digest, "--json"])
            .await?
            .json()?;
        anyhow::Ok(())
    };
    let (published, swapped) = tokio::join!(publisher, swaps);
    published?;
    swapped?;

    let count = eventually(
        "every event to be acknowledged",
        Duration::from_secs(30),
        || async {
            let count = platform
                .metric("notification", "messages_consumed_total", &acked)
                .await?;
            Ok((count >= EVENTS as f64).then_some(count))
        },
    )
    .await?;
    assert_eq!(
        count, EVENTS as f64,
        "each message was handled exactly once"
    );
    for outcome in ["retry", "dead_letter"] {
        let labels = [("queue", queue.as_str()), ("outcome", outcome)];
        assert_eq!(
            platform
                .metric("notification", "messages_consumed_total", &labels)
                .await?,
            0.0,
            "{outcome}"
        );
    }
    let notifications: Vec<Value> = platform
        .http()
        .get(platform.url("notification", "/notifications?limit=100"))
        .header("authorization", user.bearer())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        notifications.len(),
        EVENTS,
        "one notification per event, none lost"
    );
    Ok(())
}

async fn watch_swaps_on_a_source_change_and_survives_a_compile_error(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let sources = tempfile::tempdir()?;
    std::fs::write(
        sources.path().join("version.rs"),
        "const VERSION: &str = \"v1\"; const HEALTHY: bool = true; const ROUTES_TRAP: bool = false;",
    )?;
    // The watched build writes the shared artifact: build it from these sources first.
    cargo_build(&["misbehaving"], Some(sources.path()))?;
    let artifact = component_path("misbehaving");
    let mut config = fixture_config(
        shared.backends(),
        &names,
        &["canary"],
        &["database", "logging"],
    );
    let build = format!(
        "FIXTURE_SOURCE_DIR={} {} build --release --target wasm32-wasip2 -p misbehaving --manifest-path {}",
        sources.path().display(),
        env!("CARGO"),
        workspace_root().join("Cargo.toml").display()
    );
    set(
        &mut config,
        &["services", "canary", "component"],
        artifact.display().to_string().into(),
    );
    set(&mut config, &["services", "canary", "build"], build.into());
    set(
        &mut config,
        &["services", "canary", "watch"],
        vec![sources.path().display().to_string()].into(),
    );
    let platform = Platform::start_with(names, config, &["--watch"]).await?;
    let result = watch_sources(&platform, sources.path()).await;
    platform.stop().await;
    // Leave the default build in place for other tests.
    cargo_build(&["misbehaving"], None)?;
    result
}

async fn watch_sources(platform: &Platform, sources: &std::path::Path) -> anyhow::Result<()> {
    assert_eq!(version_of(platform, "canary").await?, "v1");
    std::fs::write(
        sources.join("version.rs"),
        "const VERSION: &str = \"watched\"; const HEALTHY: bool = true; const ROUTES_TRAP: bool = false;",
    )?;
    eventually(
        "the edited version to serve",
        Duration::from_secs(120),
        || async { Ok((version_of(platform, "canary").await? == "watched").then_some(())) },
    )
    .await?;

    std::fs::write(sources.join("version.rs"), "const VERSION: &str = ")?;
    eventually(
        "the compile error to be reported",
        Duration::from_secs(120),
        || async { Ok(platform.log().contains("build failed").then_some(())) },
    )
    .await?;
    let log = platform.log();
    assert!(
        log.contains("error"),
        "the compiler's error is printed: {log}"
    );
    assert!(log.contains("keeps serving"), "{log}");
    assert_eq!(
        version_of(platform, "canary").await?,
        "watched",
        "the running version is untouched"
    );
    assert!(platform.is_running());
    let history = platform
        .cli(&["versions", "canary", "--json"])
        .await?
        .json()?;
    assert_eq!(history[0]["source"], "watch");
    Ok(())
}
