//! The example services of `examples/`: `reviews` in Python and `wishlist` in JavaScript,
//! built by the commands `examples/services.toml` gives them after their own unit tests
//! pass, then served beside the shop on each backend set as README says (platform.toml
//! and examples/services.toml joined): a write then a read through the database, a cached
//! read, authenticated routes through the platform's token check, 422s for bad input and
//! the host's own 401 / 404 / 405; each one consumes the events of a real order; each is
//! hot-swapped to a rebuilt version under load with no failed request; and a version whose
//! world imports `messaging`, which neither was granted, is refused naming the import.

use crate::support::{
    eventually, free_ports, id_of, run_in, set, shop_config_on, with_platform, workspace_root,
};
use crate::support::{Platform, RunNames, Test, TestUser};
use anyhow::{ensure, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

pub fn tests() -> Vec<Test> {
    crate::tests![
        reviews_in_python_takes_a_buyers_review_and_swaps_under_load,
        wishlist_in_javascript_marks_a_bought_wish_and_swaps_under_load,
    ]
}

/// An example, and what its own tooling needs in its folder.
pub struct Example {
    pub name: &'static str,
    /// Run once before the first build (installs the pinned build tool).
    setup: &'static [&'static str],
    unit_tests: &'static [&'static str],
    /// The file and line holding the version `GET /version` answers; a rebuild with `2`
    /// in it is the version the test swaps to.
    version_line: (&'static str, &'static str),
}

pub const REVIEWS: Example = Example {
    name: "reviews",
    setup: &[],
    unit_tests: &["python3", "-m", "unittest"],
    version_line: ("service.py", "VERSION = \"1\""),
};

pub const WISHLIST: Example = Example {
    name: "wishlist",
    // The lockfile pins componentize-js; `.ci/run` has already fetched it into npm's cache.
    setup: &["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
    unit_tests: &["node", "--test"],
    version_line: ("service.js", "export const VERSION = '1';"),
};

/// The three builds of an example the tests deploy.
struct Builds {
    v1: PathBuf,
    v2: PathBuf,
    /// Its world also imports `messaging`.
    ungranted: PathBuf,
}

/// The shipped entries of examples/services.toml.
fn example_entries() -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(workspace_root().join("examples/services.toml"))?;
    Ok(toml::from_str(&text)?)
}

/// Builds `example` once for all backend sets: its unit tests, then v1 in place by its
/// `build` command, then v2 and the ungranted version from copies of its sources.
async fn builds(example: &'static Example) -> anyhow::Result<&'static Builds> {
    static REVIEWS_BUILDS: OnceCell<Result<Builds, String>> = OnceCell::const_new();
    static WISHLIST_BUILDS: OnceCell<Result<Builds, String>> = OnceCell::const_new();
    let cell = if example.name == REVIEWS.name {
        &REVIEWS_BUILDS
    } else {
        &WISHLIST_BUILDS
    };
    cell.get_or_init(|| async { build(example).await.map_err(|error| format!("{error:#}")) })
        .await
        .as_ref()
        .map_err(|error| anyhow::anyhow!("building {}: {error}", example.name))
}

async fn build(example: &Example) -> anyhow::Result<Builds> {
    let v1 = build_in_place(example).await?;
    let command = build_command(example)?;
    let (file, line) = example.version_line;
    let v2 = build_variant(example, &command, "v2", |copy| {
        replace_in(&copy.join(file), line, &line.replace('1', "2"))
    })
    .await?;
    let ungranted = build_variant(example, &command, "ungranted", |copy| {
        let logging = "    import platform:service/logging@0.2.0;";
        replace_in(
            &copy.join("wit/world.wit"),
            logging,
            &format!("{logging}\n    import platform:service/messaging@0.2.0;"),
        )
    })
    .await?;
    Ok(Builds { v1, v2, ungranted })
}

/// `example` after its unit tests pass, built in its folder by its `build` command; the
/// path of the component.
pub async fn build_in_place(example: &Example) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let sources = root.join("examples").join(example.name);
    if !example.setup.is_empty() {
        run_in(&sources, example.setup, &[]).await?;
    }
    run_in(&sources, example.unit_tests, &[]).await?;
    run_in(&root, &["sh", "-c", &build_command(example)?], &[]).await?;
    let entry = &example_entries()?["services"][example.name];
    Ok(root.join(entry["component"].as_str().context("a component")?))
}

