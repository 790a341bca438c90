//! Isolation under overload and attack: a login storm on one service never reaches
//! another, half-sent headers do not hold sockets, a listener past its connection cap
//! refuses fast, a hostile component cannot leave its own database, and `/metrics` stays
//! bounded whatever methods clients make up.

use crate::support::{fixture_config, set, Platform, RunNames, Test};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn tests() -> Vec<Test> {
    // These start hosts of their own, on the backend set of the run they belong to.
    crate::tests![
        a_login_storm_gets_503s_and_never_slows_another_service,
        half_sent_headers_are_closed_and_the_connection_cap_refuses_fast,
        a_hostile_component_stays_inside_its_own_database,
        the_transaction_limit_counts_only_open_transactions,
        made_up_methods_leave_the_metrics_bounded,
        shutdown_with_idle_and_half_sent_connections_is_quick,
    ]
}

/// Logins the storm sends at once.
const STORM: usize = 1_000;

async fn a_login_storm_gets_503s_and_never_slows_another_service(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let ports = crate::support::free_ports(4);
    let ports = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(ports)
        .collect();
    let mut config = crate::support::shop_config_on(shared.backends(), &names, &ports);
    // Real hashes that take their time (the default cost is 12; tests use less).
    set(&mut config, &["identity", "bcrypt_cost"], 10.into());
    crate::support::with_platform(names, config, storm).await
}

async fn storm(platform: &Platform) -> anyhow::Result<()> {
    let _alone = crate::support::cpu_heavy().await;
    let user = platform.new_user().await?;
    let product = crate::support::id_of(&platform.new_product(&user, "1.00", 5).await?)?;
    let product_url = platform.url("product", &format!("/products/{product}"));
    let login_url = platform.url("user", "/login");
    let storm_client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()?;
    let logins: Vec<_> = (0..STORM)
        .map(|_| {
            let (client, url, username) = (
                storm_client.clone(),
                login_url.clone(),
                user.username.clone(),
            );
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .form(&[("username", username.as_str()), ("password", "Wrong123")])
                    .send()
                    .await?;
                let retry_after = response.headers().get("retry-after").cloned();
                anyhow::Ok((response.status().as_u16(), retry_after))
            })
        })
        .collect();

    // While the storm rages, the product service answers as it does at rest.
    let mut slowest = Duration::ZERO;
    let probe_until = Instant::now() + Duration::from_secs(5);
    let mut probes = 0;
    while Instant::now() < probe_until {
        let asked = Instant::now();
        let response = platform.http().get(&product_url).send().await?;
        assert_eq!(response.status(), 200, "a product read during the storm");
        slowest = slowest.max(asked.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(2),
        "the slowest of {probes} product reads took {slowest:?}"
    );

    let mut refused = 0;
    for login in logins {
        let (status, retry_after) = login.await??;
        match status {
            401 => {}
            503 => {
                assert_eq!(
                    retry_after.as_ref().and_then(|v| v.to_str().ok()),
                    Some("1"),
                    "a 503 says when to retry"
                );
                refused += 1;
            }
            other => panic!("a login of the storm got {other}"),
        }
    }
    assert!(refused > 0, "the storm's excess is shed");
    let shed = platform
        .metric("user", "http_requests_shed_total", &[])
        .await?;
    assert!(shed >= refused as f64, "shed {shed}, refused {refused}");
    Ok(())
}

async fn half_sent_headers_are_closed_and_the_connection_cap_refuses_fast(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let mut config = fixture_config(
        shared.backends(),
        &names,
        &["guarded"],
        &["database", "logging"],
    );
    set(
        &mut config,
        &["host", "connections", "header_timeout_seconds"],
        2.into(),
    );
    set(
        &mut config,
        &["host", "connections", "max_connections"],
        16.into(),
    );
    crate::support::with_platform(names, config, slowloris).await
}

async fn slowloris(platform: &Platform) -> anyhow::Result<()> {
    let address = format!("127.0.0.1:{}", platform.port("guarded"));
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(&address).await?;
        stream.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n").await?;
        slow.push(stream);
    }
    let sent = Instant::now();
    // A whole request still answers at once.
    let response = reqwest::Client::new()
        .get(platform.url("guarded", "/ok"))
        .header("connection", "close")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    for mut stream in slow {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(6), stream.read(&mut buffer)).await;
        match read {
            Ok(Ok(_)) | Ok(Err(_)) => {} // closed (with or without a 408 first)
            Err(_) => panic!(
                "a half-sent header held its connection for {:?}",
                sent.elapsed()
            ),
        }
    }
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        sent.elapsed()
    );

    // Sixteen connections take every slot; the seventeenth is refused at once.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(&address).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&address).await?;
    let asked = Instant::now();
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(asked.elapsed() < Duration::from_secs(1));
    drop(idle);
    Ok(())
}

async fn a_hostile_component_stays_inside_its_own_database(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    // Its endless statements keep the database server busy until their timeout.
    let _alone = crate::support::cpu_heavy().await;
    let names = RunNames::new();
    let mut config = fixture_config(
        shared.backends(),
        &names,
        &["hostile", "victim"],
        &["database", "logging"],
    );
    // The hostile service's own statement timeout, shorter than the platform's 5 s.
    set(
        &mut config,
        &["services", "hostile", "statement_timeout_ms"],
        1000.into(),
    );
    crate::support::with_platform(names, config, hostile).await
}

