//! `platform rollout status|promote|abort <service>`: a fleet's rollout of one service.

use super::client::{block_on, AdminClient};
use super::deploy::print_deployed;
use super::ps::print_fleet;
use super::{check_service, load_config, CommandResult};
use crate::admin_api::{Deployed, DesiredVersion, FleetStatus};
use bytes::Bytes;
use std::path::Path;

#[derive(clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// The service's desired version and what every host serves.
    Status(Target),
    /// A rolling deploy: switch every remaining host at once.
    Promote(Target),
    /// Back to the version before the rollout, on every host at once.
    Abort(Target),
}

#[derive(clap::Args)]
struct Target {
    service: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: RolloutArgs) -> CommandResult {
    let config = load_config(config_path)?;
    let client = AdminClient::new(&config);
    match args.action {
        Action::Status(target) => {
            check_service(&config, &target.service)?;
            let fleet: FleetStatus = block_on(client.get("/v1/fleet"))?;
            if target.json {
                let desired = fleet.desired.get(&target.service);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "service": target.service,
                        "desired": desired,
                        "hosts": fleet.hosts,
                    }))
                    .expect("JSON of records")
                );
            } else {
                print_fleet(&fleet, Some(&target.service));
            }
        }
        Action::Promote(target) => {
            check_service(&config, &target.service)?;
            let desired: DesiredVersion = block_on(client.post(
                &format!("/v1/services/{}/rollout/promote", target.service),
                Bytes::new(),
                "application/json",
            ))?;
            if target.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&desired).expect("JSON of a record")
                );
            } else {
                println!(
                    "{}: {} now goes to every host at once",
                    target.service,
                    &desired.digest[..12.min(desired.digest.len())]
                );
            }
        }
        Action::Abort(target) => {
            check_service(&config, &target.service)?;
            let deployed: Deployed = block_on(client.post(
                &format!("/v1/services/{}/rollout/abort", target.service),
                Bytes::new(),
                "application/json",
            ))?;
            print_deployed(&deployed, target.json);
        }
    }
    Ok(())
}