fn build_command(example: &Example) -> anyhow::Result<String> {
    let entry = &example_entries()?["services"][example.name];
    Ok(entry["build"]
        .as_str()
        .context("a build command")?
        .to_string())
}

/// `example` built by its `command` from a copy of its sources that `edit` changed.
async fn build_variant(
    example: &Example,
    command: &str,
    label: &str,
    edit: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let copy = root
        .join("target/example-variants")
        .join(format!("{}-{label}", example.name));
    copy_sources(&root.join("examples").join(example.name), &copy)?;
    edit(&copy)?;
    let command = command.replacen(
        &format!("cd examples/{}", example.name),
        &format!("cd {}", copy.display()),
        1,
    );
    run_in(&root, &["sh", "-c", &command], &[]).await?;
    Ok(copy.join(format!("target/{}.wasm", example.name)))
}

/// A fresh copy of an example's sources at `copy`; its WIT and npm packages are the
/// original's, linked.
fn copy_sources(sources: &Path, copy: &Path) -> anyhow::Result<()> {
    if copy.exists() {
        std::fs::remove_dir_all(copy)?;
    }
    std::fs::create_dir_all(copy.join("wit/deps"))?;
    for entry in std::fs::read_dir(sources)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, copy.join(path.file_name().unwrap()))?;
        }
    }
    std::fs::copy(sources.join("wit/world.wit"), copy.join("wit/world.wit"))?;
    std::os::unix::fs::symlink(workspace_root().join("wit"), copy.join("wit/deps/platform"))?;
    if sources.join("node_modules").exists() {
        std::os::unix::fs::symlink(sources.join("node_modules"), copy.join("node_modules"))?;
    }
    Ok(())
}

fn replace_in(file: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)?;
    ensure!(text.contains(from), "no `{from}` in {file:?}");
    std::fs::write(file, text.replacen(from, to, 1))?;
    Ok(())
}

/// The shop on `shared`'s backend set with `example` beside it, as README joins
/// platform.toml and examples/services.toml.
fn config_with(
    shared: &Platform,
    names: &RunNames,
    example: &Example,
    builds: &Builds,
) -> anyhow::Result<toml::Table> {
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config_on(shared.backends(), names, &ports);
    add_example(&mut config, names, example, &builds.v1)?;
    Ok(config)
}

/// Adds `example`'s entry of examples/services.toml to a shop's `config`, serving
/// `component` on a free port with this run's names for its database, cache and queues,
/// subscribed to the shop's exchange.
pub fn add_example(
    config: &mut toml::Table,
    names: &RunNames,
    example: &Example,
    component: &Path,
) -> anyhow::Result<()> {
    let mut entry = example_entries()?["services"][example.name].clone();
    let entry = entry.as_table_mut().context("a service table")?;
    entry.insert("port".into(), i64::from(free_ports(1)[0]).into());
    entry.insert("component".into(), component.display().to_string().into());
    entry.insert("database".into(), names.name(example.name).into());
    entry.insert("cache_namespace".into(), names.name(example.name).into());
    let exchange = config["messaging"]["exchanges"][0]["name"].clone();
    let subscription = entry["subscriptions"][0]
        .as_table_mut()
        .context("a subscription")?;
    let queue = names.name(subscription["queue"].as_str().unwrap());
    subscription.insert("exchange".into(), exchange);
    subscription.insert("dead_letter_queue".into(), format!("{queue}.dlq").into());
    subscription.insert("queue".into(), queue.into());
    set(
        config,
        &["services", example.name],
        toml::Value::Table(entry.clone()),
    );
    Ok(())
}

async fn reviews_in_python_takes_a_buyers_review_and_swaps_under_load(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    serve(shared, &REVIEWS, drive_reviews).await
}

async fn wishlist_in_javascript_marks_a_bought_wish_and_swaps_under_load(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    serve(shared, &WISHLIST, drive_wishlist).await
}

