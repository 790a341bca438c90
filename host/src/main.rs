//! The `platform` command: a thin entry point; each subcommand lives in `cli/`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    platform::cli::run(platform::cli::Cli::parse())
}
