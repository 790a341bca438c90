//! What a person sees in a browser: headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `host/tests/browser/`, pinned there; `.ci/run` installs both) opens
//! a service's `/docs` with every request beyond the host refused, as offline, and Swagger UI
//! must render every operation of the service's OpenAPI document. A screenshot is written to
//! `target/browser-screenshots/<backend set>/` for a person to look at.

use crate::support::{workspace_root, Platform, Test};
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::Path;

pub fn tests() -> Vec<Test> {
    crate::tests![docs_render_offline_in_a_browser]
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

async fn docs_render_offline_in_a_browser(platform: &'static Platform) -> anyhow::Result<()> {
    let scripts = workspace_root().join("host/tests/browser");
    if let Some(missing) = missing_tools(&scripts) {
        if std::env::var_os("CI").is_some() {
            bail!("{missing}: .ci/run installs it");
        }
        eprintln!("SKIPPED: {missing}");
        return Ok(());
    }
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
