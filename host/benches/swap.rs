//! Hot-swap benchmark: `cargo bench -p platform --bench swap`.
//!
//! Boots the real host (release build) with the four services against the machine's
//! PostgreSQL, Redis and RabbitMQ, then measures
//! - deploy latency per component, from sending the component to the admin API until the new
//!   version serves: *cold* (a digest the host never compiled) and *cached* (compiled code
//!   reused);
//! - `GET /products/{id}` throughput, latency and errors for 10 s without swaps and 10 s with
//!   a cold deploy of the product service every 2 s.
//!
//! The load generator and the host share the machine's cores. Results are printed as a
//! table and written to `host/benches/results/swap.txt`. `--quick` runs a short smoke version.

#[allow(dead_code)]
#[path = "../tests/integration/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "common/load_generator.rs"]
mod load_generator;

use load_generator::{drive, Measured};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{component_path, Platform};

async fn deploy(
    platform: &Platform,
    token: &str,
    service: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(Duration, f64)> {
    let started = Instant::now();
    let response = platform
        .http()
        .post(platform.admin_url(&format!("/v1/services/{service}/deploy")))
        .header("authorization", format!("Bearer {token}"))
        .body(bytes)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "deploy {service}: {}",
        response.text().await?
    );
    let answer: Value = response.json().await?;
    Ok((
        started.elapsed(),
        answer["swap_ms"].as_f64().unwrap_or_default(),
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Drives `url` with 16 clients for `duration`; with `swap`, deploys a fresh variant of
/// the product service every 2 s meanwhile. Returns the traffic and the deploys done.
async fn load_with_swaps(
    platform: &Arc<Platform>,
    url: String,
    duration: Duration,
    swap: Option<(String, Vec<u8>)>,
) -> (Measured, usize) {
    let traffic = tokio::spawn(drive(16, duration, None, move |http, _| http.get(&url)));
    let started = Instant::now();
    let mut swaps = 0;
    if let Some((token, bytes)) = swap {
        let mut nonce = 1_000;
        while started.elapsed() + Duration::from_secs(2) < duration {
            tokio::time::sleep(Duration::from_secs(2)).await;
            nonce += 1;
            match deploy(
                platform,
                &token,
                "product",
                support::component_variant(&bytes, nonce),
            )
            .await
            {
                Ok(_) => swaps += 1,
                Err(error) => eprintln!("deploy during load failed: {error:#}"),
            }
        }
    }
    (traffic.await.expect("the load generator"), swaps)
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (rounds, duration) = if quick {
        (1, Duration::from_secs(2))
    } else {
        (5, Duration::from_secs(10))
    };
    support::build_components()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let platform = Arc::new(Platform::start_shop(support::Backends::Real).await?);
        let result = run(&platform, rounds, duration, quick).await;
        platform.stop().await;
        result
    })
}

async fn run(
    platform: &Arc<Platform>,
    rounds: usize,
    duration: Duration,
    quick: bool,
) -> anyhow::Result<()> {
    let token = platform.admin_token()?;
    let mut report = String::new();
    report.push_str("| component | size | cold deploy (compile), client / host | cached deploy, client / host |\n|---|---|---|---|\n");
    for (index, service) in ["user", "product", "order", "notification"]
        .into_iter()
        .enumerate()
    {
        let bytes = std::fs::read(component_path(service))?;
        let (mut cold, mut cold_host, mut cached, mut cached_host) =
            (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let variant = support::component_variant(&bytes, (index * 100 + round) as u64);
            let (client, host) = deploy(platform, &token, service, variant.clone()).await?;
            cold.push(client.as_secs_f64() * 1000.0);
            cold_host.push(host);
            let (client, host) = deploy(platform, &token, service, variant).await?;
            cached.push(client.as_secs_f64() * 1000.0);
            cached_host.push(host);
        }
        report.push_str(&format!(
            "| {service} | {} KiB | {:.0} / {:.0} ms | {:.1} / {:.1} ms |\n",
            bytes.len() / 1024,
            median(cold),
            median(cold_host),
            median(cached),
            median(cached_host)
        ));
    }

    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "9.99", 100).await?;
    let url = platform.url("product", &format!("/products/{}", product["id"]));
    let product_bytes = std::fs::read(component_path("product"))?;
    report.push_str("\n| GET /products/{id}, 16 clients | req/s | p50 | p99 | errors | swaps |\n|---|---|---|---|---|---|\n");
    for (label, swaps) in [
        ("steady", None),
        (
            "cold deploy every 2 s",
            Some((token.clone(), product_bytes)),
        ),
    ] {
        let (result, swapped) = load_with_swaps(platform, url.clone(), duration, swaps).await;
        report.push_str(&format!(
            "| {label} | {:.0} | {:.1} ms | {:.1} ms | {} | {swapped} |\n",
            result.rate(),
            result.p50.as_secs_f64() * 1000.0,
            result.p99.as_secs_f64() * 1000.0,
            result.errors,
        ));
    }
    println!("{report}");
    let results = support::workspace_root().join("host/benches/results");
    std::fs::create_dir_all(&results)?;
    let file = if quick { "swap-quick.txt" } else { "swap.txt" };
    std::fs::write(results.join(file), report)?;
    Ok(())
}
