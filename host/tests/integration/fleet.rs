//! Fleet mode: three hosts of one fleet on 127.0.0.11, .12 and .13 (same ports, state
//! directories of their own) sharing this machine's PostgreSQL, behind an HAProxy the test
//! starts on 127.0.0.1 with health checks on `/health`. A deploy or rollback sent to one
//! host reaches all three; rolling deploys go host by host; canaries are judged, then
//! promoted or rolled back, by the fleet itself; a killed host is routed around
//! and comes back serving the fleet's versions, whatever its local state says; consumers
//! on three hosts handle each event once; migrations run once; cut off from PostgreSQL, hosts
//! keep serving and deploys wait.

use crate::fault_proxy::FaultProxy;
use crate::support::{
    cpu_heavy, eventually, fixture_config, fixture_path, free_ports, set, shop_config, Backends,
    Platform, RunNames, Test, POSTGRES_URL,
};
use anyhow::{bail, ensure, Context};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn tests() -> Vec<Test> {
    crate::real_backend_tests![
        deploys_and_rollbacks_sent_to_one_host_reach_the_fleet_under_load,
        a_killed_host_is_routed_around_and_catches_up_when_it_returns,
        canaries_are_promoted_or_rolled_back_by_the_fleet_under_load,
        deploys_wait_while_the_registry_is_unreachable_and_hosts_keep_serving,
        a_host_that_refuses_the_fleets_version_keeps_its_own_and_says_why,
        consumers_on_three_hosts_record_each_event_once,
    ]
}

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
/// A deploy sent to one host is served by every host within this.
const REACH: Duration = Duration::from_secs(10);
/// `[fleet] canary_window_seconds` of the test fleets.
const CANARY_WINDOW: i64 = 4;

/// Three hosts of one fleet and the HAProxy in front of them.
struct Fleet {
    name: String,
    hosts: Vec<Arc<Platform>>,
    proxy: Haproxy,
}

/// The host configurations of one fleet: `base` on 127.0.0.11.. with the same ports.
fn fleet_configs(base: &toml::Table, fleet: &str) -> Vec<toml::Table> {
    let admin_port = free_ports(1)[0];
    HOSTS
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let address = format!("127.0.0.{}", 11 + index);
            let mut config = base.clone();
            set(&mut config, &["host", "bind"], address.clone().into());
            set(
                &mut config,
                &["admin", "bind"],
                format!("{address}:{admin_port}").into(),
            );
            set(&mut config, &["fleet", "name"], fleet.into());
            set(&mut config, &["fleet", "host"], (*host).into());
            set(&mut config, &["fleet", "heartbeat_seconds"], 1.into());
            set(&mut config, &["fleet", "reconcile_seconds"], 2.into());
            set(&mut config, &["fleet", "host_timeout_seconds"], 3.into());
            set(
                &mut config,
                &["fleet", "canary_window_seconds"],
                CANARY_WINDOW.into(),
            );
            config
        })
        .collect()
}

impl Fleet {
    /// Starts the three hosts at once (their first start races for the registry and the
    /// migrations) and HAProxy in front of `service`.
    async fn start(names: &RunNames, base: toml::Table, service: &str) -> anyhow::Result<Fleet> {
        Fleet::start_with(names, fleet_configs(&base, &names.name("fleet")), service).await
    }

    /// [`Fleet::start`] with the hosts' configurations given.
    async fn start_with(
        names: &RunNames,
        configs: Vec<toml::Table>,
        service: &str,
    ) -> anyhow::Result<Fleet> {
        let name = configs[0]["fleet"]["name"]
            .as_str()
            .context("a fleet name")?
            .to_string();
        let started = futures::future::join_all(
            configs
                .into_iter()
                .map(|config| Platform::start(names.clone(), config)),
        )
        .await;
        let mut hosts = Vec::new();
        let mut failure = None;
        for host in started {
            match host {
                Ok(host) => hosts.push(Arc::new(host)),
                Err(error) => failure = Some(error),
            }
        }
        if let Some(error) = failure {
            for host in &hosts {
                host.stop().await;
            }
            forget_fleet(&name).await?;
            return Err(error);
        }
        let port = hosts[0].port(service);
        let proxy = match Haproxy::start(port, &hosts).await {
            Ok(proxy) => proxy,
            Err(error) => {
                for host in &hosts {
                    host.stop().await;
                }
                forget_fleet(&name).await?;
                return Err(error);
            }
        };
        Ok(Fleet { name, hosts, proxy })
    }