/// A call may finish any number of transactions; only those held open at once are
/// limited. (Commits once went uncounted, so a call that had committed eight could begin
/// no more: the order service's outbox flush stopped after eight events.)
async fn the_transaction_limit_counts_only_open_transactions(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["misbehaving"],
        &["database", "logging"],
    );
    // SQLite transactions take the write lock at `begin`: one call cannot hold two.
    let hold = shared.backends() == crate::support::Backends::Real;
    crate::support::with_platform(names, config, async |platform| {
        let path = if hold {
            "/transactions?hold"
        } else {
            "/transactions"
        };
        let response = platform
            .http()
            .get(platform.url("misbehaving", path))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["finished"], 24, "{body}");
        if hold {
            let refused = body["one_more"].as_str().unwrap_or_default();
            assert!(
                refused.contains("at most 8 transactions open"),
                "the ninth open transaction is refused: {body}"
            );
        }
        Ok(())
    })
    .await
}

/// The WIT error `POST /sql` got for `sql`, if any.
async fn run_sql(platform: &Platform, sql: &str) -> anyhow::Result<Option<String>> {
    let response = platform
        .http()
        .post(platform.url("hostile", "/sql"))
        .body(sql.to_string())
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "POST /sql: {}", response.status());
    let body: Value = response.json().await?;
    Ok(body["error"].as_str().map(str::to_string))
}

async fn hostile(platform: &Platform) -> anyhow::Result<()> {
    let written = platform
        .config_path()
        .with_file_name("written-by-the-component");
    let attempts: Vec<String> = if platform.on_server("database") {
        vec![
            format!("COPY (SELECT 1) TO PROGRAM 'touch {}'", written.display()),
            format!("COPY (SELECT 1) TO '{}'", written.display()),
            "CREATE EXTENSION pgcrypto".into(),
            "SELECT rolname, rolpassword FROM pg_authid".into(),
            "CREATE ROLE intruder SUPERUSER".into(),
            format!("CREATE DATABASE \"{}_extra\"", platform.database("hostile")),
        ]
    } else {
        let victim = platform
            .config_path()
            .with_file_name(".platform/databases")
            .join(format!("{}.sqlite", platform.database("victim")));
        assert!(victim.exists(), "{}", victim.display());
        vec![
            format!("ATTACH '{}' AS victim", victim.display()),
            format!("VACUUM INTO '{}'", written.display()),
            "PRAGMA writable_schema = ON".into(),
            format!("PRAGMA temp_store_directory = '{}'", written.display()),
        ]
    };
    for sql in &attempts {
        let error = run_sql(platform, sql).await?;
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("DatabaseError::QueryFailed")),
            "{sql}: {error:?}"
        );
    }
    assert!(
        !written.exists(),
        "the component wrote {}",
        written.display()
    );

    if platform.on_server("database") {
        // Its role cannot even connect to the other service's database.
        use sqlx::ConnectOptions;
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .username(&platform.database("hostile"))
            .database(&platform.database("victim"));
        let refused = options.connect().await;
        assert!(
            refused.is_err(),
            "the hostile role connected to the victim's database"
        );
    }

    // A statement that runs forever and a result too large are cut off by their limits.
    let endless = if platform.on_server("database") {
        "SELECT pg_sleep(30)"
    } else {
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    };
    let asked = Instant::now();
    let error = run_sql(platform, endless).await?;
    assert!(error.is_some(), "an endless statement returned");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        asked.elapsed()
    );
    let huge = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
                SELECT i FROM n";
    let error = run_sql(platform, huge).await?;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("more than 10000 rows")),
        "{error:?}"
    );

    // Its own tables still work, and so do the host and the other service.
    assert_eq!(
        run_sql(platform, "CREATE TABLE mine (id INTEGER)").await?,
        None
    );
    assert_eq!(run_sql(platform, "SELECT id FROM mine").await?, None);
    for service in ["victim", "hostile"] {
        let response = platform
            .http()
            .get(platform.url(service, "/db"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{service}");
    }
    Ok(())
}

async fn made_up_methods_leave_the_metrics_bounded(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let http = shared.http();
    let url = shared.url("product", "/products");
    for index in 0..2_000 {
        let method = reqwest::Method::from_bytes(format!("M{index:05}").as_bytes())?;
        let response = http.request(method, &url).send().await?;
        assert_eq!(response.status(), 405);
    }
    let metrics = http
        .get(shared.url("product", "/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        !metrics.contains("M01999"),
        "a made-up method became a label"
    );
    assert!(metrics.contains(r#"method="other""#));
    assert!(
        metrics.len() < 200_000,
        "/metrics is {} bytes",
        metrics.len()
    );
    Ok(())
}

async fn shutdown_with_idle_and_half_sent_connections_is_quick(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["idle"],
        &["database", "logging"],
    );
    let platform = Platform::start(names, config).await?;
    let address = format!("127.0.0.1:{}", platform.port("idle"));
    let mut open = Vec::new();
    // A hundred keep-alive connections, each after one answered request...
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&address).await?;
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).await?;
        anyhow::ensure!(answer[..read].starts_with(b"HTTP/1.1 200"), "no answer");
        open.push(stream);
    }
    // ...and a few that sent half a header.
    for _ in 0..5 {
        let mut stream = TcpStream::connect(&address).await?;
        stream.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n").await?;
        open.push(stream);
    }
    let took = platform.terminate().await;
    platform.stop().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    drop(open);
    Ok(())
}
