//! What a person sees in a browser: headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `host/tests/browser/`, pinned there; `.ci/run` installs both), with
//! every request beyond the host refused, as offline:
//! - a service's `/docs` must render every operation of the service's OpenAPI document;
//! - the console (`/console` on the admin listener) refuses a wrong token, lists the shop,
//!   shows a CLI deploy without a reload, rolls back under load with no failed request,
//!   shows a dead letter with its reason and replays it into a notification.
//!
//! Screenshots go to `target/browser-screenshots/<backend set>/` and
//! `target/browser-screenshots/console/` for a person to look at.

use crate::support::{
    component_path, eventually, shop_config_on, with_platform, workspace_root, Backends, Platform,
    RunNames, Test,
};
use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub fn tests() -> Vec<Test> {
    let mut tests = crate::tests![docs_render_offline_in_a_browser];
    // The dead letter is made by taking a right away from the consumer's PostgreSQL role.
    tests.extend(crate::real_backend_tests![
        the_console_deploys_rolls_back_and_replays
    ]);
    tests
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Why the browser tests cannot run here, if they cannot.
fn missing_tools(scripts: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (Debian's `chromium`)"));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node is missing".into());
    }
    if !scripts.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is missing (`npm ci --prefix {}`)",
            scripts.display()
        ));
    }
    None
}

/// The browser scripts' folder, or `None` (the test skipped) when the tools are missing
/// outside CI.
fn scripts() -> anyhow::Result<Option<std::path::PathBuf>> {
    let scripts = workspace_root().join("host/tests/browser");
    if let Some(missing) = missing_tools(&scripts) {
        if std::env::var_os("CI").is_some() {
            bail!("{missing}: .ci/run installs it");
        }
        eprintln!("SKIPPED: {missing}");
        return Ok(None);
    }
    Ok(Some(scripts))
}

