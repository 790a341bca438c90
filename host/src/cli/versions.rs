//! `platform versions <service>`: the deploy history, newest first.

use super::client::{block_on, short_time, AdminClient};
use super::{check_service, load_config, CommandResult};
use crate::admin_api::VersionEntry;
use std::path::Path;

#[derive(clap::Args)]
pub struct VersionsArgs {
    /// The service whose history to show.
    service: String,
    /// Print the history as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: VersionsArgs) -> CommandResult {
    let config = load_config(config_path)?;
    check_service(&config, &args.service)?;
    let versions: Vec<VersionEntry> = block_on(
        AdminClient::new(&config).get(&format!("/v1/services/{}/versions", args.service)),
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&versions).expect("JSON of records")
        );
        return Ok(());
    }
    println!("  {:<12}  {:<19}  {:<8}", "VERSION", "DEPLOYED (UTC)", "BY");
    for version in versions {
        let marker = if version.current { "*" } else { " " };
        println!(
            "{marker} {:<12}  {:<19}  {:<8}",
            version.version,
            short_time(&version.deployed_at),
            version.source.as_str()
        );
    }
    Ok(())
}
