//! Integration tests: the real `platform` binary and the real component builds, over HTTP
//! and AMQP, on both backend sets: `embedded::*` with no server configured (SQLite files,
//! in-process cache and broker), `real::*` on the PostgreSQL, Redis and RabbitMQ of this
//! machine. The same built `.wasm` files serve both.
//!
//! `main` builds the components, starts one host with the four services per backend set
//! (every name in it unique to this run), runs the tests against them
//! (`cargo test --test integration -- <filter>` works as usual, e.g. `-- embedded::`), then
//! stops the hosts and drops the run's databases, queues and exchange. Tests that need a
//! host of their own (a misbehaving component, a refused one) start it themselves.
//!
//! Without the real servers, `real::*` tests are reported as ignored, loudly; under CI
//! (`CI` set) that is a failure instead, so the real path is never skipped silently.
//!
//! # Layout
//! - `support`: the test platform, run names, HTTP helpers.
//! - `browser`: `/docs` in headless Chromium with the network beyond the host refused.
//! - `conventions`: what the host does for every service (CORS, request ids, errors, docs, metrics).
//! - `user`, `product`, `order`, `notification`: the contract of each service, row by row.
//! - `isolation`: traps, endless loops, memory exhaustion, refused imports.
//! - `limits`: a login storm, half-sent headers, the connection cap, a hostile component's
//!   SQL, made-up methods.
//! - `reuse`: opt-in instance reuse: what carries over between requests and what never does.
//! - `degraded`: a backing service that is down, or stalls behind `fault_proxy`.
//! - `fault_proxy`: a TCP proxy a test pauses and resumes, between the host and a server.
//! - `stock`: late answers between order and product, a cut broker: stock and events exactly once.
//! - `schedules`: scheduled triggers, their outcomes, one host of several running each.
//! - `openapi`: schemathesis against every service's OpenAPI document.
//! - `mixed`: real servers beside embedded backends.
//! - `templates`, `examples`: `platform new`'s templates and the example services, in
//!   Python and JavaScript.
//! - `tracing`: OpenTelemetry traces into an OTLP receiver of the test's own.
//! - `fleet`: three hosts of one fleet behind HAProxy: deploys that reach every host,
//!   rolling deploys, a killed host, consumers and migrations on several hosts.
//! - `swap`: deploy, rollback and `--watch` under load; refused versions; the admin token;
//!   restarts from the state directory.

mod browser;
mod conventions;
mod degraded;
mod examples;
mod fault_proxy;
mod fleet;
mod isolation;
mod limits;
mod mixed;
mod notification;
mod openapi;
mod order;
mod otlp_receiver;
mod product;
mod reuse;
mod schedules;
mod stock;
mod support;
mod swap;
mod templates;
mod tracing;
mod user;

use libtest_mimic::{Arguments, Failed, Trial};
use std::process::ExitCode;
use support::{Backends, Platform, Test};

fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    let tests: Vec<Test> = [
        browser::tests(),
        conventions::tests(),
        user::tests(),
        product::tests(),
        order::tests(),
        notification::tests(),
        isolation::tests(),
        limits::tests(),
        reuse::tests(),
        mixed::tests(),
        degraded::tests(),
        stock::tests(),
        schedules::tests(),
        openapi::tests(),
        swap::tests(),
        fleet::tests(),
        tracing::tests(),
        templates::tests(),
        examples::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if arguments.list {
        let trials = trials(&tests, |_| None, |name| Trial::test(name, || Ok(())));
        return libtest_mimic::run(&arguments, trials).exit_code();
    }

    let runtime = runtime();
    let unreachable = support::unreachable_servers();
    if !unreachable.is_empty() {
        let servers = unreachable.join(", ");
        if std::env::var_os("CI").is_some() {
            eprintln!("CI: {servers} unreachable; the real-backend tests must run in CI");
            return ExitCode::FAILURE;
        }
        eprintln!(
            "\n!!! {servers} unreachable: the real::* tests are IGNORED; only embedded::* run !!!\n"
        );
    }
    if let Err(error) = support::build_components() {
        eprintln!("cannot build the components: {error:#}");
        return ExitCode::FAILURE;
    }
    let mut shops: Vec<&'static Platform> = Vec::new();
    let mut sets = vec![Backends::Embedded];
    if unreachable.is_empty() {
        if let Err(error) = runtime.block_on(support::drop_stale_databases()) {
            eprintln!("warning: could not drop stale test databases: {error:#}");
        }
        sets.push(Backends::Real);
    }
    for backends in sets {
        match runtime.block_on(Platform::start_shop(backends)) {
            Ok(shop) => shops.push(Box::leak(Box::new(shop))),
            Err(error) => {
                eprintln!(
                    "cannot start the platform on the {} backends: {error:#}",
                    backends.label()
                );
                for shop in shops {
                    runtime.block_on(shop.stop());
                }
                return ExitCode::FAILURE;
            }
        }
    }
    let shop_on = |backends: Backends| {
        shops
            .iter()
            .copied()
            .find(|shop| shop.backends() == backends)
    };

    let trials = trials(&tests, shop_on, |name| {
        Trial::test(name, || Ok(())).with_ignored_flag(true)
    });
    let conclusion = libtest_mimic::run(&arguments, trials);
    if conclusion.has_failed() {
        for shop in &shops {
            eprintln!(
                "\n---- platform log, {} backends (last 60 lines) ----",
                shop.backends().label()
            );
            let log = shop.log();
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
    }
    for shop in shops {
        runtime.block_on(shop.stop());
    }
    conclusion.exit_code()
}

/// One trial per test and backend set it runs on, named `<set>::<module>::<test>`; a set
/// without a running shop gets `missing(name)` (ignored trials).
fn trials(
    tests: &[Test],
    shop_on: impl Fn(Backends) -> Option<&'static Platform>,
    missing: impl Fn(String) -> Trial,
) -> Vec<Trial> {
    let mut trials = Vec::new();
    for backends in [Backends::Embedded, Backends::Real] {
        for test in tests {
            if test.only.is_some_and(|only| only != backends) {
                continue;
            }
            let name = format!("{}::{}", backends.label(), test.name);
            let Some(shop) = shop_on(backends) else {
                trials.push(missing(name));
                continue;
            };
            let run = test.run;
            trials.push(Trial::test(name, move || {
                runtime()
                    .block_on(run(shop))
                    .map_err(|error| Failed::from(format!("{error:#}")))
            }));
        }
    }
    trials
}

/// The runtime every test runs on (tests share the shops, which live as long as it).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}