async fn serve(
    shared: &'static Platform,
    example: &'static Example,
    drive: impl AsyncFnOnce(&Platform, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // Building and first compiling a component with an interpreter inside takes both cores
    // for a while: one at a time, and not beside a test that checks latencies.
    let _alone = crate::support::cpu_heavy().await;
    let builds = builds(example).await?;
    let names = RunNames::new();
    let config = config_with(shared, &names, example, builds)?;
    with_platform(names, config, async |platform| {
        drive(platform, example.name).await?;
        swap_under_load(platform, example.name, &builds.v2).await?;
        refuse_ungranted(platform, example.name, &builds.ungranted).await
    })
    .await
}

async fn drive_reviews(platform: &Platform, service: &str) -> anyhow::Result<()> {
    let http = platform.http();
    let url = |path: &str| platform.url(service, path);
    let seller = platform.new_user().await?;
    let buyer = platform.new_user().await?;
    let product = platform.new_product(&seller, "12.50", 10).await?;
    let product_id = id_of(&product)?;
    let mine = url(&format!("/products/{product_id}/reviews/mine"));
    let review = |user: &TestUser, body: Value| {
        http.put(&mine)
            .header("authorization", user.bearer())
            .json(&body)
            .send()
    };

    let refused = review(&buyer, json!({ "rating": 5 })).await?;
    assert_eq!(refused.status(), 403, "a review before any purchase");
    // The order service's order.created event records the purchase.
    platform.place_order(&buyer, product_id, 2).await?;
    let written = eventually("the purchase recorded", Duration::from_secs(20), || async {
        let response = review(&buyer, json!({ "rating": 4, "comment": "  solid  " })).await?;
        anyhow::Ok((response.status() == 201).then_some(response))
    })
    .await?;
    let written: Value = written.json().await?;
    assert_eq!(written["rating"], 4);
    assert_eq!(written["comment"], "solid");
    assert_eq!(written["username"], buyer.username.as_str());
    assert_eq!(written["product_id"], product_id);

    let page = url(&format!("/products/{product_id}/reviews"));
    // Read twice: the second from the cache, both the same.
    for _ in 0..2 {
        let reviews: Value = http.get(&page).send().await?.json().await?;
        assert_eq!(reviews["count"], 1);
        assert_eq!(reviews["average"], 4.0);
        assert_eq!(reviews["reviews"][0]["comment"], "solid");
    }
    let replaced = review(&buyer, json!({ "rating": 2 })).await?;
    assert_eq!(replaced.status(), 200, "a second review replaces the first");
    let reviews: Value = http.get(&page).send().await?.json().await?;
    assert_eq!(
        (reviews["count"].clone(), reviews["average"].clone()),
        (json!(1), json!(2.0)),
        "the write dropped the cached page"
    );
    let own: Value = http
        .get(url("/me/reviews"))
        .header("authorization", buyer.bearer())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(own.as_array().map(Vec::len), Some(1));
    assert_eq!(own[0]["rating"], 2);

    let bad = review(&buyer, json!({ "rating": 6 })).await?;
    assert_eq!(bad.status(), 422);
    let detail: Value = bad.json().await?;
    assert_eq!(detail["detail"][0]["loc"], json!(["body", "rating"]));
    let not_a_buyer = review(&seller, json!({ "rating": 1 })).await?;
    assert_eq!(not_a_buyer.status(), 403);
    assert_eq!(
        http.get(url("/products/abc/reviews"))
            .send()
            .await?
            .status(),
        422
    );
    host_answers(platform, service, &mine).await
}

async fn drive_wishlist(platform: &Platform, service: &str) -> anyhow::Result<()> {
    let http = platform.http();
    let url = |path: &str| platform.url(service, path);
    let seller = platform.new_user().await?;
    let buyer = platform.new_user().await?;
    let product = platform.new_product(&seller, "3.00", 10).await?;
    let product_id = id_of(&product)?;
    let wish = url(&format!("/wishlist/{product_id}"));
    let put = |body: Value| {
        http.put(&wish)
            .header("authorization", buyer.bearer())
            .json(&body)
            .send()
    };
    let wishlist = || async {
        let list: Value = http
            .get(url("/wishlist"))
            .header("authorization", buyer.bearer())
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(list)
    };
    let count_url = url(&format!("/products/{product_id}/wishlisted"));
    let wishlisted = || async {
        let count: Value = http.get(&count_url).send().await?.json().await?;
        anyhow::Ok(count["wishlisted"].clone())
    };

    let added = put(json!({ "note": "  for the garden " })).await?;
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await?;
    assert_eq!(added["note"], "for the garden");
    assert_eq!(put(json!({ "note": "for the shed" })).await?.status(), 200);
    // Read twice: the second from the cache, both the same.
    assert_eq!(wishlisted().await?, 1);
    assert_eq!(wishlisted().await?, 1);
    let list = wishlist().await?;
    assert_eq!(list[0]["product_id"], product_id);
    assert_eq!(list[0]["note"], "for the shed");
    assert_eq!(list[0]["bought"], false);

    // The order service's order.created event marks the wish bought, and drops the
    // cached count.
    let order = platform.place_order(&buyer, product_id, 1).await?;
    let list = eventually(
        "the wish marked bought",
        Duration::from_secs(20),
        || async {
            let list = wishlist().await?;
            anyhow::Ok((list[0]["bought"] == true).then_some(list))
        },
    )
    .await?;
    assert_eq!(list[0]["order_id"], order["id"]);
    assert_eq!(wishlisted().await?, 0);

    let bad = put(json!({ "note": 5 })).await?;
    assert_eq!(bad.status(), 422);
    let detail: Value = bad.json().await?;
    assert_eq!(detail["detail"][0]["loc"], json!(["body", "note"]));
    assert_eq!(
        http.put(url("/wishlist/abc"))
            .header("authorization", buyer.bearer())
            .json(&json!({}))
            .send()
            .await?
            .status(),
        422
    );
    let delete = || {
        http.delete(&wish)
            .header("authorization", buyer.bearer())
            .send()
    };
    assert_eq!(delete().await?.status(), 204);
    assert_eq!(delete().await?.status(), 404);
    host_answers(platform, service, &wish).await
}

/// What the host answers before a component runs: no token on an authenticated route,
/// no route, no such method on a route.
async fn host_answers(
    platform: &Platform,
    service: &str,
    authenticated: &str,
) -> anyhow::Result<()> {
    let http = platform.http();
    let status = http
        .put(authenticated)
        .json(&json!({}))
        .send()
        .await?
        .status();
    assert_eq!(status, 401, "no token");
    let status = http
        .get(platform.url(service, "/nothing-here"))
        .send()
        .await?
        .status();
    assert_eq!(status, 404);
    let status = http
        .post(platform.url(service, "/version"))
        .send()
        .await?
        .status();
    assert_eq!(status, 405);
    Ok(())
}

/// Four clients read `/version` while `v2` is deployed: none fails, each sees 1 then 2.
async fn swap_under_load(platform: &Platform, service: &str, v2: &Path) -> anyhow::Result<()> {
    let running = Arc::new(AtomicBool::new(true));
    let url = platform.url(service, "/version");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (http, url, running) = (platform.http().clone(), url.clone(), running.clone());
        clients.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            let mut failures = Vec::new();
            while running.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        let body: Value = response.json().await.unwrap_or_default();
                        versions.push(body["version"].as_str().unwrap_or("?").to_string());
                    }
                    Ok(response) => failures.push(response.status().to_string()),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (versions, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deployed = platform
        .cli(&["deploy", service, &v2.display().to_string(), "--json"])
        .await?;
    ensure!(deployed.code == 0, "deploy: {deployed:?}");
    let next: Value = platform.http().get(&url).send().await?.json().await?;
    assert_eq!(next["version"], "2", "the next request after the deploy");
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::Relaxed);
    let (mut served, mut saw_v1) = (0, false);
    for client in clients {
        let (versions, failures) = client.await?;
        saw_v1 |= versions.first().is_some_and(|version| version == "1");
        assert!(
            failures.is_empty(),
            "failed requests during the swap: {failures:?}"
        );
        served += versions.len();
        let mut phases: Vec<&str> = versions.iter().map(String::as_str).collect();
        phases.dedup();
        assert!(
            phases == ["1", "2"] || phases == ["2"],
            "versions out of order: {phases:?}"
        );
    }
    assert!(saw_v1, "no client was served before the deploy");
    assert!(served >= 8, "only {served} requests were served");
    Ok(())
}

/// A version whose world imports `messaging` is refused, naming the import, and the
/// running version goes on serving.
async fn refuse_ungranted(
    platform: &Platform,
    service: &str,
    ungranted: &Path,
) -> anyhow::Result<()> {
    let output = platform
        .cli(&["deploy", service, &ungranted.display().to_string()])
        .await?;
    assert_eq!(output.code, 4, "{output:?}");
    assert!(
        output
            .stderr
            .contains("imports `messaging`, which this service was not granted"),
        "{}",
        output.stderr
    );
    let version: Value = platform
        .http()
        .get(platform.url(service, "/version"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(version["version"], "2");
    Ok(())
}
