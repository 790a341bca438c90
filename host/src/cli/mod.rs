//! The `platform` command line: one module per subcommand.

mod build;
mod up;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: every service of the configuration on its port.
    Up(up::UpArgs),
    /// Build service components with the build commands of the configuration.
    Build(build::BuildArgs),
}

/// Runs a parsed command line; errors are printed with their causes.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Up(args) => up::run(&cli.config, args),
        Command::Build(args) => build::run(&cli.config, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
