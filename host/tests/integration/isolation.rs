//! A component that panics, loops forever or exhausts its memory fails that one request
//! with 500; the host, the component's next requests and the other services carry on. A
//! component importing an interface its service was not granted is refused at load. A
//! fresh instance starts from the component's image, whatever the last one wrote.

use crate::support::{fixture_config, Platform, RunNames, Test};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn tests() -> Vec<Test> {
    // These start hosts of their own, on the backend set of the run they belong to.
    crate::tests![
        traps_loops_and_memory_exhaustion_fail_one_request,
        an_ungranted_import_is_refused_with_its_name,
        a_fresh_instance_sees_nothing_the_last_one_wrote,
    ]
}

async fn traps_loops_and_memory_exhaustion_fail_one_request(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    // Its endless loops burn a core until their deadline.
    let _alone = crate::support::cpu_heavy().await;
    let names = RunNames::new();
    let platform = Platform::start(
        names.clone(),
        fixture_config(
            shared.backends(),
            &names,
            &["misbehaving", "bystander"],
            &["database", "logging"],
        ),
    )
    .await?;
    let result = misbehave(&platform).await;
    platform.stop().await;
    result
}

async fn misbehave(platform: &Platform) -> anyhow::Result<()> {
    let http = platform.http();
    let get = |service: &str, path: &str| http.get(platform.url(service, path)).send();

    let response = get("misbehaving", "/panic").await?;
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.json::<Value>().await?,
        json!({ "detail": "Internal Server Error" })
    );

    let response = get("misbehaving", "/oom").await?;
    assert_eq!(response.status(), 500);

    // While one request spins forever, the same component and the other service answer.
    let started = Instant::now();
    let looping = tokio::spawn(get("misbehaving", "/loop"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for service in ["misbehaving", "bystander"] {
        let asked = Instant::now();
        let response = get(service, "/ok").await?;
        assert_eq!(response.status(), 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{service} waited {:?} behind the loop",
            asked.elapsed()
        );
    }
    let response = looping.await??;
    assert_eq!(response.status(), 500);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(10),
        "the loop ended after {elapsed:?}"
    );

    // Fresh instances afterwards: everything works, including the capabilities.
    for path in ["/ok", "/db"] {
        assert_eq!(get("misbehaving", path).await?.status(), 200, "{path}");
    }
    assert!(platform.is_running());
    let log = platform.log();
    assert!(log.contains("trapped"), "the trap is logged");
    Ok(())
}

async fn an_ungranted_import_is_refused_with_its_name(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let error = match Platform::start(
        names.clone(),
        fixture_config(
            shared.backends(),
            &names,
            &["misbehaving", "bystander"],
            &["logging"],
        ),
    )
    .await
    {
        Ok(platform) => {
            platform.stop().await;
            anyhow::bail!("a component importing `database` without the grant was loaded");
        }
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("imports `database`, which this service was not granted"),
        "the refusal names the interface: {error}"
    );
    Ok(())
}

/// The host's pool gives a memory slot to the next instance of the same component (the
/// one its last instance used, so one request after another land on the same slot) and
/// resets only the pages the last one wrote: the static data the fixture counts requests
/// in, within what it keeps resident, and 8 MiB of grown memory beyond it.
async fn a_fresh_instance_sees_nothing_the_last_one_wrote(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = fixture_config(
        shared.backends(),
        &names,
        &["fresh"],
        &["database", "logging"],
    );
    crate::support::with_platform(names, config, async |platform| {
        let http = platform.http();
        for round in 0..8 {
            for (path, expected) in [
                ("/residue", json!({ "dirty_bytes": 0 })),
                ("/counter", json!({ "served": 1 })),
            ] {
                let response = http.get(platform.url("fresh", path)).send().await?;
                assert_eq!(response.status(), 200, "{path}");
                assert_eq!(
                    response.json::<Value>().await?,
                    expected,
                    "{path}, round {round}"
                );
            }
        }
        Ok(())
    })
    .await
}
