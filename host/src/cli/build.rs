//! `platform build [service...]`: runs the services' build commands from platform.toml.

use crate::config::PlatformConfig;
use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Services to build (default: all that have a build command).
    services: Vec<String>,
}

pub fn run(config_path: &Path, args: BuildArgs) -> anyhow::Result<()> {
    let config = PlatformConfig::load(config_path)?;
    let names: Vec<String> = if args.services.is_empty() {
        config.services.keys().cloned().collect()
    } else {
        for name in &args.services {
            if !config.services.contains_key(name) {
                bail!(
                    "unknown service `{name}`; {} defines: {}",
                    config_path.display(),
                    config
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        args.services
    };
    for name in &names {
        build_service(&config, name)?;
    }
    Ok(())
}

/// Runs one service's build command in the configuration's directory.
pub fn build_service(config: &PlatformConfig, name: &str) -> anyhow::Result<()> {
    let service = &config.services[name];
    let Some(command) = &service.build else {
        eprintln!("{name}: no build command configured, skipped");
        return Ok(());
    };
    eprintln!("{name}: building ({command})");
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&config.base_dir)
        .status()
        .with_context(|| format!("service `{name}`: could not run `{command}`"))?;
    if !status.success() {
        bail!("service `{name}`: build failed ({status}); the compiler's output is above");
    }
    let artifact = config.resolve(&service.component);
    if !artifact.exists() {
        bail!(
            "service `{name}`: the build succeeded but {} does not exist; check `component` in the configuration",
            artifact.display()
        );
    }
    eprintln!(
        "{name}: built {} in {:.1?}",
        artifact.display(),
        started.elapsed()
    );
    Ok(())
}
