//! Load benchmark of the platform against a native baseline, in one run:
//! `cargo bench -p platform --bench load` (`-- --quick` for a short smoke run;
//! `-- --embedded` for the platform on its embedded backends, without the baseline).
//!
//! It starts the real host (release build) with the four services on the machine's
//! PostgreSQL, Redis and RabbitMQ, and a native hyper server (this binary, re-executed with
//! `--serve-native`) that implements the same `GET /products/{id}` cache-aside logic (Redis
//! first, its entry checked and served as it is; PostgreSQL on a miss) on the same database
//! and Redis. The servers are pinned to CPU
//! 0 and the load generator, wrk with one thread, to CPU 1 (`taskset`), the same way for both
//! sides; every row reports the CPU the server and wrk used, so it shows which one was the
//! limit.
//!
//! Beside the four services the host runs the product service a second time with
//! `instances.reuse` on, and the test fixture, whose `GET /ok` (an empty route on a fresh
//! instance) is compared with the host's own `GET /health`, which enters no component.
//!
//! Printed as a table and written to `host/benches/results/load.txt`.

#[allow(dead_code)]
#[path = "../tests/integration/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "common/load_generator.rs"]
mod load_generator;

#[path = "common/wrk.rs"]
mod wrk;

#[allow(dead_code)]
#[path = "../tests/integration/otlp_receiver.rs"]
mod otlp_receiver;

use anyhow::{ensure, Context};
use load_generator::rss_mib;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{free_ports, set, shop_config_on, Backends, Platform, RunNames};
use wrk::WrkRun;

const CONNECTIONS: [usize; 3] = [1, 16, 64];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(index) = args.iter().position(|arg| arg == "--serve-native") {
        return native::serve(&args[index + 1], &args[index + 2], &args[index + 3]);
    }
    let quick = args.iter().any(|arg| arg == "--quick");
    // `--embedded`: the platform on its embedded backends (no native baseline: that one
    // talks to PostgreSQL and Redis).
    let backends = if args.iter().any(|arg| arg == "--embedded") {
        Backends::Embedded
    } else {
        Backends::Real
    };
    // Quick runs are CI's smoke run, in a debug build where a 64-connection `POST /orders`
    // row answers in about a second: a shorter window could end before any answer.
    let duration = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    support::build_components()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(duration, quick, backends))
}

/// The product service again with `instances.reuse` on (its own database and cache
/// namespace, and the product migrations, through a migrations folder of links that the
/// returned directory holds), and the test fixture, whose `GET /ok` is the cheapest route
/// a component can have.
fn add_bench_services(
    config: &mut toml::Table,
    names: &RunNames,
) -> anyhow::Result<tempfile::TempDir> {
    let migrations = tempfile::tempdir()?;
    let shipped = support::workspace_root().join("migrations");
    for service in ["user", "product", "order", "notification"] {
        std::os::unix::fs::symlink(shipped.join(service), migrations.path().join(service))?;
    }
    std::os::unix::fs::symlink(shipped.join("product"), migrations.path().join(REUSING))?;
    set(
        config,
        &["database", "migrations"],
        migrations.path().display().to_string().into(),
    );
    let mut reusing = config["services"]["product"].clone();
    let table = reusing.as_table_mut().expect("a service table");
    table.insert("port".into(), i64::from(free_ports(1)[0]).into());
    table.insert("database".into(), names.name(REUSING).into());
    table.insert("cache_namespace".into(), names.name(REUSING).into());
    set(config, &["services", REUSING], reusing);
    set(
        config,
        &["services", REUSING, "instances", "reuse"],
        true.into(),
    );
    let fixture = |key: &'static str| ["services", EMPTY, key];
    set(config, &fixture("port"), i64::from(free_ports(1)[0]).into());
    set(
        config,
        &fixture("component"),
        support::fixture_path("v1").display().to_string().into(),
    );
    set(config, &fixture("database"), names.name(EMPTY).into());
    set(
        config,
        &fixture("grants"),
        vec!["database".to_string(), "logging".to_string()].into(),
    );
    Ok(migrations)
}

