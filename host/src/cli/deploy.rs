//! `platform deploy <service> [file.wasm]`: sends a new version to the running host.

use super::client::{block_on, AdminClient};
use super::{check_service, load_config, CommandError, CommandResult};
use crate::admin_api::{Deployed, Strategy};
use anyhow::anyhow;
use bytes::Bytes;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The service to deploy to.
    service: String,
    /// The component (default: the service's built artifact from the configuration).
    file: Option<PathBuf>,
    /// In a fleet: `all` hosts at once; `rolling`, one host after the other, each behind
    /// its health check; or `canary:<percent>`, that share of every host's requests until
    /// the fleet compares the versions and promotes or rolls back (`platform rollout status`
    /// follows it).
    #[arg(long, default_value = "all")]
    strategy: Strategy,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: DeployArgs) -> CommandResult {
    let config = load_config(config_path)?;
    check_service(&config, &args.service)?;
    let file = match &args.file {
        Some(file) => file.clone(),
        None => config.resolve(&config.services[&args.service].component),
    };
    let bytes = std::fs::read(&file).map_err(|error| {
        let hint = if args.file.is_none() {
            format!(" (build it with `platform build {}`)", args.service)
        } else {
            String::new()
        };
        CommandError::usage(anyhow!("cannot read {}: {error}{hint}", file.display()))
    })?;
    if bytes.len() > config.admin.max_upload_bytes() {
        return Err(CommandError::usage(anyhow!(
            "{} is {} bytes, more than admin.max_upload_mb ({} MiB) allows",
            file.display(),
            bytes.len(),
            config.admin.max_upload_mb
        )));
    }
    let client = AdminClient::new(&config);
    let deployed: Deployed = block_on(async {
        // The host answers a wrong token before it reads an upload, closing the connection
        // under it: ask a cheap call first, so that the answer is the token's, not a broken
        // pipe.
        client
            .get::<Vec<crate::admin_api::ServiceStatus>>("/v1/services")
            .await?;
        client
            .post(
                &format!(
                    "/v1/services/{}/deploy?strategy={}",
                    args.service, args.strategy
                ),
                Bytes::from(bytes),
                "application/wasm",
            )
            .await
    })?;
    print_deployed(&deployed, args.json);
    Ok(())
}

/// The result of a deploy or rollback, for people or (`--json`) for scripts.
pub fn print_deployed(deployed: &Deployed, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(deployed).expect("JSON of a record")
        );
        return;
    }
    let previous = &deployed.previous[..12.min(deployed.previous.len())];
    if deployed.serving_here {
        println!(
            "{}: now serving {} (was {previous}), swapped in {:.1} ms\ndigest: {}",
            deployed.service, deployed.version, deployed.swap_ms, deployed.digest
        );
    } else {
        println!(
            "{}: {} checked and recorded in {:.1} ms; rolling out host by host (was {previous})\ndigest: {}",
            deployed.service, deployed.version, deployed.swap_ms, deployed.digest
        );
    }
    if deployed.strategy.is_some() {
        println!(
            "the fleet's hosts follow within seconds: `platform rollout status {}`",
            deployed.service
        );
    }
}
