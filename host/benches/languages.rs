//! What a component's language costs: `cargo bench -p platform --bench languages`
//! (`-- --quick` for a short smoke run).
//!
//! One host (release build, the machine's PostgreSQL, Redis and RabbitMQ) runs the shop,
//! the two example services of `examples/` (`reviews` in Python, `wishlist` in JavaScript,
//! built by their `build` commands) and the Rust test fixture. Each answers:
//! - `GET /version`, a constant JSON answer: what a fresh instance of each language costs
//!   per request (the interpreter's start included, from its pre-initialised snapshot);
//! - a cached read: the product service's `GET /products/{id}` (Rust), reviews'
//!   `GET /products/{id}/reviews` and wishlist's `GET /products/{id}/wishlisted`, each a
//!   cache hit answering a small JSON body.
//!
//! Python and JavaScript answer `GET /version` a second time from a service with
//! `instances.reuse` on, which skips the interpreter's start on all but an instance's first
//! request.
//!
//! Then per language: the component's size, a deploy of a digest the host never compiled
//! (compile, health check and swap) and a rollback to the previous version (compiled code
//! from the cache). The host is pinned to CPU 0 and wrk to CPU 1, as in the load bench.
//! Printed as a table and written to `host/benches/results/languages.txt`.

#[allow(dead_code)]
#[path = "../tests/integration/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "../tests/integration/examples.rs"]
mod examples;

#[allow(dead_code)]
#[path = "common/load_generator.rs"]
mod load_generator;

#[path = "common/wrk.rs"]
mod wrk;

use anyhow::{ensure, Context};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_ports, set, shop_config_on, Backends, Platform, RunNames};
use wrk::WrkRun;

const CONNECTIONS: [usize; 2] = [1, 16];
const FIXTURE: &str = "rust_fixture";

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let duration = Duration::from_secs(if quick { 3 } else { 10 });
    support::build_components()?;
    tokio::runtime::Runtime::new()?.block_on(run(duration, quick))
}

fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "taskset failed for {pid}");
    Ok(())
}

/// A component the bench compares, and the service that runs it.
struct Contender {
    language: &'static str,
    service: &'static str,
    component: PathBuf,
}

async fn run(duration: Duration, quick: bool) -> anyhow::Result<()> {
    let reviews = examples::build_in_place(&examples::REVIEWS).await?;
    let wishlist = examples::build_in_place(&examples::WISHLIST).await?;
    let contenders = [
        Contender {
            language: "Rust",
            service: FIXTURE,
            component: support::fixture_path("v1"),
        },
        Contender {
            language: "Python",
            service: examples::REVIEWS.name,
            component: reviews.clone(),
        },
        Contender {
            language: "JavaScript",
            service: examples::WISHLIST.name,
            component: wishlist.clone(),
        },
    ];

    // Counted before this process is pinned to one of them.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let names = RunNames::new();
    let ports: std::collections::BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config_on(Backends::Real, &names, &ports);
    examples::add_example(&mut config, &names, &examples::REVIEWS, &reviews)?;
    examples::add_example(&mut config, &names, &examples::WISHLIST, &wishlist)?;
    for example in [&examples::REVIEWS, &examples::WISHLIST] {
        add_reusing(&mut config, &names, example.name)?;
    }
    let fixture = |key: &'static str| ["services", FIXTURE, key];
    set(
        &mut config,
        &fixture("port"),
        i64::from(free_ports(1)[0]).into(),
    );
    set(
        &mut config,
        &fixture("component"),
        support::fixture_path("v1").display().to_string().into(),
    );
    set(
        &mut config,
        &fixture("database"),
        names.name(FIXTURE).into(),
    );
    set(
        &mut config,
        &fixture("grants"),
        vec!["database".to_string(), "logging".to_string()].into(),
    );
    let platform = Platform::start(names, config).await?;
    let result = measure(&platform, cores, &contenders, duration, quick).await;
    platform.stop().await;
    result
}

/// `service` a second time, as `<service>_reusing`, with `instances.reuse` on (no
/// subscription, and no tables: only its `GET /version` is measured).
fn add_reusing(config: &mut toml::Table, names: &RunNames, service: &str) -> anyhow::Result<()> {
    let reusing = format!("{service}_reusing");
    let mut entry = config["services"][service].clone();
    let table = entry.as_table_mut().context("a service table")?;
    table.remove("subscriptions");
    table.insert("port".into(), i64::from(free_ports(1)[0]).into());
    table.insert("database".into(), names.name(&reusing).into());
    table.insert("cache_namespace".into(), names.name(&reusing).into());
    set(config, &["services", &reusing], entry);
    set(
        config,
        &["services", &reusing, "instances", "reuse"],
        true.into(),
    );
    Ok(())
}