    async fn stop(self) -> anyhow::Result<()> {
        drop(self.proxy);
        for host in &self.hosts {
            host.terminate().await;
        }
        for host in &self.hosts {
            host.stop().await;
        }
        forget_fleet(&self.name).await
    }

    /// Waits until every running host answers `/version` of `service` with `version`.
    async fn all_serve(
        &self,
        service: &str,
        version: &str,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        eventually(
            &format!("every host to serve {version}"),
            within,
            || async {
                for host in self.hosts.iter().filter(|host| host.is_running()) {
                    if version_at(host, service).await? != version {
                        return Ok(None);
                    }
                }
                Ok(Some(started.elapsed()))
            },
        )
        .await
    }
}

/// Removes a fleet's rows from the registry.
async fn forget_fleet(fleet: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(POSTGRES_URL).await?;
    for table in ["components", "deploys", "desired", "hosts", "secrets"] {
        sqlx::query(&format!(
            "DELETE FROM platform_fleet.{table} WHERE fleet = $1"
        ))
        .bind(fleet)
        .execute(&mut admin)
        .await?;
    }
    Ok(())
}

async fn version_at(host: &Platform, service: &str) -> anyhow::Result<String> {
    let body: Value = host
        .http()
        .get(host.url(service, "/version"))
        .send()
        .await?
        .json()
        .await?;
    Ok(body["version"].as_str().unwrap_or_default().to_string())
}

/// HAProxy on 127.0.0.1:`port` in front of the hosts' listeners on that port. Idempotent
/// requests a host dropped (it was killed) are retried on another one.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    async fn start(port: u16, hosts: &[Arc<Platform>]) -> anyhow::Result<Haproxy> {
        let dir = tempfile::tempdir()?;
        let servers: String = hosts
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let url = host.url(&host.services()[0], "");
                let address = url.trim_start_matches("http://");
                format!("  server {} {address} check\n", HOSTS[index])
            })
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
             retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response\n\
             frontend service\n  bind 127.0.0.1:{port}\n  default_backend hosts\n\
             backend hosts\n  balance roundrobin\n  option httpchk GET /health\n  \
             default-server inter 300ms fall 2 rise 2\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting haproxy (Debian package haproxy; .ci/run installs it)")?;
        let proxy = Haproxy {
            child,
            port,
            _dir: dir,
        };
        let client = crate::support::client();
        eventually(
            "HAProxy to route to every host",
            Duration::from_secs(10),
            || async {
                // Every host up in HAProxy's eyes: three answers in a row, round robin.
                for _ in 0..hosts.len() {
                    match client.get(proxy.url("/health")).send().await {
                        Ok(response) if response.status() == 200 => {}
                        _ => return Ok(None),
                    }
                }
                Ok(Some(()))
            },
        )
        .await?;
        Ok(proxy)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clients requesting `url` in a loop until stopped; each keeps its failures and, of
/// `/version`, the versions that answered.
struct Load {
    running: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Served>>,
}

#[derive(Default)]
struct Served {
    versions: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Served {
    fn total(&self) -> usize {
        self.versions.values().sum::<usize>() + self.failures.len()
    }
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let clients = (0..clients)
            .map(|_| {
                let (url, running) = (url.clone(), running.clone());
                tokio::spawn(async move {
                    let client = crate::support::client();
                    let mut served = Served::default();
                    while running.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(response) if response.status() == 200 => {
                                let body: Value = response.json().await.unwrap_or_default();
                                let version = body["version"].as_str().unwrap_or("?");
                                *served.versions.entry(version.to_string()).or_default() += 1;
                            }
                            Ok(response) => served.failures.push(response.status().to_string()),
                            Err(error) => served.failures.push(error.to_string()),
                        }
                    }
                    served
                })
            })
            .collect();
        Load { running, clients }
    }

    /// Stops the clients: what they were served, all together.
    async fn stop(self) -> anyhow::Result<Served> {
        self.running.store(false, Ordering::Relaxed);
        let mut all = Served::default();
        for client in self.clients {
            let served = client.await?;
            for (version, count) in served.versions {
                *all.versions.entry(version).or_default() += count;
            }
            all.failures.extend(served.failures);
        }
        Ok(all)
    }
}

