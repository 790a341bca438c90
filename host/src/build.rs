//! Building a service's component with the `build` command of `platform.toml`: used by
//! `platform build`, by `platform up` for missing artifacts, and by `--watch`.

use crate::config::PlatformConfig;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Why a component could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildComponentError {
    #[error("service `{0}` has no `build` command in the configuration")]
    NoBuildCommand(String),
    #[error("service `{service}`: could not run `{command}`: {cause}")]
    Spawn {
        service: String,
        command: String,
        cause: std::io::Error,
    },
    /// The command failed; `output` is what it printed (the compiler's errors).
    #[error("service `{service}`: build failed ({status})")]
    Failed {
        service: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("service `{service}`: the build succeeded but {} does not exist; check `component` in the configuration", path.display())]
    MissingArtifact { service: String, path: PathBuf },
}

/// Runs the build command of `service` in the configuration's directory, capturing what it
/// prints; returns the path of the built component.
pub fn build_component(
    config: &PlatformConfig,
    service: &str,
) -> Result<PathBuf, BuildComponentError> {
    let settings = &config.services[service];
    let command = settings
        .build
        .as_ref()
        .ok_or_else(|| BuildComponentError::NoBuildCommand(service.to_string()))?;
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&config.base_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|cause| BuildComponentError::Spawn {
            service: service.to_string(),
            command: command.clone(),
            cause,
        })?;
    if !output.status.success() {
        let mut printed = String::from_utf8_lossy(&output.stderr).into_owned();
        printed.push_str(&String::from_utf8_lossy(&output.stdout));
        return Err(BuildComponentError::Failed {
            service: service.to_string(),
            status: output.status,
            output: printed,
        });
    }
    let artifact = config.resolve(&settings.component);
    if !artifact.exists() {
        return Err(BuildComponentError::MissingArtifact {
            service: service.to_string(),
            path: artifact,
        });
    }
    Ok(artifact)
}