async fn docs_render_offline_in_a_browser(platform: &'static Platform) -> anyhow::Result<()> {
    let Some(scripts) = scripts()? else {
        return Ok(());
    };
    let _alone = crate::support::cpu_heavy().await;
    let document: Value = platform
        .http()
        .get(platform.url("product", "/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let operations: usize = document["paths"]
        .as_object()
        .context("paths")?
        .values()
        .map(|path| path.as_object().map_or(0, |methods| methods.len()))
        .sum();
    let screenshots = workspace_root()
        .join("target/browser-screenshots")
        .join(platform.backends().label());
    let run = tokio::process::Command::new("node")
        .arg(scripts.join("docs.mjs"))
        .arg(platform.url("product", ""))
        .arg(operations.to_string())
        .arg(&screenshots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .await
        .context("running node")?;
    let report = String::from_utf8_lossy(&run.stdout);
    anyhow::ensure!(
        run.status.success(),
        "the docs page did not render {operations} operations offline: {report}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_str(report.trim()).context("the script's report")?;
    assert_eq!(report["operations"], operations);
    assert_eq!(
        report["blocked"],
        serde_json::json!([]),
        "nothing beyond the host was asked for"
    );
    assert!(screenshots.join("docs.png").exists());
    Ok(())
}

/// `console.mjs` running: one step sent, one answer read.
struct Console {
    child: Child,
    steps: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Console {
    async fn start(scripts: &Path, admin: &str, screenshots: &Path) -> anyhow::Result<Console> {
        let mut child = tokio::process::Command::new("node")
            .arg(scripts.join("console.mjs"))
            .arg(admin)
            .arg(screenshots)
            .env("CHROMIUM", CHROMIUM)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running node")?;
        Ok(Console {
            steps: child.stdin.take().context("stdin")?,
            answers: BufReader::new(child.stdout.take().context("stdout")?).lines(),
            child,
        })
    }

    /// Runs `step` in the browser; its answer, which must say nothing beyond the host was
    /// asked for and the page logged no error.
    async fn step(&mut self, step: Value) -> anyhow::Result<Value> {
        let mut line = step.to_string();
        line.push('\n');
        self.steps.write_all(line.as_bytes()).await?;
        let answer = tokio::time::timeout(Duration::from_secs(60), self.answers.next_line())
            .await
            .with_context(|| format!("no answer to {step}"))??
            .with_context(|| format!("the browser script ended during {step}"))?;
        let answer: Value = serde_json::from_str(&answer).context("a step's answer")?;
        ensure!(answer["ok"] == true, "{step} failed: {answer}");
        ensure!(
            answer["blocked"] == json!([]),
            "asked beyond the host: {answer}"
        );
        ensure!(
            answer["problems"] == json!([]),
            "the page logged errors: {answer}"
        );
        Ok(answer)
    }
}

async fn the_console_deploys_rolls_back_and_replays(_: &'static Platform) -> anyhow::Result<()> {
    let Some(scripts) = scripts()? else {
        return Ok(());
    };
    let names = RunNames::new();
    let ports: std::collections::BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(crate::support::free_ports(4))
        .collect();
    let mut config = shop_config_on(Backends::Real, &names, &ports);
    // A failure dead-letters at once, so the test needs no long wait.
    let subscription = config["services"]["notification"]["subscriptions"][0]
        .as_table_mut()
        .context("the notification subscription")?;
    subscription.insert("max_retry_attempts".into(), 1.into());
    subscription.insert("max_retry_age_seconds".into(), 1.into());
    let _alone = crate::support::cpu_heavy().await;
    with_platform(names, config, async |platform| {
        let screenshots = workspace_root().join("target/browser-screenshots/console");
        let _ = std::fs::remove_dir_all(&screenshots);
        let mut console = Console::start(&scripts, &platform.admin_url(""), &screenshots).await?;
        let result = console_steps(platform, &mut console).await;
        drop(console.steps);
        let _ = tokio::time::timeout(Duration::from_secs(10), console.child.wait()).await;
        result
    })
    .await
}

async fn console_steps(platform: &Platform, console: &mut Console) -> anyhow::Result<()> {
    let refused = console
        .step(json!({"step": "login", "token": "not-the-admin-token"}))
        .await?;
    assert_eq!(refused["refused"], true, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Wrong token"),
        "{refused}"
    );

    let token = platform.admin_token()?;
    let logged_in = console
        .step(json!({"step": "login", "token": token}))
        .await?;
    assert_eq!(logged_in["refused"], false, "{logged_in}");
    let ps = platform.cli(&["ps", "--json"]).await?.json()?;
    let listed = |services: &Value| -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = services
            .as_array()
            .into_iter()
            .flatten()
            .map(|service| {
                let name = service["name"].as_str().unwrap_or_default().to_string();
                (
                    name,
                    service["version"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(
        listed(&logged_in["services"]),
        listed(&ps),
        "the four services, as ps shows them"
    );
    assert_eq!(listed(&ps).len(), 4);

    // A deploy by the CLI shows up by itself.
    let original = ps
        .as_array()
        .into_iter()
        .flatten()
        .find(|service| service["name"] == "product")
        .context("product in ps")?["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let built = std::fs::read(component_path("product"))?;
    let variant = tempfile::NamedTempFile::new()?;
    std::fs::write(
        variant.path(),
        crate::support::component_variant(&built, rand_nonce()),
    )?;
    let deployed = platform
        .cli(&[
            "deploy",
            "product",
            &variant.path().display().to_string(),
            "--json",
        ])
        .await?;
    ensure!(deployed.code == 0, "{deployed:?}");
    let deployed = deployed.json()?;
    let deployed_digest = deployed["digest"].as_str().unwrap_or_default().to_string();
    let deployed = deployed["version"].as_str().unwrap_or_default().to_string();
    let seen = console
        .step(json!({"step": "wait_version", "service": "product", "version": deployed}))
        .await?;
    assert_eq!(seen["navigations"], 1, "shown without a reload: {seen}");

    // Rollback from the console while clients keep asking for a product.
    let opened = console
        .step(json!({"step": "open", "service": "product"}))
        .await?;
    assert_eq!(
        opened["history"][0]["version"],
        deployed.as_str(),
        "{opened}"
    );
    assert_eq!(opened["history"][0]["serving"], true, "{opened}");
    assert!(
        opened["serving"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("digest {deployed_digest}")),
        "the serving digest is shown: {opened}"
    );
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "2.50", 5).await?;
    let product_url = platform.url("product", &format!("/products/{}", product["id"]));
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, running) = (
                platform.http().clone(),
                product_url.clone(),
                running.clone(),
            );
            tokio::spawn(async move {
                let (mut answered, mut failures) = (0usize, Vec::new());
                while running.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => answered += 1,
                        Ok(response) => failures.push(response.status().to_string()),
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                (answered, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rolled_back = console
        .step(json!({"step": "rollback", "version": original}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    let (mut answered, mut failures) = (0, Vec::new());
    for client in clients {
        let (ok, failed) = client.await?;
        answered += ok;
        failures.extend(failed);
    }
    let rolled_back = rolled_back?;
    assert_eq!(rolled_back["kind"], "ok", "{rolled_back}");
    assert!(
        rolled_back["result"]
            .as_str()
            .unwrap_or_default()
            .contains(&original),
        "{rolled_back}"
    );
    assert!(
        failures.is_empty(),
        "failed requests during the rollback: {failures:?}"
    );
    assert!(answered > 0, "the load ran");
    let health: Value = platform
        .http()
        .get(platform.url("product", "/health"))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        health["component"]["digest"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&original),
        "the product port serves the version chosen in the console: {health}"
    );
    console
        .step(json!({"step": "wait_version", "service": "product", "version": original}))
        .await?;

    // A dead letter: the consumer's role may not write notifications for a moment.
    console
        .step(json!({"step": "open", "service": "notification"}))
        .await?;
    let role = platform.database("notification");
    let mut database = platform.database_connection("notification").await?;
    let revoke = format!("REVOKE INSERT ON notifications FROM \"{role}\"");
    sqlx::query(&revoke).execute(&mut database).await?;
    let replayed = dead_letter_and_replay(platform, console, &user).await;
    // Given back whatever happened (the replay step gives it back first).
    let grant = format!("GRANT INSERT ON notifications TO \"{role}\"");
    sqlx::query(&grant).execute(&mut database).await?;
    replayed?;

    let narrow = console.step(json!({"step": "width", "width": 768})).await?;
    assert_eq!(
        narrow["overflowing"],
        json!([]),
        "readable at 768 px: {narrow}"
    );
    assert_eq!(
        narrow["scrollWidth"], 768,
        "no sideways scrolling at 768 px: {narrow}"
    );
    Ok(())
}

/// Publishes an order event the consumer cannot store, finds it in the console with its
/// reason, lets the consumer store again (the caller grants the right back once the dead
/// letter is seen), replays it from the console and waits for the notification.
async fn dead_letter_and_replay(
    platform: &Platform,
    console: &mut Console,
    user: &crate::support::TestUser,
) -> anyhow::Result<()> {
    let event_id = uuid::Uuid::new_v4().to_string();
    let order_id = crate::notification::synthetic_order_id();
    let event = crate::notification::created_event(&event_id, order_id, user, "console");
    platform
        .publish_event(&event.to_string(), &event_id)
        .await?;
    let queue = platform.queue();
    let dead = console
        .step(json!({"step": "dead_letter", "queue": queue, "contains": event_id}))
        .await?;
    assert!(
        dead["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("permission denied"),
        "the reason is shown: {dead}"
    );
    let errors = platform
        .cli(&["errors", "notification", "--json"])
        .await?
        .json()?;
    assert!(
        errors.as_array().into_iter().flatten().any(|entry| {
            entry["message"] == "message dead-lettered"
                && entry["fields"]["message_id"] == event_id.as_str()
        }),
        "`platform errors` lists the dead-lettering: {errors}"
    );
    let mut database = platform.database_connection("notification").await?;
    let grant = format!(
        "GRANT INSERT ON notifications TO \"{}\"",
        platform.database("notification")
    );
    sqlx::query(&grant).execute(&mut database).await?;
    let id = dead["id"].as_str().unwrap_or_default();
    let replayed = console
        .step(json!({"step": "replay", "queue": queue, "id": id}))
        .await?;
    assert_eq!(replayed["kind"], "ok", "{replayed}");
    crate::notification::wait_for_notification(platform, user, order_id, "order.created").await?;
    eventually(
        "the replayed letter to leave the queue",
        Duration::from_secs(10),
        || async {
            let listed = platform
                .cli(&["dlq", "list", &queue, "--json"])
                .await?
                .json()?;
            let still = listed.as_array().into_iter().flatten().any(|entry| {
                entry["payload"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&event_id)
            });
            Ok((!still).then_some(()))
        },
    )
    .await
}

fn rand_nonce() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}