/// A migration that counts its own runs: `runs` gets one row each time it is applied.
fn write_migration(dir: &Path, number: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let create = if number == 1 {
        "CREATE TABLE runs (migration INT NOT NULL);\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join(format!("{number:04}_count.sql")),
        format!("{create}INSERT INTO runs (migration) VALUES ({number});\n"),
    )?;
    Ok(())
}

async fn migration_runs(host: &Platform, service: &str) -> anyhow::Result<Vec<i64>> {
    use sqlx::Row;
    let mut connection = host.database_connection(service).await?;
    let rows =
        sqlx::query("SELECT CAST(migration AS BIGINT) AS migration FROM runs ORDER BY migration")
            .fetch_all(&mut connection)
            .await?;
    Ok(rows
        .iter()
        .map(|row| row.get::<i64, _>("migration"))
        .collect())
}

async fn fleet_status(host: &Platform) -> anyhow::Result<Value> {
    host.cli(&["ps", "--fleet", "--json"]).await?.json()
}

async fn deploys_and_rollbacks_sent_to_one_host_reach_the_fleet_under_load(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    let _cpu = cpu_heavy().await;
    let names = RunNames::new();
    let migrations = tempfile::tempdir()?;
    write_migration(&migrations.path().join("canary"), 1)?;
    let mut base = fixture_config(
        Backends::Real,
        &names,
        &["canary"],
        &["database", "logging"],
    );
    set(
        &mut base,
        &["database", "migrations"],
        migrations.path().display().to_string().into(),
    );
    let fleet = Fleet::start(&names, base, "canary").await?;
    let result = reach_the_fleet(&fleet, migrations.path()).await;
    fleet.stop().await?;
    result
}

