//! `platform rollback <service> [--to <version>]`: back to the previous or a named version.

use super::client::{block_on, AdminClient};
use super::deploy::print_deployed;
use super::{check_service, load_config, CommandResult};
use crate::admin_api::{Deployed, RollbackRequest};
use bytes::Bytes;
use std::path::Path;

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The service to roll back.
    service: String,
    /// A version (digest prefix) from `platform versions`; default: the previous one.
    #[arg(long)]
    to: Option<String>,
    /// In a fleet: `all` hosts at once, or `rolling`, one host after the other.
    #[arg(long, default_value = "all")]
    strategy: crate::admin_api::Strategy,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: RollbackArgs) -> CommandResult {
    let config = load_config(config_path)?;
    check_service(&config, &args.service)?;
    let body = serde_json::to_vec(&RollbackRequest {
        to: args.to.clone(),
        strategy: args.strategy,
    })
    .expect("JSON of a record");
    let client = AdminClient::new(&config);
    let deployed: Deployed = block_on(client.post(
        &format!("/v1/services/{}/rollback", args.service),
        Bytes::from(body),
        "application/json",
    ))?;
    print_deployed(&deployed, args.json);
    Ok(())
}
