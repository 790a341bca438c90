//! Integration tests: the real `platform` binary, the real component builds, and the real
//! PostgreSQL, Redis and RabbitMQ of this machine, over HTTP and AMQP.
//!
//! `main` builds the components, starts one host with the four services (every name in it
//! unique to this run), runs the tests against it (`cargo test --test integration -- <filter>`
//! works as usual), then stops the host and drops the run's databases, queues and exchange.
//! Tests that need a host of their own (a misbehaving component, a refused one) start it
//! themselves.
//!
//! # Layout
//! - `support`: the test platform, run names, HTTP helpers.
//! - `conventions`: what the host does for every service (CORS, request ids, errors, docs, metrics).
//! - `user`, `product`, `order`, `notification`: the contract of each service, row by row.
//! - `isolation`: traps, endless loops, memory exhaustion, refused imports.
//! - `degraded`: a backing service that is down.
//! - `swap`: deploy, rollback and `--watch` under load; refused versions; the admin token;
//!   restarts from the state directory.

mod conventions;
mod degraded;
mod isolation;
mod notification;
mod order;
mod product;
mod support;
mod swap;
mod user;

use libtest_mimic::{Arguments, Failed, Trial};
use std::process::ExitCode;
use support::{Platform, Test, SHOP};

fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    let tests: Vec<Test> = [
        conventions::tests(),
        user::tests(),
        product::tests(),
        order::tests(),
        notification::tests(),
        isolation::tests(),
        degraded::tests(),
        swap::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if arguments.list {
        let trials = tests
            .into_iter()
            .map(|test| Trial::test(test.name, || Ok(())))
            .collect();
        return libtest_mimic::run(&arguments, trials).exit_code();
    }

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
    if let Err(error) = support::build_components() {
        eprintln!("cannot build the components: {error:#}");
        return ExitCode::FAILURE;
    }
    if let Err(error) = runtime.block_on(support::drop_stale_databases()) {
        eprintln!("warning: could not drop stale test databases: {error:#}");
    }
    let shop = match runtime.block_on(Platform::start_shop()) {
        Ok(shop) => SHOP.get_or_init(|| shop),
        Err(error) => {
            eprintln!("cannot start the platform: {error:#}");
            return ExitCode::FAILURE;
        }
    };

    let trials = tests
        .into_iter()
        .map(|test| {
            let run = test.run;
            Trial::test(test.name, move || {
                runtime
                    .block_on(run(shop))
                    .map_err(|error| Failed::from(format!("{error:#}")))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    if conclusion.has_failed() {
        eprintln!("\n---- platform log (last 60 lines) ----");
        let log = shop.log();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(60)..] {
            eprintln!("{line}");
        }
    }
    runtime.block_on(shop.stop());
    conclusion.exit_code()
}
