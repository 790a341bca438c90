//! `platform errors <service>`: the service's last warnings and errors from the host's own
//! ring (the newest 100, kept whatever `RUST_LOG` lets into the log), newest first.

use super::client::{block_on, short_time, AdminClient};
use super::{check_service, load_config, CommandResult};
use crate::admin_api::RecentError;
use std::path::Path;

#[derive(clap::Args)]
pub struct ErrorsArgs {
    /// The service whose errors to show.
    service: String,
    /// Print the entries as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: ErrorsArgs) -> CommandResult {
    let config = load_config(config_path)?;
    check_service(&config, &args.service)?;
    let entries: Vec<RecentError> =
        block_on(AdminClient::new(&config).get(&format!("/v1/services/{}/errors", args.service)))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("JSON of records")
        );
        return Ok(());
    }
    for entry in &entries {
        let fields: Vec<String> = entry
            .fields
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        println!(
            "{}  {:<5}  {:<36}  {}  {}",
            short_time(&entry.at),
            entry.level.to_uppercase(),
            entry.request_id.as_deref().unwrap_or("-"),
            entry.message,
            fields.join(" ")
        );
    }
    if entries.is_empty() {
        println!("(no warnings or errors since the host started)");
    }
    Ok(())
}
