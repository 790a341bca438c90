//! The `platform` command: a thin entry point; each subcommand lives in `cli/`.

use clap::Parser;

/// Every fresh instance allocates and frees its `Store`, WASI context and instance state on
/// the thread serving the request: glibc's malloc and free took 12.5% of the host's CPU on
/// the empty route, mimalloc's thread-local free lists 3.2% (`perf record`, 2026-12-04).
/// README "Performance" has the throughput figures, and the memory it keeps in reserve.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    platform::cli::run(platform::cli::Cli::parse())
}
