//! Scheduled triggers: `[[services.<name>.schedules]]` calls the component's
//! `scheduled-handler` on its times, counts every outcome, and, when several hosts share a
//! PostgreSQL server, only one host runs a schedule; another takes over when it dies.

use crate::support::{eventually, fixture_config, free_ports, set, Platform, RunNames, Test};
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    let mut tests = crate::tests![a_schedule_runs_on_its_times_and_its_failures_are_counted];
    tests.extend(crate::real_backend_tests![
        one_host_of_two_runs_a_schedule_and_the_other_takes_over_when_it_dies
    ]);
    tests
}

/// The fixture service `ticker` with the given schedules, each every second.
fn ticker_config(shared: &Platform, names: &RunNames, schedules: &[&str]) -> toml::Table {
    let mut config = fixture_config(
        shared.backends(),
        names,
        &["ticker"],
        &["database", "logging"],
    );
    let schedules = schedules
        .iter()
        .map(|name| {
            toml::Value::Table(
                [
                    ("name".to_string(), toml::Value::from(*name)),
                    ("every_seconds".to_string(), 1.into()),
                ]
                .into_iter()
                .collect(),
            )
        })
        .collect();
    set(
        &mut config,
        &["services", "ticker", "schedules"],
        toml::Value::Array(schedules),
    );
    config
}

async fn runs(platform: &Platform, schedule: &str, outcome: &str) -> anyhow::Result<f64> {
    platform
        .metric(
            "ticker",
            "schedule_runs_total",
            &[("schedule", schedule), ("outcome", outcome)],
        )
        .await
}

async fn ticks(platform: &Platform) -> anyhow::Result<i64> {
    let answer: serde_json::Value = platform
        .http()
        .get(platform.url("ticker", "/ticks"))
        .send()
        .await?
        .json()
        .await?;
    answer["ticks"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("GET /ticks answered {answer}"))
}

async fn a_schedule_runs_on_its_times_and_its_failures_are_counted(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = ticker_config(shared, &names, &["tick", "fail", "loop"]);
    crate::support::with_platform(names, config, async |platform| {
        eventually("three ticks", Duration::from_secs(15), || async {
            Ok((ticks(platform).await? >= 3).then_some(()))
        })
        .await?;
        eventually(
            "a counted failure and a timeout",
            Duration::from_secs(15),
            || async {
                let failed = runs(platform, "fail", "error").await?;
                let timed_out = runs(platform, "loop", "timeout").await?;
                Ok((failed >= 1.0 && timed_out >= 1.0).then_some(()))
            },
        )
        .await?;
        assert!(runs(platform, "tick", "ok").await? >= 3.0);
        assert_eq!(runs(platform, "fail", "ok").await?, 0.0);
        // A schedule stuck in an endless loop never holds up requests.
        let response = platform
            .http()
            .get(platform.url("ticker", "/ok"))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        Ok(())
    })
    .await
}

/// Two hosts serve the same service on one database: one runs its schedule, the other
/// stands by; when the first is killed, the second takes the schedule over.
async fn one_host_of_two_runs_a_schedule_and_the_other_takes_over_when_it_dies(
    shared: &'static Platform,
) -> anyhow::Result<()> {
    let names = RunNames::new();
    let config = ticker_config(shared, &names, &["tick"]);
    let mut second_config = config.clone();
    set(
        &mut second_config,
        &["services", "ticker", "port"],
        i64::from(free_ports(1)[0]).into(),
    );
    set(
        &mut second_config,
        &["admin", "bind"],
        format!("127.0.0.1:{}", free_ports(1)[0]).into(),
    );
    let first = Platform::start(names, config).await?;
    let result = async {
        eventually(
            "the first host to tick",
            Duration::from_secs(15),
            || async { Ok((runs(&first, "tick", "ok").await? >= 1.0).then_some(())) },
        )
        .await?;
        // The second host's own run names are unused: the database is the first one's.
        let second = Platform::start(RunNames::new(), second_config).await?;
        let outcome = async {
            eventually(
                "the second host to stand by",
                Duration::from_secs(15),
                || async { Ok((runs(&second, "tick", "standby").await? >= 3.0).then_some(())) },
            )
            .await?;
            assert_eq!(runs(&second, "tick", "ok").await?, 0.0);
            let before = ticks(&second).await?;
            first.crash().await;
            eventually(
                "the second host to take over",
                Duration::from_secs(15),
                || async { Ok((runs(&second, "tick", "ok").await? >= 2.0).then_some(())) },
            )
            .await?;
            assert!(ticks(&second).await? > before, "the runs did their work");
            anyhow::Ok(())
        }
        .await;
        second.stop().await;
        outcome
    }
    .await;
    first.stop().await;
    result
}
