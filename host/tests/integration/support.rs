//! The test platform: builds the components, boots the real `platform` binary on free ports
//! with names unique to this run (databases, exchange, queues, cache namespace), waits until
//! every service answers, and cleans all of it up afterwards.

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// PostgreSQL server the tests create their databases on (the one `platform.toml` names).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Every database, exchange and queue of a test run starts with this.
const RUN_PREFIX: &str = "it_";
/// Databases of runs older than this were left by a killed run and are dropped.
const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);
/// The user service's bcrypt cost in tests: real hashes, a fraction of the time.
const TEST_BCRYPT_COST: i64 = 6;

pub type TestFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One named integration test.
pub struct Test {
    pub name: String,
    pub run: fn(&'static Platform) -> TestFuture,
    /// Runs on one backend set only: on the real servers when it looks into one of them
    /// directly (a Redis key's TTL, a RabbitMQ queue) or starts hosts of its own configured
    /// for them; on the embedded set when it tests the embedded backends themselves.
    pub only: Option<Backends>,
}

/// The two backend sets the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// No URL configured: SQLite files, in-process cache and broker (runs anywhere).
    Embedded,
    /// PostgreSQL, Redis and RabbitMQ of this machine.
    Real,
}

impl Backends {
    pub fn label(self) -> &'static str {
        match self {
            Backends::Embedded => "embedded",
            Backends::Real => "real",
        }
    }
}

/// `tests![a, b]`: the async test functions `a`, `b` of the current module, named after it,
/// run against both backend sets.
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::support::Test {
            name: format!("{}::{}", module_path!().trim_start_matches("integration::"), stringify!($name)),
            run: |platform| Box::pin($name(platform)),
            only: None,
        }),*]
    };
}

/// [`tests!`] for tests that run against the real servers only (see [`Test::only`]).
#[macro_export]
macro_rules! real_backend_tests {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::support::Test {
            name: format!("{}::{}", module_path!().trim_start_matches("integration::"), stringify!($name)),
            run: |platform| Box::pin($name(platform)),
            only: Some($crate::support::Backends::Real),
        }),*]
    };
}

/// [`tests!`] for tests of the embedded backends themselves (see [`Test::only`]).
#[macro_export]
macro_rules! embedded_backend_tests {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::support::Test {
            name: format!("{}::{}", module_path!().trim_start_matches("integration::"), stringify!($name)),
            run: |platform| Box::pin($name(platform)),
            only: Some($crate::support::Backends::Embedded),
        }),*]
    };
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf()
}

/// Builds the service components and the test fixture for `wasm32-wasip2`, once, then the
/// fixture's variants (see `host/tests/fixtures/misbehaving`), each copied to
/// [`fixture_path`].
pub fn build_components() -> anyhow::Result<()> {
    cargo_build(&["user", "product", "order", "notification"], None)?;
    let variants = workspace_root().join("target/fixtures");
    std::fs::create_dir_all(&variants)?;
    for (variant, source) in FIXTURE_VARIANTS {
        let dir = variants.join(variant);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("version.rs"), source)?;
        cargo_build(&["misbehaving"], Some(&dir))?;
        std::fs::copy(component_path("misbehaving"), fixture_path(variant))?;
    }
    // Leave the default build in place, as a plain `cargo build` makes it.
    cargo_build(&["misbehaving"], None)?;
    Ok(())
}

/// The fixture's variants: its `version.rs` for each.
const FIXTURE_VARIANTS: [(&str, &str); 5] = [
    ("v1", "const VERSION: &str = \"v1\"; const HEALTHY: bool = true; const ROUTES_TRAP: bool = false;"),
    ("v2", "const VERSION: &str = \"v2\"; const HEALTHY: bool = true; const ROUTES_TRAP: bool = false;"),
    ("unhealthy", "const VERSION: &str = \"unhealthy\"; const HEALTHY: bool = false; const ROUTES_TRAP: bool = false;"),
    ("routes-trap", "const VERSION: &str = \"routes-trap\"; const HEALTHY: bool = true; const ROUTES_TRAP: bool = true;"),
    ("fails-half", "const VERSION: &str = \"fails-half\"; const HEALTHY: bool = true; const ROUTES_TRAP: bool = false;"),
];

