//! `platform ps`: every service with its port, version, state and counters.

use super::client::{block_on, short_time, AdminClient};
use super::{load_config, CommandResult};
use crate::admin_api::ServiceStatus;
use std::path::Path;

#[derive(clap::Args)]
pub struct PsArgs {
    /// Print the services as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: PsArgs) -> CommandResult {
    let config = load_config(config_path)?;
    let services: Vec<ServiceStatus> = block_on(AdminClient::new(&config).get("/v1/services"))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&services).expect("JSON of records")
        );
        return Ok(());
    }
    println!(
        "{:<14} {:>5}  {:<12}  {:<19}  {:<8}  {:<10} {:>9} {:>7} {:>7} {:>9}",
        "SERVICE",
        "PORT",
        "VERSION",
        "DEPLOYED (UTC)",
        "BY",
        "STATE",
        "REQUESTS",
        "ERRORS",
        "SHED",
        "IN USE"
    );
    for service in services {
        println!(
            "{:<14} {:>5}  {:<12}  {:<19}  {:<8}  {:<10} {:>9} {:>7} {:>7} {:>9}",
            service.name,
            service.port,
            service.version,
            short_time(&service.deployed_at),
            service.source.as_str(),
            service.state,
            service.requests,
            service.errors,
            service.shed,
            format!("{}/{}", service.instances_in_use, service.max_concurrent)
        );
    }
    Ok(())
}
