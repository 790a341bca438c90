//! `platform up`: run every service of the configuration until interrupted.

use super::build::build_service;
use crate::config::PlatformConfig;
use crate::platform::Platform;
use anyhow::Context;
use std::path::Path;
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Do not build components whose artifact is missing.
    #[arg(long)]
    no_build: bool,
}

pub fn run(config_path: &Path, args: UpArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = PlatformConfig::load(config_path)?;
    if !args.no_build {
        for (name, service) in &config.services {
            if !config.resolve(&service.component).exists() {
                build_service(&config, name)?;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async {
        let platform = Platform::start(&config).await?;
        tracing::info!(services = platform.services.len(), "platform ready");
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
