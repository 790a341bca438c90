//! The OpenAPI documents tools can trust: schemathesis (`--checks all`, pinned in
//! `.ci/run`) generates requests from each service's `/openapi.json` and checks every
//! answer against it: statuses documented, response bodies matching their schemas,
//! schema-valid requests accepted and invalid ones refused. Exceptions, each with its
//! reason, are in `schemathesis.toml` at the repository root.
//!
//! It runs against a host of its own: its requests delete and change whatever ids they
//! guess, which must not be other tests' products.

use crate::support::{
    free_ports, shop_config_on, with_platform, workspace_root, Platform, RunNames, Test,
};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::process::Command;

pub fn tests() -> Vec<Test> {
    crate::tests![schemathesis_finds_nothing_on_any_service]
}

/// Examples per operation and phase: enough to cover every documented status, few enough
/// to keep the run near a minute. The seed is fixed so a failure reproduces; run it by hand
/// with another seed (or none) to explore further.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "20261201";

async fn schemathesis_finds_nothing_on_any_service(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    if Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("CI").is_some() {
            bail!("schemathesis is not installed (.ci/run installs the pinned version)");
        }
        eprintln!(
            "SKIPPED: schemathesis is not installed; `pip install schemathesis==4.32.5` to run it"
        );
        return Ok(());
    }
    let names = RunNames::new();
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let config = shop_config_on(shared.backends(), &names, &ports);
    with_platform(names, config, async |platform| {
        let user = platform.new_user().await?;
        let reports = tempfile::tempdir()?;
        let mut failures = Vec::new();
        for service in ["user", "product", "order", "notification"] {
            let run = tokio::process::Command::new("schemathesis")
                .arg("--config-file")
                .arg(workspace_root().join("schemathesis.toml"))
                .args(["run", &platform.url(service, "/openapi.json")])
                .args([
                    "--checks",
                    "all",
                    "--max-examples",
                    MAX_EXAMPLES,
                    "--seed",
                    SEED,
                ])
                .args(["--generation-database", "none", "--workers", "1"])
                .args(["-H", &format!("Authorization: {}", user.bearer())])
                .arg("--report-dir")
                .arg(reports.path())
                .env("NO_COLOR", "1")
                .current_dir(reports.path())
                .output()
                .await
                .context("running schemathesis")?;
            if !run.status.success() {
                let output = String::from_utf8_lossy(&run.stdout);
                failures.push(format!(
                    "---- {service}: schemathesis {} ----\n{}",
                    run.status,
                    output
                        .lines()
                        .rev()
                        .take(80)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("\n"));
        }
        Ok(())
    })
    .await
}
