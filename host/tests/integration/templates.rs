//! `platform new`: a service made from the Rust, the Python or the JavaScript template is
//! added to a configuration without losing its comments, refuses a taken name or port,
//! passes its own unit tests, builds with `platform build`, and serves beside the shop: a
//! write then a read through the database, a cached read, an authenticated route through the
//! platform's token check, a 422 for a bad body, and the host's own 401 / 404 / 405.

use crate::support::{free_ports, run_in, set, shop_config, with_platform, workspace_root};
use crate::support::{Platform, RunNames, Test};
use anyhow::ensure;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub fn tests() -> Vec<Test> {
    crate::real_backend_tests![
        a_rust_service_from_platform_new_builds_tests_and_serves,
        a_python_service_from_platform_new_builds_tests_and_serves,
        a_javascript_service_from_platform_new_builds_tests_and_serves,
    ]
}

const SERVICE: &str = "jots";

/// A language's template, and the commands its own tooling runs in the service's folder.
struct Language {
    flag: &'static str,
    /// Run once before the first build (installs the pinned build tool).
    setup: &'static [&'static str],
    unit_tests: &'static [&'static str],
    sources: &'static [&'static str],
    /// The environment of the setup, the unit tests and the build.
    env: &'static [(&'static str, &'static str)],
    /// A folder of the workspace that the service's `target/` links to, so that a rerun
    /// reuses what the last one compiled; the build's output stays where the entry says.
    shared_target: Option<&'static str>,
}

const RUST: Language = Language {
    flag: "rust",
    setup: &[],
    unit_tests: &["cargo", "test", "--quiet"],
    sources: &[
        "src/lib.rs",
        "src/service.rs",
        "Cargo.toml",
        "wit/world.wit",
    ],
    // The workspace's own build has already downloaded the template's crates (the same
    // wit-bindgen and serde_json): the template's lockfile is made from those, with no
    // registry.
    env: &[("CARGO_NET_OFFLINE", "true")],
    shared_target: Some("target/template-rust"),
};

const PYTHON: Language = Language {
    flag: "python",
    setup: &[],
    unit_tests: &["python3", "-m", "unittest", "-v"],
    sources: &["app.py", "service.py", "test_service.py", "wit/world.wit"],
    env: &[],
    shared_target: None,
};

