//! `platform up`: run every service of the configuration until interrupted; with `--watch`,
//! rebuild and hot-swap a service whenever its sources change.

use super::build::build_all;
use super::{load_config, CommandResult};
use crate::ingress::recent_errors::RecentErrors;
use crate::platform::Platform;
use crate::telemetry::logs::{trace_ids_layer, JsonLayer};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Do not build components whose artifact is missing.
    #[arg(long)]
    no_build: bool,
    /// Rebuild and hot-swap a service when a file under its `watch` paths changes.
    #[arg(long)]
    watch: bool,
    /// `text` for people, `json` (one object per line, with `trace_id` and `span_id` inside
    /// a traced request) for log shippers.
    #[arg(long, value_enum, env = "PLATFORM_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the host's records go: `format` on stdout as far as `filter` lets them, and every
/// warning and error to the console's ring whatever the filter says.
fn log_subscriber(
    format: LogFormat,
    filter: impl Fn() -> EnvFilter,
    recent_errors: &Arc<RecentErrors>,
) -> impl tracing::Subscriber + Send + Sync {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    // Colours only on a terminal: logs redirected to a file stay plain text.
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_filter(filter()),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(JsonLayer::new(std::io::stdout).with_filter(filter())),
        ),
    };
    tracing_subscriber::registry()
        .with(trace_ids_layer())
        .with(text)
        .with(json)
        .with(recent_errors.layer().with_filter(LevelFilter::WARN))
}

pub fn run(config_path: &Path, args: UpArgs) -> CommandResult {
    use tracing_subscriber::util::SubscriberInitExt;
    let recent_errors = RecentErrors::new();
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    log_subscriber(args.log_format, filter, &recent_errors).init();
    let config = load_config(config_path)?;
    if !args.no_build {
        let missing: Vec<String> = config
            .services
            .iter()
            .filter(|(_, service)| {
                service.build.is_some() && !config.resolve(&service.component).exists()
            })
            .map(|(name, _)| name.clone())
            .collect();
        build_all(&config, &missing)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async {
        let platform = Platform::start(&config, recent_errors).await?;
        tracing::info!(
            services = platform.registry.services().count(),
            "platform ready"
        );
        if args.watch {
            let watcher = crate::ingress::watch::watch(
                platform.registry.clone(),
                config.clone(),
                platform.shutdown_token(),
            );
            tokio::spawn(async move {
                if let Err(error) = watcher.await {
                    tracing::error!(%error, "--watch is off");
                }
            });
        }
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests and messages in progress");
        platform.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{Level, Subscriber};

    /// What the filter leaves out must cost a callsite next to nothing: the subscriber's
    /// level hint is what every callsite's interest and the `log` crate's maximum level
    /// (Cranelift logs through it) are set from.
    #[test]
    fn records_the_filter_leaves_out_are_not_dispatched_in_either_format() {
        for format in [LogFormat::Text, LogFormat::Json] {
            for (directive, hint) in [
                ("info", LevelFilter::INFO),
                ("debug", LevelFilter::DEBUG),
                // Trace spans are made at INFO whatever the filter, so that a warning
                // inside one still names its trace.
                ("error", LevelFilter::INFO),
            ] {
                let subscriber =
                    log_subscriber(format, || EnvFilter::new(directive), &RecentErrors::new());
                assert_eq!(subscriber.max_level_hint(), Some(hint), "{directive}");
                tracing::subscriber::with_default(subscriber, || {
                    assert!(!tracing::enabled!(target: "cranelift_codegen", Level::TRACE));
                    assert!(tracing::enabled!(target: "platform", Level::WARN));
                    assert!(tracing::span_enabled!(Level::INFO, "trace"));
                });
            }
        }
    }
}
