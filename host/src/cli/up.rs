//! `platform up`: run every service of the configuration until interrupted; with `--watch`,
//! rebuild and hot-swap a service whenever its sources change.

use super::build::build_all;
use super::{load_config, CommandResult};
use crate::ingress::recent_errors::RecentErrors;
use crate::platform::Platform;
use crate::telemetry::logs::{JsonLayer, TraceIdsLayer};
use anyhow::Context;
use std::path::Path;
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

pub fn run(config_path: &Path, args: UpArgs) -> CommandResult {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let recent_errors = RecentErrors::new();
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (text, json) = match args.log_format {
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
        .with(TraceIdsLayer)
        .with(text)
        .with(json)
        // Whatever RUST_LOG keeps out of the log, the console still sees a service's
        // warnings and errors.
        .with(recent_errors.layer().with_filter(LevelFilter::WARN))
        .init();
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
