//! `platform build [service...]`: runs the services' build commands from the configuration,
//! one after the other, with a progress line each; the compiler's output is shown when a
//! build fails.

use super::{check_service, load_config, CommandError, CommandResult};
use crate::build::{build_component, BuildComponentError};
use crate::config::PlatformConfig;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Services to build (default: all that have a build command).
    services: Vec<String>,
}

pub fn run(config_path: &Path, args: BuildArgs) -> CommandResult {
    let config = load_config(config_path)?;
    for service in &args.services {
        check_service(&config, service)?;
    }
    let services: Vec<String> = if args.services.is_empty() {
        config
            .services
            .iter()
            .filter(|(_, service)| service.build.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    } else {
        args.services
    };
    build_all(&config, &services)
}

/// Builds `services` in order, stopping at the first failure.
pub fn build_all(config: &PlatformConfig, services: &[String]) -> CommandResult {
    let total = services.len();
    for (index, service) in services.iter().enumerate() {
        let progress = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{prefix}] {msg} {elapsed}")
                .expect("a valid template"),
        );
        progress.set_prefix(format!("{}/{total}", index + 1));
        progress.set_message(format!("building {service}"));
        progress.enable_steady_tick(Duration::from_millis(120));
        let started = Instant::now();
        match build_component(config, service) {
            Ok(artifact) => {
                progress.finish_and_clear();
                eprintln!(
                    "[{}/{total}] {service}: built {} in {:.1?}",
                    index + 1,
                    artifact.display(),
                    started.elapsed()
                );
            }
            Err(BuildComponentError::Failed { output, status, .. }) => {
                progress.finish_and_clear();
                eprintln!("{output}");
                return Err(CommandError::from(anyhow::anyhow!(
                    "building `{service}` failed ({status}); the compiler's output is above"
                )));
            }
            Err(error) => {
                progress.finish_and_clear();
                return Err(CommandError::from(error));
            }
        }
    }
    Ok(())
}
