//! The `platform` command line: one module per subcommand.
//!
//! Exit codes scripts can rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | failed (a build failed, the host could not start, ...) |
//! | 2 | usage: bad arguments, unknown service, file not found |
//! | 3 | the host is not running (or not at the configured admin address) |
//! | 4 | the host refused: component refused, unhealthy, wrong admin token, no such version |

mod build;
mod client;
mod deploy;
mod dlq;
mod errors;
mod new;
mod ps;
mod publish;
mod rollback;
mod rollout;
mod up;
mod versions;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "platform", version, about = "Runs services as Wasm components")]
pub struct Cli {
    /// The platform configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "platform.toml",
        env = "PLATFORM_CONFIG"
    )]
    config: PathBuf,
    /// The admin API to talk to (any host of a fleet), e.g. `http://10.0.0.7:9000`;
    /// default: `[admin] bind` of the configuration.
    #[arg(long, global = true, env = "PLATFORM_ADMIN_URL")]
    admin: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a service from a template, with its entry in the configuration.
    New(new::NewArgs),
    /// Run the host: every service of the configuration on its port.
    Up(up::UpArgs),
    /// Build service components with the build commands of the configuration.
    Build(build::BuildArgs),
    /// Deploy a new version of a service into the running host.
    Deploy(deploy::DeployArgs),
    /// Go back to the previous (or a named) version of a service.
    Rollback(rollback::RollbackArgs),
    /// Show every service: port, version, state, requests and errors since its deploy.
    Ps(ps::PsArgs),
    /// A fleet's rollout of a service: its state on every host, promote or abort it.
    Rollout(rollout::RolloutArgs),
    /// Show the deploy history of a service, newest first.
    Versions(versions::VersionsArgs),
    /// Publish a message through the running host's broker (e.g. inject an event).
    Publish(publish::PublishArgs),
    /// List or replay a subscription's dead letters.
    Dlq(dlq::DlqArgs),
    /// Show a service's last warnings and errors, with their request ids.
    Errors(errors::ErrorsArgs),
}

/// A failed command: the error to print and the exit code that classifies it.
#[derive(Debug)]
pub struct CommandError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CommandError {
    pub fn usage(error: impl Into<anyhow::Error>) -> CommandError {
        CommandError {
            code: 2,
            error: error.into(),
        }
    }
}

/// Failures without a more precise exit code: 1.
macro_rules! exit_code_one {
    ($($error:ty),*) => {$(
        impl From<$error> for CommandError {
            fn from(error: $error) -> CommandError {
                CommandError { code: 1, error: error.into() }
            }
        }
    )*};
}

exit_code_one!(
    anyhow::Error,
    crate::build::BuildComponentError,
    crate::platform::StartError
);

pub type CommandResult = Result<(), CommandError>;

/// Runs a parsed command line; errors are printed with their causes.
pub fn run(cli: Cli) -> ExitCode {
    if let Some(admin) = cli.admin {
        client::ADMIN_URL
            .set(admin)
            .expect("the admin URL is set once, here");
    }
    let result = match cli.command {
        Command::New(args) => new::run(&cli.config, args),
        Command::Up(args) => up::run(&cli.config, args),
        Command::Build(args) => build::run(&cli.config, args),
        Command::Deploy(args) => deploy::run(&cli.config, args),
        Command::Rollback(args) => rollback::run(&cli.config, args),
        Command::Ps(args) => ps::run(&cli.config, args),
        Command::Rollout(args) => rollout::run(&cli.config, args),
        Command::Versions(args) => versions::run(&cli.config, args),
        Command::Publish(args) => publish::run(&cli.config, args),
        Command::Dlq(args) => dlq::run(&cli.config, args),
        Command::Errors(args) => errors::run(&cli.config, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// Loads the configuration; a missing or invalid file is a usage error.
fn load_config(path: &std::path::Path) -> Result<crate::config::PlatformConfig, CommandError> {
    crate::config::PlatformConfig::load(path).map_err(CommandError::usage)
}

/// Checks that `service` is defined in the configuration.
fn check_service(config: &crate::config::PlatformConfig, service: &str) -> CommandResult {
    if config.services.contains_key(service) {
        return Ok(());
    }
    let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
    Err(CommandError::usage(anyhow::anyhow!(
        "unknown service `{service}`; the configuration defines: {}",
        known.join(", ")
    )))
}