/// Runs `cargo build --release --target wasm32-wasip2` for `packages`, with the fixture's
/// `version.rs` taken from `fixture_source` when given.
pub fn cargo_build(packages: &[&str], fixture_source: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(workspace_root());
    for package in packages {
        command.args(["-p", package]);
    }
    match fixture_source {
        Some(dir) => command.env("FIXTURE_SOURCE_DIR", dir),
        None => command.env_remove("FIXTURE_SOURCE_DIR"),
    };
    let status = command
        .status()
        .context("running cargo to build the components")?;
    ensure!(status.success(), "building {packages:?} failed ({status})");
    Ok(())
}

/// `component` with a custom section appended: a valid component that behaves the same,
/// with a digest of its own (a "new version" without a rebuild).
pub fn component_variant(component: &[u8], nonce: u64) -> Vec<u8> {
    let name = b"variant-nonce";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&nonce.to_le_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128 of a length < 128
    out.extend_from_slice(&section);
    out
}

/// `command` in `dir` with `env` added; fails with what it printed (the language tools of
/// the templates and examples).
pub async fn run_in(dir: &Path, command: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(command[0])
        .args(&command[1..])
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .await
        .with_context(|| format!("running {command:?} in {dir:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Held by the tests that load the CPU hard (a browser, a login storm, endless loops or
/// statements), most of which also check latencies: on two cores one of them beside
/// another's latency check would measure the other test, not the platform.
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// A built variant of the fixture: `v1`, `v2`, `unhealthy`, `routes-trap` or `fails-half`.
pub fn fixture_path(variant: &str) -> PathBuf {
    workspace_root()
        .join("target/fixtures")
        .join(format!("misbehaving-{variant}.wasm"))
}

pub fn component_path(crate_name: &str) -> PathBuf {
    workspace_root()
        .join("target/wasm32-wasip2/release")
        .join(format!("{crate_name}.wasm"))
}

/// Names unique to one run, so runs never see each other's data.
#[derive(Clone)]
pub struct RunNames {
    pub id: String,
}

impl RunNames {
    pub fn new() -> RunNames {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let random = &uuid::Uuid::new_v4().simple().to_string()[..6];
        RunNames {
            id: format!("{RUN_PREFIX}{stamp}_{random}"),
        }
    }

    /// `<run>_<name>`: a database, exchange, queue or cache namespace of this run.
    pub fn name(&self, name: &str) -> String {
        format!("{}_{name}", self.id)
    }
}

/// Picks `count` distinct free TCP ports on 127.0.0.1.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// `platform.toml` of the repository, rewritten for one run: free ports, the run's
/// database names, exchange, queues and cache namespaces, absolute paths.
/// The repository's `platform.toml` on `ports`, with this run's names, against the real
/// servers.
pub fn shop_config(names: &RunNames, ports: &BTreeMap<&str, u16>) -> toml::Table {
    let mut config = shop_config_on(Backends::Embedded, names, ports);
    set(&mut config, &["database", "url"], POSTGRES_URL.into());
    set(&mut config, &["cache", "url"], REDIS_URL.into());
    set(&mut config, &["messaging", "url"], AMQP_URL.into());
    config
}

/// [`shop_config`] on either backend set; embedded, it names no server at all.
pub fn shop_config_on(
    backends: Backends,
    names: &RunNames,
    ports: &BTreeMap<&str, u16>,
) -> toml::Table {
    if backends == Backends::Real {
        return shop_config(names, ports);
    }
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("platform.toml")).expect("platform.toml");
    let mut config: toml::Table = toml::from_str(&text).expect("platform.toml parses");
    for section in ["database", "cache", "messaging"] {
        assert!(
            config[section].get("url").is_none(),
            "platform.toml names a {section} server: its default must be embedded"
        );
    }
    let exchange = names.name("order_events");
    set(
        &mut config,
        &["database", "migrations"],
        root.join("migrations").display().to_string().into(),
    );
    config["messaging"]["exchanges"][0]
        .as_table_mut()
        .unwrap()
        .insert("name".into(), exchange.clone().into());
    set(
        &mut config,
        &["auth", "validate_url"],
        format!("http://127.0.0.1:{}/validate-token", ports["user"]).into(),
    );
    set(
        &mut config,
        &["identity", "bcrypt_cost"],
        TEST_BCRYPT_COST.into(),
    );
    set(
        &mut config,
        &["admin", "bind"],
        format!("127.0.0.1:{}", free_ports(1)[0]).into(),
    );
    for (service, port) in ports {
        let path = ["services", service];
        set(
            &mut config,
            &[path[0], path[1], "port"],
            i64::from(*port).into(),
        );
        set(
            &mut config,
            &[path[0], path[1], "component"],
            component_path(service).display().to_string().into(),
        );
        set(
            &mut config,
            &[path[0], path[1], "database"],
            names.name(service).into(),
        );
        set(
            &mut config,
            &[path[0], path[1], "cache_namespace"],
            names.name(service).into(),
        );
    }
    let product = format!("127.0.0.1:{}", ports["product"]);
    set(
        &mut config,
        &["services", "order", "allowed_hosts"],
        vec![product.clone()].into(),
    );
    set(
        &mut config,
        &["services", "order", "publish_exchanges"],
        vec![exchange.clone()].into(),
    );
    set(
        &mut config,
        &["services", "order", "config", "product_service_url"],
        format!("http://{product}").into(),
    );
    set(
        &mut config,
        &["services", "order", "config", "events_exchange"],
        exchange.clone().into(),
    );
    let subscription = config["services"]["notification"]["subscriptions"][0]
        .as_table_mut()
        .unwrap();
    subscription.insert("exchange".into(), exchange.into());
    subscription.insert("queue".into(), names.name("order_notifications").into());
    subscription.insert(
        "dead_letter_queue".into(),
        format!("{}.dlq", names.name("order_notifications")).into(),
    );
    // Retries wait a fraction of the shipped 2 s, so tests that retry stay quick.
    subscription.insert("retry_delay_ms".into(), 200.into());
    config
}

/// Sets `value` at `path` in `table`, creating intermediate tables.
pub fn set(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut current = table;
    for key in parents {
        current = current
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table on the path");
    }
    current.insert(last.to_string(), value);
}

/// Services that each run the fixture's `v1` (limits: 32 MiB, 1.5 s), granted `grants`,
/// On `backends`: the real servers, or none named (embedded).
pub fn fixture_config(
    backends: Backends,
    names: &RunNames,
    services: &[&str],
    grants: &[&str],
) -> toml::Table {
    let mut config = toml::Table::new();
    if backends == Backends::Real {
        set(&mut config, &["database", "url"], POSTGRES_URL.into());
        set(&mut config, &["cache", "url"], REDIS_URL.into());
        set(&mut config, &["messaging", "url"], AMQP_URL.into());
    }
    set(
        &mut config,
        &["database", "migrations"],
        "/nonexistent".into(),
    );
    set(
        &mut config,
        &["auth", "validate_url"],
        "http://127.0.0.1:9/validate-token".into(),
    );
    set(
        &mut config,
        &["admin", "bind"],
        format!("127.0.0.1:{}", free_ports(1)[0]).into(),
    );
    let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
    for (service, port) in services.iter().zip(free_ports(services.len())) {
        let path = |key: &'static str| ["services", service, key];
        set(&mut config, &path("port"), i64::from(port).into());
        set(
            &mut config,
            &path("component"),
            fixture_path("v1").display().to_string().into(),
        );
        if grants.iter().any(|grant| grant == "database") {
            set(&mut config, &path("database"), names.name(service).into());
        }
        set(&mut config, &path("grants"), grants.clone().into());
        set(&mut config, &path("memory_limit_mb"), 32.into());
        set(&mut config, &path("request_timeout_ms"), 1500.into());
    }
    config
}

/// A running `platform` process and everything its run created.
pub struct Platform {
    pub names: RunNames,
    pub config: toml::Table,
    /// The secret tokens are signed with (tests forge tokens with it and with others).
    pub jwt_secret: String,
    up_args: Vec<String>,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// Starts a host of its own on `config`, runs `test` against it, and stops it (dropping
/// what the run created) whatever `test` answered.
pub async fn with_platform(
    names: RunNames,
    config: toml::Table,
    test: impl AsyncFnOnce(&Platform) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let platform = Platform::start(names, config).await?;
    let result = test(&platform).await;
    platform.stop().await;
    result
}

impl Platform {
    /// Writes `config`, starts the host with it and waits until every service is healthy.
    pub async fn start(names: RunNames, config: toml::Table) -> anyhow::Result<Platform> {
        Platform::start_with(names, config, &[]).await
    }

    /// [`Platform::start`] with extra arguments for `platform up` (e.g. `--watch`).
    pub async fn start_with(
        names: RunNames,
        config: toml::Table,
        up_args: &[&str],
    ) -> anyhow::Result<Platform> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("platform.toml"), toml::to_string(&config)?)?;
        let platform = Platform {
            names,
            config,
            jwt_secret: uuid::Uuid::new_v4().simple().to_string(),
            up_args: up_args.iter().map(|arg| arg.to_string()).collect(),
            child: Mutex::new(None),
            dir,
            http: client(),
        };
        if let Err(error) = platform.spawn().await {
            platform.stop().await;
            return Err(error);
        }
        Ok(platform)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("platform.toml")
    }

    /// Starts the host process (its output appended to the run's log) and waits until
    /// every service is healthy.
    async fn spawn(&self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("platform.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_platform"))
            .arg("--config")
            .arg(self.config_path())
            .args(["up", "--no-build"])
            .args(&self.up_args)
            .env("JWT_SECRET", &self.jwt_secret)
            .env("RUST_LOG", "info")
            .env_remove("PLATFORM_ADMIN_TOKEN")
            // The configuration file alone picks the backends.
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("AMQP_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env_remove("OTEL_TRACES_SAMPLER_ARG")
            // Where a test turns tracing on, its receiver gets spans within a tenth of a
            // second, and an export to a collector that never answers gives up after one.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_BSP_EXPORT_TIMEOUT", "1000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the platform binary")?;
        *self.child.lock().unwrap() = Some(child);
        self.wait_until_healthy().await
    }

    /// Kills the host at once (SIGKILL): no request or message in progress finishes.
    pub async fn crash(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Stops the host and starts it again on `config` (same state). `self.config` stays the
    /// one the host started with: change only what no test helper reads (the bench turns
    /// tracing on and off).
    #[allow(dead_code)] // the load bench's
    pub async fn restart_with_config(&self, config: &toml::Table) -> anyhow::Result<()> {
        self.terminate().await;
        std::fs::write(self.config_path(), toml::to_string(config)?)?;
        self.spawn().await
    }

    /// Stops the host gracefully and starts it again on the same configuration and state.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.terminate().await;
        self.spawn().await
    }

    /// Runs `platform <args>` against this host's configuration.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<CliOutput> {
        self.run_cli(args, None).await
    }

    /// [`Platform::cli`] with `PLATFORM_ADMIN_TOKEN` set to `token`.
    pub async fn cli_with_token(&self, token: &str, args: &[&str]) -> anyhow::Result<CliOutput> {
        self.run_cli(args, Some(token)).await
    }

    async fn run_cli(&self, args: &[&str], token: Option<&str>) -> anyhow::Result<CliOutput> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_platform"));
        command
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("PLATFORM_ADMIN_TOKEN");
        if let Some(token) = token {
            command.env("PLATFORM_ADMIN_TOKEN", token);
        }
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        Ok(CliOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// The admin token the host generated in its state directory.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(self.dir.path().join(".platform/admin-token"))?
                .trim()
                .to_string(),
        )
    }

    /// `http://<admin bind><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.config["admin"]["bind"].as_str().unwrap()
        )
    }

    /// Starts the four e-commerce services as `platform.toml` defines them, on `backends`.
    pub async fn start_shop(backends: Backends) -> anyhow::Result<Platform> {
        let names = RunNames::new();
        let ports = free_ports(4);
        let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
            .into_iter()
            .zip(ports)
            .collect();
        let config = shop_config_on(backends, &names, &ports);
        Platform::start(names, config).await
    }

    /// The backend set a shop runs on (shops are never mixed; see [`Platform::on_server`]).
    pub fn backends(&self) -> Backends {
        if self.on_server("database") {
            Backends::Real
        } else {
            Backends::Embedded
        }
    }

    /// Whether the configuration names a server for `section` (`database`, `cache`,
    /// `messaging`) rather than leaving it embedded.
    pub fn on_server(&self, section: &str) -> bool {
        self.config
            .get(section)
            .is_some_and(|table| table.get("url").is_some())
    }

    async fn wait_until_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        for service in self.services() {
            loop {
                if let Some(status) = self.child.lock().unwrap().as_mut().unwrap().try_wait()? {
                    bail!(
                        "the platform exited ({status}) while starting:\n{}",
                        self.log()
                    );
                }
                if self.is_healthy(&service).await {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "service `{service}` not healthy after 120 s:\n{}",
                        self.log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// `/health` answers 200 and, for a consumer, its broker connection is up.
    async fn is_healthy(&self, service: &str) -> bool {
        let Ok(response) = self.http.get(self.url(service, "/health")).send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let health: Value = response.json().await.unwrap_or_default();
        health
            .get("rabbitmq")
            .is_none_or(|broker| broker["status"] == "healthy")
    }

    pub fn services(&self) -> Vec<String> {
        self.config["services"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    pub fn port(&self, service: &str) -> u16 {
        self.config["services"][service]["port"]
            .as_integer()
            .unwrap() as u16
    }

    /// `http://<host bind, default 127.0.0.1>:<port of service><path>`.
    pub fn url(&self, service: &str, path: &str) -> String {
        let bind = self
            .config
            .get("host")
            .and_then(|host| host.get("bind"))
            .and_then(|bind| bind.as_str())
            .unwrap_or("127.0.0.1");
        format!("http://{bind}:{}{path}", self.port(service))
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Everything the host printed so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("platform.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// The host process's id, while it runs (the benchmarks pin it and read its memory).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Whether the host process is still running.
    pub fn is_running(&self) -> bool {
        matches!(
            self.child.lock().unwrap().as_mut().map(|c| c.try_wait()),
            Some(Ok(None))
        )
    }

    /// The database name of `service` in this run.
    pub fn database(&self, service: &str) -> String {
        self.config["services"][service]["database"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A connection to `service`'s database on whichever backend it is (the SQL sent must
    /// be portable), for checks and for states the API cannot produce (a deleted or
    /// deactivated user).
    pub async fn database_connection(&self, service: &str) -> anyhow::Result<sqlx::AnyConnection> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let url = if self.on_server("database") {
            format!(
                "postgres://postgres@127.0.0.1:5432/{}",
                self.database(service)
            )
        } else {
            format!(
                "sqlite://{}",
                self.dir
                    .path()
                    .join(".platform/databases")
                    .join(format!("{}.sqlite", self.database(service)))
                    .display()
            )
        };
        Ok(sqlx::AnyConnection::connect(&url).await?)
    }

    /// Publishes `payload` as `order.created` with its `event_id` header, as the order
    /// service does, through `platform publish` (either broker).
    pub async fn publish_event(&self, payload: &str, event_id: &str) -> anyhow::Result<()> {
        let published = self
            .cli(&[
                "publish",
                &self.exchange(),
                "order.created",
                payload,
                "--header",
                &format!("event_id={event_id}"),
            ])
            .await?;
        anyhow::ensure!(published.code == 0, "platform publish: {published:?}");
        Ok(())
    }

    /// Publishes each `(routing key, body)` to the run's exchange, in order, as the order
    /// service would (persistent, JSON), each confirmed by the broker: straight to RabbitMQ,
    /// or through the host's admin API (`platform publish`) to the embedded broker.
    pub async fn publish(&self, messages: &[(&str, &[u8])]) -> anyhow::Result<()> {
        self.publish_with_headers(messages, &[]).await
    }

    /// [`Platform::publish`], each message with `headers`.
    pub async fn publish_with_headers(
        &self,
        messages: &[(&str, &[u8])],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        if !self.on_server("messaging") {
            for (routing_key, body) in messages {
                let payload = std::str::from_utf8(body).context("test payloads are text")?;
                self.admin_publish(routing_key, payload, headers).await?;
            }
            return Ok(());
        }
        let mut table = lapin::types::FieldTable::default();
        for (name, value) in headers {
            table.insert(
                lapin::types::ShortString::from(*name),
                lapin::types::AMQPValue::LongString((*value).into()),
            );
        }
        let connection = amqp_connection().await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(Default::default()).await?;
        for (routing_key, body) in messages {
            let properties = lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_headers(table.clone());
            let confirmation = channel
                .basic_publish(
                    &self.exchange(),
                    routing_key,
                    Default::default(),
                    body,
                    properties,
                )
                .await?
                .await?;
            ensure!(
                confirmation.is_ack(),
                "the broker did not confirm the publication: {confirmation:?}"
            );
        }
        let _ = connection.close(200, "done").await;
        Ok(())
    }

    /// Publishes `payload` (JSON) to the run's exchange through the admin API, as
    /// `platform publish` does.
    pub async fn admin_publish(
        &self,
        routing_key: &str,
        payload: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), Value::from(*value)))
            .collect();
        let response = self
            .http
            .post(self.admin_url(&format!("/v1/exchanges/{}/messages", self.exchange())))
            .bearer_auth(self.admin_token()?)
            .json(&json!({
                "routing_key": routing_key,
                "payload": payload,
                "content_type": "application/json",
                "headers": headers,
            }))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status == 200, "admin publish: {status} {text}");
        Ok(())
    }

    /// The embedded broker's store (a host on the embedded backends only).
    pub fn embedded_broker_store(&self) -> PathBuf {
        self.dir.path().join(".platform/broker/messages.sqlite")
    }

    /// Takes the stored message whose payload is `body` out of the embedded broker's
    /// dead-letter queue: its failed deliveries, or `None` if it is not there.
    pub async fn take_embedded_dead_letter(
        &self,
        body: &[u8],
    ) -> anyhow::Result<Option<(i64, Option<String>)>> {
        use sqlx::Connection;
        let mut store = self.embedded_broker_connection().await?;
        let taken = sqlx::query_as(
            "DELETE FROM messages WHERE queue = $1 AND payload = $2 \
             RETURNING retries, dead_letter_reason",
        )
        .bind(self.dead_letter_queue())
        .bind(body)
        .fetch_optional(&mut store)
        .await?;
        let _ = store.close().await;
        Ok(taken)
    }

    /// Messages stored in the embedded broker for the run's queue (published, not yet
    /// acknowledged).
    pub async fn embedded_unacknowledged(&self) -> anyhow::Result<i64> {
        use sqlx::Connection;
        let mut store = self.embedded_broker_connection().await?;
        let count = sqlx::query_scalar("SELECT count(*) FROM messages WHERE queue = $1")
            .bind(self.queue())
            .fetch_one(&mut store)
            .await?;
        let _ = store.close().await;
        Ok(count)
    }

    async fn embedded_broker_connection(&self) -> anyhow::Result<sqlx::SqliteConnection> {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.embedded_broker_store().display());
        Ok(sqlx::SqliteConnection::connect(&url).await?)
    }

    /// The run's exchange, queue and dead-letter queue.
    pub fn exchange(&self) -> String {
        self.names.name("order_events")
    }

    pub fn queue(&self) -> String {
        self.names.name("order_notifications")
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue())
    }

    /// The value of a counter or gauge line of `service`'s `/metrics` whose labels include
    /// all of `labels` (0 when absent).
    pub async fn metric(
        &self,
        service: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(self.url(service, "/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| {
                labels
                    .iter()
                    .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Stops the host (SIGTERM, then SIGKILL after 20 s) and drops everything the run created.
    pub async fn stop(&self) {
        self.terminate().await;
        if let Err(error) = self.drop_run_resources().await {
            eprintln!("cleaning up run {}: {error:#}", self.names.id);
        }
    }

    /// SIGTERM, then SIGKILL if the host has not exited after 20 s; how long it took.
    pub async fn terminate(&self) -> Duration {
        let asked = Instant::now();
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        asked.elapsed()
    }

    /// Embedded backends live in the run's temporary directory and go with it; on the
    /// servers, the run's databases, queues and exchange are dropped.
    async fn drop_run_resources(&self) -> anyhow::Result<()> {
        if self.on_server("database") {
            for service in self.services() {
                if self.config["services"][&service].get("database").is_some() {
                    drop_database(&self.database(&service)).await?;
                }
            }
        }
        if !self.on_server("messaging") {
            return Ok(());
        }
        if self.config["services"].get("notification").is_some() {
            let connection = amqp_connection().await?;
            let channel = connection.create_channel().await?;
            let delays = format!("{}.retry", self.queue());
            for queue in [self.queue(), self.dead_letter_queue(), delays] {
                channel
                    .queue_delete(&queue, Default::default())
                    .await
                    .with_context(|| format!("deleting queue {queue}"))?;
            }
            channel
                .exchange_delete(&self.exchange(), Default::default())
                .await?;
            let _ = connection.close(200, "done").await;
        }
        Ok(())
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // A failing test must not leave a host running; resources are dropped in `stop`.
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

pub async fn amqp_connection() -> anyhow::Result<lapin::Connection> {
    let properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Ok(lapin::Connection::connect(AMQP_URL, properties).await?)
}

async fn drop_database(name: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let mut admin = sqlx::PgConnection::connect(POSTGRES_URL).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("dropping database {name}"))?;
    // The host made a role of the same name for the service's pool.
    admin
        .execute(format!("DROP ROLE IF EXISTS \"{name}\"").as_str())
        .await
        .with_context(|| format!("dropping role {name}"))?;
    Ok(())
}

/// Drops the databases of earlier runs that were killed before their teardown.
pub async fn drop_stale_databases() -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(POSTGRES_URL).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'it\\_%' \
         UNION SELECT rolname FROM pg_roles WHERE rolname LIKE 'it\\_%'",
    )
    .fetch_all(&mut admin)
    .await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for name in names {
        let stamp = name
            .strip_prefix(RUN_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|stamp| stamp.parse::<u64>().ok());
        if stamp.is_some_and(|stamp| now.saturating_sub(stamp) > STALE_AFTER.as_secs()) {
            drop_database(&name).await?;
        }
    }
    Ok(())
}

/// A name no other test or run uses, e.g. for a username (at most 50 characters).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a `platform` CLI command printed, and its exit code.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// The stdout of a successful `--json` command, parsed.
    pub fn json(&self) -> anyhow::Result<Value> {
        ensure!(
            self.code == 0,
            "the command failed ({}): {}",
            self.code,
            self.stderr
        );
        Ok(serde_json::from_str(&self.stdout)?)
    }
}

/// An RFC 3339 timestamp in UTC with its offset (`Z` or `+00:00`).
pub fn assert_utc_timestamp(value: &Value, what: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: timestamp is not a string: {value}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{what}: `{text}` is not RFC 3339: {error}"));
    assert_eq!(
        parsed.offset().local_minus_utc(),
        0,
        "{what}: `{text}` is not UTC"
    );
    assert!(
        text.ends_with('Z') || text.ends_with("+00:00"),
        "{what}: `{text}` has no UTC offset"
    );
    parsed
}

/// The `id` field of a JSON record.
pub fn id_of(value: &Value) -> anyhow::Result<i64> {
    value["id"]
        .as_i64()
        .with_context(|| format!("an id in {value}"))
}

/// A registered user with a token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub token: String,
}

impl TestUser {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

impl Platform {
    /// Registers a fresh user and logs it in.
    pub async fn new_user(&self) -> anyhow::Result<TestUser> {
        let username = unique("user");
        let password = "Secret123".to_string();
        let response = self
            .http
            .post(self.url("user", "/register"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "register: {} {}",
            response.status(),
            response.text().await?
        );
        let user: Value = response.json().await?;
        let response = self
            .http
            .post(self.url("user", "/login"))
            .form(&[
                ("username", username.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await?;
        ensure!(
            response.status() == 200,
            "login: {} {}",
            response.status(),
            response.text().await?
        );
        let token: Value = response.json().await?;
        Ok(TestUser {
            id: user["id"].as_i64().context("user id")?,
            username,
            password,
            token: token["access_token"]
                .as_str()
                .context("access_token")?
                .to_string(),
        })
    }

    /// Places an order as `user` and returns its JSON (201 expected).
    pub async fn place_order(
        &self,
        user: &TestUser,
        product_id: i64,
        quantity: i64,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.url("order", "/orders"))
            .header("authorization", user.bearer())
            .json(&json!({ "product_id": product_id, "quantity": quantity }))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status == 201, "POST /orders: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// Creates a product as `user` and returns its JSON.
    pub async fn new_product(
        &self,
        user: &TestUser,
        price: &str,
        quantity: i64,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.url("product", "/products"))
            .header("authorization", user.bearer())
            .json(&json!({ "name": unique("widget"), "description": "a test product", "price": price, "quantity": quantity }))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "create product: {} {}",
            response.status(),
            response.text().await?
        );
        Ok(response.json().await?)
    }
}

/// Which of PostgreSQL, Redis and RabbitMQ on this machine do not accept connections.
pub fn unreachable_servers() -> Vec<&'static str> {
    [
        ("PostgreSQL (127.0.0.1:5432)", "127.0.0.1:5432"),
        ("Redis (127.0.0.1:6379)", "127.0.0.1:6379"),
        ("RabbitMQ (127.0.0.1:5672)", "127.0.0.1:5672"),
    ]
    .into_iter()
    .filter(|(_, address)| {
        let address = address.parse().expect("a socket address");
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err()
    })
    .map(|(name, _)| name)
    .collect()
}