/// The shortest window of a `POST /orders` row. On the embedded backends in a debug build
/// (CI's smoke run) the host serves about 80 orders a second, so each of 64 connections
/// waits about 0.8 s for an answer, and a 3 s window once answered none.
const ORDERS_WINDOW: Duration = Duration::from_secs(10);

/// Products the spread `POST /orders` rows reserve in turn.
const SPREAD_PRODUCTS: usize = 20;

/// The bench's extra services.
const REUSING: &str = "product_reusing";
const EMPTY: &str = "empty";

/// Pins a process (all its threads) to the given CPU list.
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "taskset failed for {pid}");
    Ok(())
}

async fn run(duration: Duration, quick: bool, backends: Backends) -> anyhow::Result<()> {
    let machine = format!(
        "{} cores ({}); load generator pinned to CPU 1, servers to CPU 0; {} s per row; {} backends",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| info
                .lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l[13..].trim().to_string()))
            .unwrap_or_default(),
        duration.as_secs(),
        backends.label()
    );
    // The load generator (this process) on CPU 1; the servers on CPU 0.
    pin(std::process::id(), "1")?;
    let names = RunNames::new();
    let ports: std::collections::BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config_on(backends, &names, &ports);
    let _migrations = add_bench_services(&mut config, &names)?;
    // The cost platform.toml ships with, not the tests' cheaper one.
    let bcrypt_cost = 12;
    set(
        &mut config,
        &["identity", "bcrypt_cost"],
        bcrypt_cost.into(),
    );

    let started = Instant::now();
    let platform = Arc::new(Platform::start(names, config).await?);
    let cold_start = started.elapsed();
    let result = measure(
        &platform,
        &machine,
        duration,
        quick,
        cold_start,
        bcrypt_cost,
    )
    .await;
    if result.is_err() {
        // CI's smoke run keeps nothing else of the host: its last warnings tell why.
        eprintln!(
            "the host's last warnings and errors:\n{}",
            warnings_tail(&platform.log(), 40)
        );
    }
    platform.stop().await;
    result
}

/// The last `lines` lines of a host log that are warnings or errors.
fn warnings_tail(log: &str, lines: usize) -> String {
    let noteworthy: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    noteworthy[noteworthy.len().saturating_sub(lines)..].join("\n")
}

async fn measure(
    platform: &Arc<Platform>,
    machine: &str,
    duration: Duration,
    quick: bool,
    cold_start: Duration,
    bcrypt_cost: i64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    platform.restart().await?;
    let cached_start = started.elapsed();
    let pid = platform.pid().context("the host runs")?;
    pin(pid, "0")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_mib(pid);

    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "19.99", 1_000_000_000).await?;
    let product_id = product["id"].as_i64().context("product id")?;
    for _ in 0..20 {
        platform.new_product(&user, "5.00", 10).await?;
    }

    let mut native = match platform.backends() {
        Backends::Real => Some(start_native(platform, product_id).await?),
        Backends::Embedded => None,
    };
    let report = scenarios(
        platform,
        machine,
        pid,
        native
            .as_ref()
            .map(|(child, url)| (child.id(), url.as_str())),
        product_id,
        &user,
        duration,
        quick,
    )
    .await;
    if let Some((child, _)) = &mut native {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut report = report?;
    report.push_str(&tracing_rows(platform, product_id, duration).await?);

    report.push_str(&format!(
        "\n| host | figure |\n|---|---|\n\
         | start-up to all four serving, nothing compiled yet | {:.2} s |\n\
         | start-up to all four serving, compiled-code cache | {:.2} s |\n\
         | RSS, four services idle | {idle_rss:.0} MiB |\n\
         | bcrypt cost (POST /login) | {bcrypt_cost} |\n",
        cold_start.as_secs_f64(),
        cached_start.as_secs_f64(),
    ));
    println!("{report}");
    let results = support::workspace_root().join("host/benches/results");
    std::fs::create_dir_all(&results)?;
    let file = match (platform.backends(), quick) {
        (Backends::Real, false) => "load.txt",
        (Backends::Real, true) => "load-quick.txt",
        (Backends::Embedded, false) => "load-embedded.txt",
        (Backends::Embedded, true) => "load-embedded-quick.txt",
    };
    std::fs::write(results.join(file), report)?;
    Ok(())
}

