//! `platform dlq list <queue>` and `platform dlq replay <queue> [--id ID]`: a subscription's
//! dead letters (named by its queue or its dead-letter queue), on whichever broker the host
//! runs, and putting them back through the consumer once what failed them is fixed.

use super::client::{block_on, AdminClient};
use super::{load_config, CommandResult};
use crate::admin_api::{DeadLetterEntry, ReplayRequest, Replayed};
use bytes::Bytes;
use std::path::Path;

#[derive(clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: DlqAction,
}

#[derive(clap::Subcommand)]
enum DlqAction {
    /// The oldest dead letters (at most 1,000), left in place.
    List {
        /// A subscription's queue, or its dead-letter queue.
        queue: String,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back into the subscription's queue, their retry count reset.
    Replay {
        /// A subscription's queue, or its dead-letter queue.
        queue: String,
        /// Only this one (an id `platform dlq list` shows); without it, every one.
        #[arg(long)]
        id: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config_path: &Path, args: DlqArgs) -> CommandResult {
    let config = load_config(config_path)?;
    let client = AdminClient::new(&config);
    match args.action {
        DlqAction::List { queue, json } => {
            let dead: Vec<DeadLetterEntry> =
                block_on(client.get(&format!("/v1/queues/{queue}/dead-letters")))?;
            if json {
                println!("{}", serde_json::to_string(&dead).expect("JSON of records"));
                return Ok(());
            }
            println!(
                "{:<38}  {:<24}  {:>7}  {:<40}  PAYLOAD",
                "ID", "ROUTING KEY", "RETRIES", "REASON"
            );
            for entry in &dead {
                let payload: String = entry.payload.chars().take(60).collect();
                let reason: String = entry
                    .reason
                    .as_deref()
                    .unwrap_or("-")
                    .chars()
                    .take(40)
                    .collect();
                println!(
                    "{:<38}  {:<24}  {:>7}  {reason:<40}  {payload}",
                    entry.id, entry.routing_key, entry.retries
                );
            }
            if dead.is_empty() {
                println!("(no dead letters)");
            }
        }
        DlqAction::Replay { queue, id, json } => {
            let body = serde_json::to_vec(&ReplayRequest { id }).expect("JSON of a record");
            let replayed: Replayed = block_on(client.post(
                &format!("/v1/queues/{queue}/dead-letters/replay"),
                Bytes::from(body),
                "application/json",
            ))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&replayed).expect("JSON of a record")
                );
            } else {
                println!(
                    "{} dead letter(s) back in {}",
                    replayed.replayed, replayed.queue
                );
            }
        }
    }
    Ok(())
}