const JAVASCRIPT: Language = Language {
    flag: "javascript",
    // `.ci/run` has already fetched the lockfile's packages into npm's cache.
    setup: &["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
    unit_tests: &["node", "--test"],
    sources: &[
        "app.js",
        "service.js",
        "service.test.js",
        "build.mjs",
        "wit/world.wit",
    ],
    env: &[],
    shared_target: None,
};

async fn a_rust_service_from_platform_new_builds_tests_and_serves(
    _: &'static Platform,
) -> anyhow::Result<()> {
    from_platform_new(&RUST).await
}

async fn a_python_service_from_platform_new_builds_tests_and_serves(
    _: &'static Platform,
) -> anyhow::Result<()> {
    from_platform_new(&PYTHON).await
}

async fn a_javascript_service_from_platform_new_builds_tests_and_serves(
    _: &'static Platform,
) -> anyhow::Result<()> {
    from_platform_new(&JAVASCRIPT).await
}

/// `platform --config <config> <args>` with `language`'s environment: its exit code, stdout
/// and stderr.
async fn platform_cli(
    config: &Path,
    args: &[&str],
    language: &Language,
) -> anyhow::Result<(i32, String, String)> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_platform"))
        .envs(language.env.iter().copied())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .await?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

async fn from_platform_new(language: &Language) -> anyhow::Result<()> {
    // Compiling a component with an interpreter inside takes both cores for a while: one
    // at a time, and not beside a test that checks latencies.
    let _alone = crate::support::cpu_heavy().await;
    let project = tempfile::tempdir()?;
    let root = project.path();
    // The shop's migrations, linked, so that the new service's go into this project only.
    let migrations = root.join("migrations");
    std::fs::create_dir(&migrations)?;
    for service in ["user", "product", "order", "notification"] {
        std::os::unix::fs::symlink(
            workspace_root().join("migrations").join(service),
            migrations.join(service),
        )?;
    }
    let names = RunNames::new();
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut shop = shop_config(&names, &ports);
    set(
        &mut shop,
        &["database", "migrations"],
        migrations.display().to_string().into(),
    );
    let config_path = root.join("platform.toml");
    let comment = "# My shop, with a comment platform new must keep.\n";
    std::fs::write(
        &config_path,
        format!("{comment}{}", toml::to_string(&shop)?),
    )?;

    let port = free_ports(1)[0];
    let port_text = port.to_string();
    let (code, stdout, stderr) = platform_cli(
        &config_path,
        &[
            "new",
            SERVICE,
            "--lang",
            language.flag,
            "--port",
            &port_text,
        ],
        language,
    )
    .await?;
    ensure!(code == 0, "platform new: {code}\n{stdout}{stderr}");
    let edited = std::fs::read_to_string(&config_path)?;
    ensure!(edited.starts_with(comment), "the comment went:\n{edited}");
    let sources = root.join("services").join(SERVICE);
    for file in language.sources {
        ensure!(sources.join(file).is_file(), "no {file} in {sources:?}");
    }
    ensure!(sources.join("wit/deps/platform/database.wit").is_file());
    ensure!(migrations
        .join(SERVICE)
        .join("postgres/0001_init.sql")
        .is_file());

    // A name or a port already taken is refused, and nothing changes.
    let again = platform_cli(
        &config_path,
        &["new", SERVICE, "--lang", language.flag],
        language,
    )
    .await?;
    ensure!(
        again.0 == 2 && again.2.contains("already"),
        "the same name again: {again:?}"
    );
    let same_port = platform_cli(
        &config_path,
        &[
            "new",
            "other",
            "--lang",
            language.flag,
            "--port",
            &port_text,
        ],
        language,
    )
    .await?;
    ensure!(
        same_port.0 == 2
            && same_port
                .2
                .contains(&format!("port {port} is taken by the service `{SERVICE}`")),
        "the same port again: {same_port:?}"
    );
    ensure!(std::fs::read_to_string(&config_path)? == edited);

    if let Some(shared) = language.shared_target {
        let shared = workspace_root().join(shared);
        std::fs::create_dir_all(&shared)?;
        std::os::unix::fs::symlink(&shared, sources.join("target"))?;
    }
    // The template's own tests, in the language's own runner.
    if !language.setup.is_empty() {
        run_in(&sources, language.setup, language.env).await?;
    }
    run_in(&sources, language.unit_tests, language.env).await?;

    let (code, stdout, stderr) = platform_cli(&config_path, &["build", SERVICE], language).await?;
    ensure!(code == 0, "platform build: {code}\n{stdout}{stderr}");

    // Served beside the shop: this run's database and cache namespace, the component by its
    // absolute path (the harness writes the configuration elsewhere).
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(&config_path)?)?;
    let service = ["services", SERVICE];
    let component = root.join(config["services"][SERVICE]["component"].as_str().unwrap());
    set(
        &mut config,
        &[service[0], service[1], "component"],
        component.display().to_string().into(),
    );
    set(
        &mut config,
        &[service[0], service[1], "database"],
        names.name(SERVICE).into(),
    );
    set(
        &mut config,
        &[service[0], service[1], "cache_namespace"],
        names.name(SERVICE).into(),
    );
    with_platform(names, config, async |platform| {
        let user = platform.new_user().await?;
        let http = platform.http();
        let url = |path: &str| platform.url(SERVICE, path);

        let empty: Value = http.get(url("/notes")).send().await?.json().await?;
        assert_eq!(empty, json!([]));
        let written = http
            .post(url("/notes"))
            .header("authorization", user.bearer())
            .json(&json!({ "text": "  hello from a template  " }))
            .send()
            .await?;
        assert_eq!(written.status(), 201);
        let note: Value = written.json().await?;
        assert_eq!(note["text"], "hello from a template");
        assert_eq!(note["username"], user.username.as_str());
        assert_eq!(note["user_id"], user.id);
        let one: Value = http
            .get(url(&format!("/notes/{}", note["id"])))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(one, note);
        // Read twice: the second from the cache, both the same.
        for _ in 0..2 {
            let latest: Value = http.get(url("/notes")).send().await?.json().await?;
            assert_eq!(latest, json!([note]));
        }

        let me: Value = http
            .get(url("/me"))
            .header("authorization", user.bearer())
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(me["greeting"], format!("Hello, {}", user.username));

        let bad = http
            .post(url("/notes"))
            .header("authorization", user.bearer())
            .json(&json!({ "text": 5 }))
            .send()
            .await?;
        assert_eq!(bad.status(), 422);
        let detail: Value = bad.json().await?;
        assert_eq!(detail["detail"][0]["loc"], json!(["body", "text"]));
        assert_eq!(
            http.get(url("/notes/abc")).send().await?.status(),
            422,
            "a note id that is no number"
        );
        assert_eq!(http.get(url("/notes/999999")).send().await?.status(), 404);
        // The host's own answers: no token, no route, no method.
        assert_eq!(
            http.post(url("/notes"))
                .json(&json!({ "text": "x" }))
                .send()
                .await?
                .status(),
            401
        );
        assert_eq!(http.get(url("/nothing-here")).send().await?.status(), 404);
        assert_eq!(http.delete(url("/notes")).send().await?.status(), 405);
        Ok(())
    })
    .await
}