async fn measure(
    platform: &Platform,
    cores: usize,
    contenders: &[Contender],
    duration: Duration,
    quick: bool,
) -> anyhow::Result<()> {
    // Pinned once it serves: the host would inherit this process's one core, and its first
    // start compiles the Python and JavaScript components on every core it has.
    let pid = platform.pid().context("the host runs")?;
    pin(pid, "0")?;
    pin(std::process::id(), "1")?;
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "4.00", 1_000).await?;
    let product_id = product["id"].as_i64().context("product id")?;
    let cached_reads = [
        platform.url("product", &format!("/products/{product_id}")),
        platform.url(
            examples::REVIEWS.name,
            &format!("/products/{product_id}/reviews"),
        ),
        platform.url(
            examples::WISHLIST.name,
            &format!("/products/{product_id}/wishlisted"),
        ),
    ];
    // Each read once, so that the rows measure cache hits.
    for url in &cached_reads {
        let status = platform.http().get(url).send().await?.status();
        ensure!(status == 200, "{url}: {status}");
    }

    let mut report = format!(
        "{} cores; wrk pinned to CPU 1, the host to CPU 0; {} s per row; real backends\n\n\
         | scenario | connections | req/s (x Rust) | p50 | p99 (x Rust) | errors | server CPU | wrk CPU |\n\
         |---|---|---|---|---|---|---|---|\n",
        cores,
        duration.as_secs(),
    );
    for connections in CONNECTIONS {
        let mut rust = None;
        for contender in contenders {
            let url = platform.url(contender.service, "/version");
            let measured = wrk::run(get(&url, connections, duration, pid)).await?;
            report.push_str(&measured.row(
                &format!("GET /version, {}", contender.language),
                connections,
                rust.as_ref(),
            ));
            rust.get_or_insert(measured);
        }
        for contender in &contenders[1..] {
            let url = platform.url(&format!("{}_reusing", contender.service), "/version");
            let measured = wrk::run(get(&url, connections, duration, pid)).await?;
            report.push_str(&measured.row(
                &format!("GET /version, {}, `instances.reuse` on", contender.language),
                connections,
                rust.as_ref(),
            ));
        }
    }
    let reads = [
        "GET /products/{id} (product)",
        "GET /products/{id}/reviews (reviews)",
        "GET /products/{id}/wishlisted (wishlist)",
    ];
    for connections in CONNECTIONS {
        let mut rust = None;
        for ((contender, url), read) in contenders.iter().zip(&cached_reads).zip(reads) {
            let measured = wrk::run(get(url, connections, duration, pid)).await?;
            report.push_str(&measured.row(
                &format!("cache hit, {}: {read}", contender.language),
                connections,
                rust.as_ref(),
            ));
            rust.get_or_insert(measured);
        }
    }

    report.push_str(
        "\n| language | component | deploy, never compiled (compile, health check, swap) | rollback, compiled code cached |\n|---|---|---|---|\n",
    );
    let token = platform.admin_token()?;
    for (round, contender) in contenders.iter().enumerate() {
        let bytes = std::fs::read(&contender.component)?;
        // A digest of its own, so that nothing of it is in the compiled-code cache.
        let fresh = support::component_variant(&bytes, 7_000 + round as u64);
        let deploy = admin_call(platform, &token, contender.service, "deploy", fresh).await?;
        let rollback =
            admin_call(platform, &token, contender.service, "rollback", Vec::new()).await?;
        report.push_str(&format!(
            "| {} | {:.1} MB | {:.0} ms | {:.0} ms |\n",
            contender.language,
            bytes.len() as f64 / 1e6,
            deploy.as_secs_f64() * 1000.0,
            rollback.as_secs_f64() * 1000.0,
        ));
    }
    println!("{report}");
    let results = support::workspace_root().join("host/benches/results");
    std::fs::create_dir_all(&results)?;
    let file = if quick {
        "languages-quick.txt"
    } else {
        "languages.txt"
    };
    std::fs::write(results.join(file), report)?;
    Ok(())
}

fn get(url: &str, connections: usize, duration: Duration, pid: u32) -> WrkRun<'_> {
    WrkRun {
        url,
        connections,
        duration,
        json_bodies: Vec::new(),
        headers: Vec::new(),
        server_pid: Some(pid),
    }
}

/// `POST /v1/services/{service}/{call}` on the admin API; how long until it answered (the
/// new version serving).
async fn admin_call(
    platform: &Platform,
    token: &str,
    service: &str,
    call: &str,
    body: Vec<u8>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = platform
        .http()
        .post(platform.admin_url(&format!("/v1/services/{service}/{call}")))
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        // A deploy of a digest never compiled compiles it first: a 12-18 MB Python or
        // JavaScript component on the one core the host is pinned to (the CLI waits as long).
        .timeout(Duration::from_secs(600))
        .send()
        .await?;
    let elapsed = started.elapsed();
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    ensure!(status == 200, "{call} {service}: {status} {answer}");
    Ok(elapsed)
}