/// The cache-hit row at 16 connections with tracing off, then exporting every trace, then
/// one trace in ten: each on the host restarted with that `[tracing]`, exporting to a
/// collector in this process that answers at once (the harness sets a 100 ms batch delay).
async fn tracing_rows(
    platform: &Platform,
    product_id: i64,
    duration: Duration,
) -> anyhow::Result<String> {
    let collector = otlp_receiver::Receiver::counting().await?;
    let url = platform.url("product", &format!("/products/{product_id}"));
    let mut report = String::from(
        "\n| scenario | connections | req/s (x tracing off) | p50 | p99 (x tracing off) | errors | server CPU | wrk CPU |\n|---|---|---|---|---|---|---|---|\n",
    );
    // (label, `[tracing] sampler`, `sampler_arg`); no sampler: tracing off.
    let settings = [
        ("tracing off", None, None),
        ("tracing on, every trace sampled", Some("always_on"), None),
        (
            "tracing on, 1 trace in 10 sampled",
            Some("traceidratio"),
            Some(0.1),
        ),
    ];
    let mut off = None;
    for (label, sampler, ratio) in settings {
        let mut config = platform.config.clone();
        if let Some(sampler) = sampler {
            set(
                &mut config,
                &["tracing", "endpoint"],
                collector.address.clone().into(),
            );
            set(&mut config, &["tracing", "sampler"], sampler.into());
            if let Some(ratio) = ratio {
                set(&mut config, &["tracing", "sampler_arg"], ratio.into());
            }
        }
        platform.restart_with_config(&config).await?;
        let pid = platform.pid().context("the host runs")?;
        pin(pid, "0")?;
        // Fills the cache again (the embedded one did not survive the restart).
        ensure!(platform.http().get(&url).send().await?.status() == 200);
        let before = collector.received();
        let measured = wrk::run(get(&url, 16, duration, Some(pid))).await?;
        // The last batch goes out within the batch delay.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let spans = collector.received() - before;
        report.push_str(&measured.row(
            &format!("GET /products/{{id}}, cache hit, {label} ({spans} spans exported)"),
            16,
            off.as_ref(),
        ));
        off.get_or_insert(measured);
    }
    platform.restart_with_config(&platform.config).await?;
    Ok(report)
}

/// Logins the storm keeps in flight.
const STORM_LOGINS: usize = 1_000;

