//! `platform publish <exchange> <routing-key> [payload]`: publishes one message through the
//! running host's broker (RabbitMQ or embedded), e.g. to replay a dead letter.

use super::client::{block_on, AdminClient};
use super::{load_config, CommandError, CommandResult};
use crate::admin_api::{PublishRequest, Published};
use anyhow::anyhow;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

#[derive(clap::Args)]
pub struct PublishArgs {
    /// An exchange of `[[messaging.exchanges]]`.
    exchange: String,
    /// The message's routing key.
    routing_key: String,
    /// The payload (text, usually JSON); read from standard input when absent.
    payload: Option<String>,
    /// A header, `name=value`; repeatable (`--header event_id=...`).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// The payload's content type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config_path: &Path, args: PublishArgs) -> CommandResult {
    let config = load_config(config_path)?;
    let mut headers = BTreeMap::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once('=')
            .ok_or_else(|| CommandError::usage(anyhow!("--header `{header}` is not NAME=VALUE")))?;
        headers.insert(name.to_string(), value.to_string());
    }
    let payload = match args.payload {
        Some(payload) => payload,
        None => {
            let mut payload = String::new();
            std::io::stdin()
                .read_to_string(&mut payload)
                .map_err(|error| CommandError::usage(anyhow!("reading the payload: {error}")))?;
            payload
        }
    };
    let request = PublishRequest {
        routing_key: args.routing_key,
        payload,
        content_type: Some(args.content_type),
        headers,
    };
    let body = serde_json::to_vec(&request).expect("JSON of a record");
    let client = AdminClient::new(&config);
    let published: Published = block_on(client.post(
        &format!("/v1/exchanges/{}/messages", args.exchange),
        Bytes::from(body),
        "application/json",
    ))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&published).expect("JSON of a record")
        );
    } else {
        println!(
            "published to {} with routing key {}",
            published.exchange, published.routing_key
        );
    }
    Ok(())
}
