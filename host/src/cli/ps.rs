//! `platform ps`: every service with its port, version, state and counters.

use super::client::{block_on, short_time, AdminClient};
use super::{load_config, CommandResult};
use crate::admin_api::{FleetStatus, ServiceStatus};
use std::path::Path;

#[derive(clap::Args)]
pub struct PsArgs {
    /// Print the services as JSON.
    #[arg(long)]
    json: bool,
    /// Every host of the fleet: its versions, their state and its last heartbeat.
    #[arg(long)]
    fleet: bool,
}

pub fn run(config_path: &Path, args: PsArgs) -> CommandResult {
    let config = load_config(config_path)?;
    if args.fleet {
        let fleet: FleetStatus = block_on(AdminClient::new(&config).get("/v1/fleet"))?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&fleet).expect("JSON of records")
            );
        } else {
            print_fleet(&fleet, None);
        }
        return Ok(());
    }
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

/// One line per host and service (only `service`'s, if named): what it serves against the
/// fleet's desired version, its state and how long ago it was heard from.
pub fn print_fleet(fleet: &FleetStatus, service: Option<&str>) {
    println!("fleet {} (answered by {})", fleet.fleet, fleet.host);
    println!(
        "{:<28} {:<14} {:<12}  {:<12}  {:<10} {:<28} HEARD",
        "HOST", "SERVICE", "SERVING", "DESIRED", "ROLLOUT", "STATE"
    );
    for host in &fleet.hosts {
        let heard = if host.alive {
            format!("{:.0} s ago", host.silent_seconds)
        } else {
            format!("down ({:.0} s ago)", host.silent_seconds)
        };
        for (name, report) in &host.report.services {
            if service.is_some_and(|service| service != name) {
                continue;
            }
            let desired = fleet.desired.get(name);
            let state = match &report.canary {
                Some(canary) => format!(
                    "{}; canary {} at {}%: {} req, {} 5xx",
                    report.state,
                    short(&canary.digest),
                    canary.percent,
                    canary.canary.requests,
                    canary.canary.errors
                ),
                None => report.state.clone(),
            };
            println!(
                "{:<28} {:<14} {:<12}  {:<12}  {:<10} {:<28} {heard}",
                host.report.host,
                name,
                short(&report.serving),
                desired.map_or("-", |desired| short(&desired.digest)),
                desired.map_or("-".to_string(), |desired| desired.strategy.to_string()),
                state,
            );
        }
    }
}

fn short(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}