/// The cache-hit row again, at 16 connections, while 1,000 wrong-password logins at a time
/// hit the user service: isolation means the product service barely notices.
async fn during_a_login_storm(
    product_url: &str,
    login_url: &str,
    user: &support::TestUser,
    duration: Duration,
    pid: u32,
) -> anyhow::Result<String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let raging = Arc::new(AtomicBool::new(true));
    let shed = Arc::new(AtomicUsize::new(0));
    let storm = {
        let (raging, shed) = (raging.clone(), shed.clone());
        let (url, username) = (login_url.to_string(), user.username.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while raging.load(Ordering::Relaxed) {
                let wave = (0..STORM_LOGINS).map(|_| {
                    client
                        .post(&url)
                        .form(&[("username", username.as_str()), ("password", "Wrong123")])
                        .send()
                });
                for answer in futures::future::join_all(wave).await.into_iter().flatten() {
                    if answer.status() == 503 {
                        shed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    // Let the storm fill the user service's queues first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let measured = wrk::run(get(product_url, 16, duration, Some(pid))).await;
    raging.store(false, Ordering::Relaxed);
    storm.await?;
    let measured = measured?;
    Ok(measured.row(
        &format!(
            "GET /products/{{id}}, cache hit, during a storm of {STORM_LOGINS} concurrent logins ({} shed with 503)",
            shed.load(Ordering::Relaxed)
        ),
        16,
        None,
    ))
}

/// Places one order, asking again while the host sheds load (503 with `Retry-After`): the
/// rows before may still be draining.
async fn order_once(
    platform: &Platform,
    orders: &str,
    user: &support::TestUser,
    product_id: i64,
) -> anyhow::Result<Value> {
    let last_refusal = std::cell::RefCell::new(None);
    let answered = support::eventually(
        "an order to be answered",
        Duration::from_secs(30),
        || async {
            let response = platform
                .http()
                .post(orders)
                .header("authorization", user.bearer())
                .json(&json!({ "product_id": product_id, "quantity": 1 }))
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            match status.as_u16() {
                201 => Ok(Some(body)),
                503 => {
                    last_refusal.replace(Some(body));
                    Ok(None)
                }
                _ => anyhow::bail!("POST /orders answered {status} {body}"),
            }
        },
    )
    .await;
    answered.with_context(|| {
        format!(
            "the last answer: 503 {}",
            last_refusal.borrow().as_ref().unwrap_or(&Value::Null)
        )
    })
}

/// A product of the reusing service, read once so that the load hits its cache.
async fn reusing_product(platform: &Platform, user: &support::TestUser) -> anyhow::Result<i64> {
    let response = platform
        .http()
        .post(platform.url(REUSING, "/products"))
        .header("authorization", user.bearer())
        .json(&json!({ "name": "reused", "price": "19.99", "quantity": 1_000_000 }))
        .send()
        .await?;
    ensure!(response.status() == 201, "create: {}", response.status());
    let product: Value = response.json().await?;
    let id = product["id"].as_i64().context("product id")?;
    let url = platform.url(REUSING, &format!("/products/{id}"));
    ensure!(platform.http().get(&url).send().await?.status() == 200);
    Ok(id)
}

/// A wrk run of `GET url`.
fn get(url: &str, connections: usize, duration: Duration, server_pid: Option<u32>) -> WrkRun<'_> {
    WrkRun {
        url,
        connections,
        duration,
        json_bodies: Vec::new(),
        headers: Vec::new(),
        server_pid,
    }
}

/// Starts the native baseline on the product service's PostgreSQL database and Redis, pinned
/// like the host; returns it and the URL of the product.
async fn start_native(platform: &Platform, product_id: i64) -> anyhow::Result<(Child, String)> {
    let native_port = free_ports(1)[0];
    let database_url = format!(
        "postgres://postgres@127.0.0.1:5432/{}",
        platform.database("product")
    );
    let native: Child = Command::new(std::env::current_exe()?)
        .args([
            "--serve-native",
            &native_port.to_string(),
            &database_url,
            "redis://127.0.0.1:6379",
        ])
        .stdin(Stdio::null())
        .spawn()?;
    let native_url = format!("http://127.0.0.1:{native_port}/products/{product_id}");
    let http = support::client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http
        .get(&native_url)
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        ensure!(
            Instant::now() < deadline,
            "the native baseline did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pin(native.id(), "0")?;
    Ok((native, native_url))
}

#[allow(clippy::too_many_arguments)]
async fn scenarios(
    platform: &Arc<Platform>,
    machine: &str,
    pid: u32,
    native: Option<(u32, &str)>,
    product_id: i64,
    user: &support::TestUser,
    duration: Duration,
    quick: bool,
) -> anyhow::Result<String> {
    let mut report = format!(
        "{machine}\n\n| scenario | connections | req/s (x baseline) | p50 | p99 (x baseline) | errors | server CPU | wrk CPU |\n|---|---|---|---|---|---|---|---|\n"
    );
    let product_url = platform.url("product", &format!("/products/{product_id}"));
    let reusing_url = platform.url(
        REUSING,
        &format!("/products/{}", reusing_product(platform, user).await?),
    );
    let mut peak_rss = 0f64;
    // Native, fresh instances, reused instances: one after the other at each count, so
    // the machine's drift touches all three alike.
    for connections in CONNECTIONS {
        let native = match native {
            Some((native_pid, native_url)) => {
                Some(wrk::run(get(native_url, connections, duration, Some(native_pid))).await?)
            }
            None => None,
        };
        let wasm = wrk::run(get(&product_url, connections, duration, Some(pid))).await?;
        let reused = wrk::run(get(&reusing_url, connections, duration, Some(pid))).await?;
        peak_rss = peak_rss.max(wasm.peak_rss_mib);
        if let Some(native) = &native {
            report.push_str(&native.row(
                "native baseline: GET /products/{id}, cache hit",
                connections,
                None,
            ));
        }
        let versus = if native.is_some() { " (x native)" } else { "" };
        report.push_str(&wasm.row(
            &format!("GET /products/{{id}}, cache hit{versus}"),
            connections,
            native.as_ref(),
        ));
        report.push_str(&reused.row(
            &format!("GET /products/{{id}}, cache hit, `instances.reuse` on{versus}"),
            connections,
            native.as_ref(),
        ));
    }
    let health = platform.url("product", "/health");
    let empty = platform.url(EMPTY, "/ok");
    for connections in CONNECTIONS {
        let host_alone = wrk::run(get(&health, connections, duration, Some(pid))).await?;
        let fresh = wrk::run(get(&empty, connections, duration, Some(pid))).await?;
        report.push_str(&host_alone.row(
            "GET /health (the host alone, no component)",
            connections,
            None,
        ));
        report.push_str(&fresh.row(
            "GET /ok (an empty route, a fresh instance; x /health)",
            connections,
            Some(&host_alone),
        ));
    }
    let list = platform.url("product", "/products?limit=20");
    for connections in CONNECTIONS {
        let measured = wrk::run(get(&list, connections, duration, Some(pid))).await?;
        report.push_str(&measured.row("GET /products?limit=20", connections, None));
    }
    let login = platform.url("user", "/login");
    for connections in CONNECTIONS {
        let measured = wrk::run(WrkRun {
            url: &login,
            connections,
            duration,
            json_bodies: vec![
                json!({ "username": user.username, "password": user.password }).to_string(),
            ],
            headers: Vec::new(),
            server_pid: Some(pid),
        })
        .await?;
        report.push_str(&measured.row("POST /login", connections, None));
    }
    report.push_str(&during_a_login_storm(&product_url, &login, user, duration, pid).await?);
    let orders = platform.url("order", "/orders");
    // Every order of one product, then orders spread over many: one product's row lock,
    // held through each commit, serialises the first.
    let mut spread = Vec::new();
    for _ in 0..SPREAD_PRODUCTS {
        let product = platform.new_product(user, "3.00", 1_000_000_000).await?;
        spread.push(json!({ "product_id": support::id_of(&product)?, "quantity": 1 }).to_string());
    }
    let one = vec![json!({ "product_id": product_id, "quantity": 1 }).to_string()];
    // Measure orders once one is answered: the path works, and the rows before have drained
    // enough to let it through.
    order_once(platform, &orders, user, product_id).await?;
    for (bodies, label) in [
        (&one, "POST /orders, one product".to_string()),
        (
            &spread,
            format!("POST /orders, {SPREAD_PRODUCTS} products in turn"),
        ),
    ] {
        for connections in CONNECTIONS {
            let measured = wrk::run(WrkRun {
                url: &orders,
                connections,
                duration: duration.max(ORDERS_WINDOW),
                json_bodies: bodies.clone(),
                headers: vec![("Authorization".into(), user.bearer())],
                server_pid: Some(pid),
            })
            .await?;
            report.push_str(&measured.row(&label, connections, None));
        }
    }

    // The orders above left a backlog of events: wait until every order has its notification.
    let count = |service: &'static str, table: &'static str| async move {
        let mut connection = platform.database_connection(service).await?;
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut connection)
            .await?;
        anyhow::Ok(count)
    };
    let placed = count("order", "orders").await?;
    let drain_started = Instant::now();
    support::eventually(
        "the event backlog to drain",
        Duration::from_secs(600),
        || async move {
            let recorded = count("notification", "notifications").await?;
            Ok((recorded >= placed).then_some(()))
        },
    )
    .await?;
    report.push_str(&format!(
        "\nbacklog after the POST /orders rows: {placed} orders, all notified {:.1} s after the load stopped\n",
        drain_started.elapsed().as_secs_f64()
    ));

    // Event latency: from the order's insert to its notification's insert, both stamped by
    // the same database server (or the same host's clock, embedded), read through the API.
    let samples = if quick { 5 } else { 50 };
    let mut latencies = Vec::new();
    for _ in 0..samples {
        let order = order_once(platform, &orders, user, product_id).await?;
        let order_id = order["id"].as_i64().context("order id")?;
        let created = chrono::DateTime::parse_from_rfc3339(
            order["created_at"].as_str().context("created_at")?,
        )?;
        let notifications_url = platform.url("notification", "/notifications?limit=5");
        let (notifications_url, bearer) = (&notifications_url, &user.bearer());
        let stored =
            support::eventually("the notification", Duration::from_secs(10), || async move {
                let listed: Vec<Value> = platform
                    .http()
                    .get(notifications_url)
                    .header("authorization", bearer)
                    .send()
                    .await?
                    .json()
                    .await?;
                let Some(notification) = listed.iter().find(|n| n["order_id"] == order_id) else {
                    return Ok(None);
                };
                let stored = notification["created_at"].as_str().context("created_at")?;
                Ok(Some(
                    chrono::DateTime::parse_from_rfc3339(stored)?.with_timezone(&chrono::Utc),
                ))
            })
            .await?;
        latencies.push(
            (stored - created.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default(),
        );
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    report.push_str(&format!(
        "\n| event latency (order stored -> notification stored), {samples} orders | p50 {:.1} ms | p99 {:.1} ms |\n|---|---|---|\n",
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    ));
    report.push_str(&format!(
        "\npeak host RSS under load (up to 64 connections): {peak_rss:.0} MiB\n"
    ));
    Ok(report)
}

/// The native baseline: the product service's `GET /products/{id}` as a plain hyper handler
/// with the same cache-aside logic, on the same PostgreSQL and Redis.
mod native {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use redis::aio::ConnectionManager;
    use serde_json::json;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{PgPool, Row};
    use std::sync::Arc;

    struct State {
        pool: PgPool,
        redis: ConnectionManager,
    }

    pub fn serve(port: &str, database_url: &str, redis_url: &str) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let state = Arc::new(State {
                pool: PgPoolOptions::new().max_connections(10).connect(database_url).await?,
                redis: ConnectionManager::new(redis::Client::open(redis_url)?).await?,
            });
            let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    }

    /// The wire shape of a product, borrowed from the cached bytes.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only checked
    struct CachedProduct<'a> {
        id: i64,
        #[serde(borrow)]
        name: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        description: Option<std::borrow::Cow<'a, str>>,
        price: serde_json::Number,
        quantity: i64,
        #[serde(borrow)]
        created_at: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        updated_at: std::borrow::Cow<'a, str>,
    }

    fn respond(status: u16, body: Vec<u8>) -> http::Response<Full<Bytes>> {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a response")
    }

    async fn handle(
        state: &State,
        request: http::Request<Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let Some(id) = request
            .uri()
            .path()
            .strip_prefix("/products/")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            return respond(404, br#"{"detail":"Not Found"}"#.to_vec());
        };
        let key = format!("native:product:{id}");
        let mut redis = state.redis.clone();
        if let Ok(Some(cached)) = redis::Cmd::get(&key)
            .query_async::<Option<Vec<u8>>>(&mut redis)
            .await
        {
            // Check the entry's shape without building a JSON tree, then serve its bytes,
            // as the component does.
            if serde_json::from_slice::<CachedProduct<'_>>(&cached).is_ok_and(|p| p.id == id) {
                return respond(200, cached);
            }
        }
        let row = sqlx::query(
            "SELECT id, name, description, price_cents, quantity, created_at, updated_at FROM products WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&state.pool)
        .await;
        match row {
            Ok(Some(row)) => {
                let created: chrono::DateTime<chrono::Utc> = row.get("created_at");
                let updated: chrono::DateTime<chrono::Utc> = row.get("updated_at");
                let body = serde_json::to_vec(&json!({
                    "id": row.get::<i64, _>("id"),
                    "name": row.get::<String, _>("name"),
                    "description": row.get::<Option<String>, _>("description"),
                    "price": row.get::<i64, _>("price_cents") as f64 / 100.0,
                    "quantity": row.get::<i64, _>("quantity"),
                    "created_at": created.to_rfc3339(),
                    "updated_at": updated.to_rfc3339(),
                }))
                .expect("JSON");
                let _ = redis::Cmd::set_ex(&key, &body, 300)
                    .query_async::<()>(&mut redis)
                    .await;
                respond(200, body)
            }
            Ok(None) => respond(404, br#"{"detail":"Product not found"}"#.to_vec()),
            Err(_) => respond(503, br#"{"detail":"Database unavailable"}"#.to_vec()),
        }
    }
}