async fn reach_the_fleet(fleet: &Fleet, migrations: &Path) -> anyhow::Result<()> {
    let [a, b, c] = [&fleet.hosts[0], &fleet.hosts[1], &fleet.hosts[2]];
    ensure!(
        migration_runs(a, "canary").await? == [1],
        "three hosts started at once and the migration ran once"
    );
    let status = fleet_status(b).await?;
    let hosts: Vec<&str> = status["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .map(|host| host["host"].as_str().unwrap_or_default())
        .collect();
    ensure!(hosts == HOSTS, "ps --fleet lists every host: {status}");

    let load = Load::start(fleet.proxy.url("/version"), 6);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // All at once, sent to host a, with a new migration: every host, migrated once.
    write_migration(&migrations.join("canary"), 2)?;
    let v2 = fixture_path("v2").display().to_string();
    let deployed = a.cli(&["deploy", "canary", &v2, "--json"]).await?.json()?;
    ensure!(deployed["serving_here"] == true, "{deployed}");
    let took = fleet.all_serve("canary", "v2", REACH).await?;
    eprintln!("a deploy to one host reached all three in {took:?}");
    ensure!(
        migration_runs(c, "canary").await? == [1, 2],
        "the new migration ran once"
    );

    // A rollback sent to host c.
    let rolled_back = c.cli(&["rollback", "canary", "--json"]).await?.json()?;
    ensure!(
        rolled_back["digest"] == deployed["previous"],
        "{rolled_back}"
    );
    let took = fleet.all_serve("canary", "v1", REACH).await?;
    eprintln!("a rollback sent to one host reached all three in {took:?}");
    for host in [a, b] {
        let ps = host.cli(&["ps", "--json"]).await?.json()?;
        ensure!(
            ps[0]["source"] == "rollback",
            "every host shows the rollback as one: {ps}"
        );
    }

    // Rolling, sent to host b: the hosts switch in the order of their names.
    let rolling = b
        .cli(&["deploy", "canary", &v2, "--strategy", "rolling", "--json"])
        .await?
        .json()?;
    ensure!(rolling["strategy"] == "rolling", "{rolling}");
    // The round of polling (all three hosts at once) in which each host first served v2:
    // host by host means three distinct rounds, in name order.
    let mut switched: BTreeMap<usize, u32> = BTreeMap::new();
    let started = Instant::now();
    let mut round = 0;
    while switched.len() < HOSTS.len() {
        ensure!(
            started.elapsed() < REACH * 3,
            "the rolling deploy stalled after {switched:?}: {}",
            fleet_status(a).await?
        );
        round += 1;
        let versions =
            futures::future::join_all(fleet.hosts.iter().map(|host| version_at(host, "canary")))
                .await;
        for (index, version) in versions.into_iter().enumerate() {
            if version? == "v2" {
                switched.entry(index).or_insert(round);
            }
        }
    }
    let rounds: Vec<u32> = switched.values().copied().collect();
    ensure!(
        rounds.windows(2).all(|pair| pair[0] < pair[1]),
        "host by host, in name order (polling rounds of hosts a, b, c): {rounds:?}"
    );
    eprintln!("a rolling deploy switched hosts a, b, c in polling rounds {rounds:?}");
    let status = b
        .cli(&["rollout", "status", "canary", "--json"])
        .await?
        .json()?;
    for host in status["hosts"].as_array().context("hosts")? {
        ensure!(
            host["services"]["canary"]["serving"] == rolling["digest"]
                && host["services"]["canary"]["state"] == "serving",
            "after the rollout: {status}"
        );
    }

    // Abort goes back to what served before the rollout, everywhere.
    c.cli(&["rollout", "abort", "canary", "--json"])
        .await?
        .json()?;
    fleet.all_serve("canary", "v1", REACH).await?;

    let Served { versions, failures } = load.stop().await?;
    let served: usize = versions.values().sum();
    ensure!(
        failures.is_empty(),
        "failed requests through HAProxy: {failures:?}"
    );
    ensure!(served > 100, "only {served} requests were served");
    ensure!(
        migration_runs(a, "canary").await? == [1, 2],
        "no migration ran twice"
    );
    Ok(())
}

async fn a_killed_host_is_routed_around_and_catches_up_when_it_returns(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    let _cpu = cpu_heavy().await;
    let names = RunNames::new();
    let base = fixture_config(
        Backends::Real,
        &names,
        &["canary"],
        &["database", "logging"],
    );
    let fleet = Fleet::start(&names, base, "canary").await?;
    let result = catch_up(&fleet).await;
    fleet.stop().await?;
    result
}

async fn catch_up(fleet: &Fleet) -> anyhow::Result<()> {
    let [a, b, c] = [&fleet.hosts[0], &fleet.hosts[1], &fleet.hosts[2]];
    const CLIENTS: usize = 6;
    let load = Load::start(fleet.proxy.url("/version"), CLIENTS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.crash().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Served { versions, failures } = load.stop().await?;
    let served: usize = versions.values().sum();
    ensure!(
        failures.len() <= CLIENTS,
        "at most the requests in flight are lost: {failures:?}"
    );
    ensure!(served > 50, "only {served} requests were served");

    // The fleet sees it gone.
    eventually(
        "host-b to count as down",
        Duration::from_secs(10),
        || async {
            let status = fleet_status(a).await?;
            let down = status["hosts"]
                .as_array()
                .context("hosts")?
                .iter()
                .any(|host| host["host"] == "host-b" && host["alive"] == false);
            Ok(down.then_some(()))
        },
    )
    .await?;

    // A deploy while it is down, through host c.
    let load = Load::start(fleet.proxy.url("/version"), CLIENTS);
    let v2 = fixture_path("v2").display().to_string();
    c.cli(&["deploy", "canary", &v2, "--json"]).await?.json()?;
    fleet.all_serve("canary", "v2", REACH).await?;

    // Back, with a local state that last saw v1: it serves the fleet's v2 from its start.
    b.restart().await?;
    let version = version_at(b, "canary").await?;
    ensure!(version == "v2", "host-b came back serving {version}");
    let Served { failures, .. } = load.stop().await?;
    ensure!(
        failures.is_empty(),
        "failed requests after the kill: {failures:?}"
    );
    let status = fleet_status(b).await?;
    let alive = status["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .filter(|host| host["alive"] == true)
        .count();
    if alive != 3 {
        bail!("every host alive again: {status}");
    }
    Ok(())
}

async fn canaries_are_promoted_or_rolled_back_by_the_fleet_under_load(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    let _cpu = cpu_heavy().await;
    let names = RunNames::new();
    let base = fixture_config(
        Backends::Real,
        &names,
        &["canary"],
        &["database", "logging"],
    );
    let fleet = Fleet::start(&names, base, "canary").await?;
    let result = canaries(&fleet).await;
    fleet.stop().await?;
    result
}

/// Waits until the fleet's rollout of `service` has ended on `digest`, with no canary left
/// on any host.
async fn rollout_ended_on(fleet: &Fleet, service: &str, digest: &str) -> anyhow::Result<Value> {
    let within = Duration::from_secs(CANARY_WINDOW as u64) + REACH;
    eventually("the fleet to conclude the canary", within, || async {
        let status = fleet_status(&fleet.hosts[0]).await?;
        let desired = &status["desired"][service];
        let canaries_left = status["hosts"]
            .as_array()
            .context("hosts")?
            .iter()
            .any(|host| !host["services"][service]["canary"].is_null());
        let ended = desired["strategy"] == "all" && desired["digest"] == digest && !canaries_left;
        Ok(ended.then_some(status))
    })
    .await
}

async fn canaries(fleet: &Fleet) -> anyhow::Result<()> {
    let a = &fleet.hosts[0];
    ensure!(version_at(a, "canary").await? == "v1");

    // A good canary, 30% of every host's requests: promoted by the fleet after the window.
    let load = Load::start(fleet.proxy.url("/version"), 6);
    let v2 = fixture_path("v2").display().to_string();
    let deployed = a
        .cli(&["deploy", "canary", &v2, "--strategy", "canary:30", "--json"])
        .await?
        .json()?;
    ensure!(deployed["strategy"] == "canary:30", "{deployed}");
    let v2_digest = deployed["digest"].as_str().context("digest")?.to_string();
    eventually("every host to run the canary", REACH, || async {
        let status = fleet_status(a).await?;
        let everywhere = status["hosts"]
            .as_array()
            .context("hosts")?
            .iter()
            .all(|host| host["services"]["canary"]["canary"]["digest"] == v2_digest.as_str());
        Ok(everywhere.then_some(()))
    })
    .await?;
    rollout_ended_on(fleet, "canary", &v2_digest).await?;
    fleet.all_serve("canary", "v2", REACH).await?;
    let served = load.stop().await?;
    ensure!(
        served.failures.is_empty(),
        "failed requests during a good canary: {:?}",
        served.failures
    );
    ensure!(
        served.versions.get("v1").is_some_and(|n| *n > 0)
            && served.versions.get("v2").is_some_and(|n| *n > 0),
        "both versions answered during the canary: {:?}",
        served.versions
    );

    // A canary that fails half its requests, 20% of every host's: rolled back by itself,
    // and the failures stay within its share of the traffic.
    let load = Load::start(fleet.proxy.url("/version"), 6);
    let bad = fixture_path("fails-half").display().to_string();
    fleet.hosts[1]
        .cli(&[
            "deploy",
            "canary",
            &bad,
            "--strategy",
            "canary:20",
            "--json",
        ])
        .await?
        .json()?;
    let status = rollout_ended_on(fleet, "canary", &v2_digest).await?;
    let served = load.stop().await?;
    let share = served.failures.len() as f64 / served.total().max(1) as f64;
    eprintln!(
        "a bad canary at 20%: {} of {} requests failed ({:.1}%) before the fleet rolled it back",
        served.failures.len(),
        served.total(),
        share * 100.0
    );
    ensure!(
        !served.failures.is_empty() && share < 0.2,
        "the bad canary's failures stay within its 20% share: {share:.3} ({status})"
    );
    let versions = a.cli(&["versions", "canary", "--json"]).await?.json()?;
    ensure!(
        versions[0]["source"] == "rollback" && versions[0]["digest"] == v2_digest.as_str(),
        "the fleet recorded the rollback: {versions}"
    );
    let load = Load::start(fleet.proxy.url("/version"), 6);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let served = load.stop().await?;
    ensure!(
        served.failures.is_empty() && served.versions.keys().eq(["v2"]),
        "after the rollback only v2 answers: {:?} {:?}",
        served.versions,
        served.failures
    );
    Ok(())
}

async fn deploys_wait_while_the_registry_is_unreachable_and_hosts_keep_serving(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    let _cpu = cpu_heavy().await;
    let names = RunNames::new();
    // Every connection to PostgreSQL goes through a proxy the test cuts.
    let proxy = FaultProxy::start("127.0.0.1:5432").await?;
    let mut base = fixture_config(
        Backends::Real,
        &names,
        &["canary"],
        &["database", "logging"],
    );
    set(
        &mut base,
        &["database", "url"],
        format!("postgres://postgres@{}/postgres", proxy.address).into(),
    );
    let fleet = Fleet::start(&names, base, "canary").await?;
    let result = partition(&fleet, &proxy).await;
    proxy.up();
    fleet.stop().await?;
    result
}

async fn partition(fleet: &Fleet, proxy: &FaultProxy) -> anyhow::Result<()> {
    let a = &fleet.hosts[0];
    let load = Load::start(fleet.proxy.url("/version"), 4);
    proxy.down();
    proxy.cut();
    let v2 = fixture_path("v2").display().to_string();
    let asked = Instant::now();
    let refused = a.cli(&["deploy", "canary", &v2]).await?;
    ensure!(
        refused.code == 4 && refused.stderr.contains("unavailable"),
        "a deploy during the partition is refused: {refused:?}"
    );
    ensure!(
        asked.elapsed() < Duration::from_secs(15),
        "refused at once, not hung: {:?}",
        asked.elapsed()
    );
    let response = a.http().get(a.admin_url("/ready")).send().await?;
    ensure!(response.status() == 200, "a partitioned host stays ready");
    let response = a
        .http()
        .post(a.admin_url("/v1/services/canary/rollback"))
        .bearer_auth(a.admin_token()?)
        .send()
        .await?;
    ensure!(
        response.status() == 503 && response.headers().contains_key("retry-after"),
        "the admin API answers 503 with Retry-After: {}",
        response.status()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.up();
    let served = load.stop().await?;
    ensure!(
        served.failures.is_empty() && served.versions.keys().eq(["v1"]),
        "the hosts kept serving what they had: {:?} {:?}",
        served.versions,
        served.failures
    );
    // Once the registry is back, the same deploy goes through and reaches every host.
    let deployed = eventually("the deploy to go through", REACH, || async {
        let output = a.cli(&["deploy", "canary", &v2, "--json"]).await?;
        (output.code == 0).then(|| output.json()).transpose()
    })
    .await?;
    ensure!(deployed["serving_here"] == true, "{deployed}");
    fleet.all_serve("canary", "v2", REACH).await?;
    eventually("every host to be heard again", REACH, || async {
        let status = fleet_status(a).await?;
        let alive = status["hosts"]
            .as_array()
            .context("hosts")?
            .iter()
            .filter(|host| host["alive"] == true)
            .count();
        Ok((alive == HOSTS.len()).then_some(()))
    })
    .await?;
    Ok(())
}

async fn a_host_that_refuses_the_fleets_version_keeps_its_own_and_says_why(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    let _cpu = cpu_heavy().await;
    let names = RunNames::new();
    let base = fixture_config(
        Backends::Real,
        &names,
        &["canary"],
        &["database", "logging"],
    );
    // Host c has migrations of its own (an image that differs): the others have none.
    let own = tempfile::tempdir()?;
    let name = names.name("fleet");
    let mut configs = fleet_configs(&base, &name);
    set(
        &mut configs[2],
        &["database", "migrations"],
        own.path().display().to_string().into(),
    );
    let fleet = Fleet::start_with(&names, configs, "canary").await?;
    let result = refuse_on_one_host(&fleet, own.path()).await;
    fleet.stop().await?;
    result
}

async fn refuse_on_one_host(fleet: &Fleet, own_migrations: &Path) -> anyhow::Result<()> {
    let [a, _, c] = [&fleet.hosts[0], &fleet.hosts[1], &fleet.hosts[2]];
    // A migration that cannot apply: v2 fails its load path on host c alone.
    std::fs::create_dir_all(own_migrations.join("canary"))?;
    std::fs::write(
        own_migrations.join("canary/0001_broken.sql"),
        "SELEC nonsense;\n",
    )?;
    let load = Load::start(fleet.proxy.url("/version"), 4);
    let v2 = fixture_path("v2").display().to_string();
    a.cli(&["deploy", "canary", &v2, "--json"]).await?.json()?;
    let status = eventually("host c to report the refusal", REACH, || async {
        let status = fleet_status(a).await?;
        let refused = status["hosts"]
            .as_array()
            .context("hosts")?
            .iter()
            .find(|host| host["host"] == "host-c")
            .and_then(|host| host["services"]["canary"]["state"].as_str())
            .is_some_and(|state| state.starts_with("refused: migrations failed"));
        Ok(refused.then_some(status))
    })
    .await?;
    ensure!(
        version_at(c, "canary").await? == "v1",
        "host c keeps v1: {status}"
    );
    for host in &fleet.hosts[..2] {
        ensure!(
            version_at(host, "canary").await? == "v2",
            "the others serve v2"
        );
    }
    let ready = c.http().get(c.admin_url("/ready")).send().await?;
    let (code, why) = (ready.status(), ready.text().await?);
    ensure!(
        code == 503 && why.contains("migrations failed"),
        "host c is not ready, and says why: {code} {why}"
    );
    let served = load.stop().await?;
    ensure!(
        served.failures.is_empty(),
        "no failed request: {:?}",
        served.failures
    );
    Ok(())
}

async fn consumers_on_three_hosts_record_each_event_once(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    let _cpu = cpu_heavy().await;
    let names = RunNames::new();
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut base = shop_config(&names, &ports);
    let services = base["services"].as_table_mut().context("services")?;
    services.retain(|name, _| name == "notification");
    let fleet = Fleet::start(&names, base, "notification").await?;
    let result = consume_once(&fleet).await;
    fleet.stop().await?;
    result
}

async fn consume_once(fleet: &Fleet) -> anyhow::Result<()> {
    use sqlx::Row;
    const EVENTS: usize = 90;
    let host = &fleet.hosts[0];
    for order_id in 1..=EVENTS {
        let event = serde_json::json!({
            "event": "order.created",
            "event_id": uuid::Uuid::new_v4().to_string(),
            "occurred_at": "2026-12-02T10:00:00Z",
            "data": {
                "order_id": order_id, "user_id": 1, "username": "fleet", "product_id": 1,
                "product_name": "Widget", "quantity": 1, "unit_price": 1.5, "total_price": 1.5,
                "status": "pending", "created_at": "2026-12-02T10:00:00Z"
            }
        });
        host.publish(&[("order.created", event.to_string().as_bytes())])
            .await?;
    }
    let queue = host.queue();
    let acked = [("queue", queue.as_str()), ("outcome", "ack")];
    let per_host = eventually(
        "every event to be handled",
        Duration::from_secs(30),
        || async {
            let mut per_host = Vec::new();
            for host in &fleet.hosts {
                per_host.push(
                    host.metric("notification", "messages_consumed_total", &acked)
                        .await?,
                );
            }
            Ok((per_host.iter().sum::<f64>() >= EVENTS as f64).then_some(per_host))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // a late duplicate would show now
    let mut total = 0.0;
    for host in &fleet.hosts {
        total += host
            .metric("notification", "messages_consumed_total", &acked)
            .await?;
    }
    ensure!(
        total == EVENTS as f64,
        "each event handled once across the hosts: {per_host:?}"
    );
    ensure!(
        per_host.iter().filter(|count| **count > 0.0).count() >= 2,
        "the hosts shared the queue: {per_host:?}"
    );
    let mut connection = host.database_connection("notification").await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS rows, COUNT(DISTINCT order_id) AS orders FROM notifications",
    )
    .fetch_one(&mut connection)
    .await?;
    let (rows, orders): (i64, i64) = (row.get("rows"), row.get("orders"));
    ensure!(
        rows == EVENTS as i64 && orders == EVENTS as i64,
        "{rows} notifications for {orders} orders"
    );
    Ok(())
}
