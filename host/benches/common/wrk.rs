//! Drives a server with wrk (Debian's `wrk`), one thread pinned to CPU 1, so the load
//! generator is not the bottleneck: each run reports the CPU wrk used and the CPU the server
//! used, so a reader can see which side saturated its core.

use super::load_generator::{cpu_seconds, rss_mib, Measured};
use anyhow::{bail, ensure, Context};
use std::time::Duration;

/// One wrk run: `connections` keep-alive connections on one thread for `duration`.
pub struct WrkRun<'a> {
    pub url: &'a str,
    pub connections: usize,
    pub duration: Duration,
    /// `POST` with these JSON bodies, one request after the other in turn; else `GET`.
    pub json_bodies: Vec<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The server whose CPU use and peak memory the run reports.
    pub server_pid: Option<u32>,
}

/// Runs wrk and reads its report.
pub async fn run(run: WrkRun<'_>) -> anyhow::Result<Measured> {
    let script = tempfile::NamedTempFile::new()?;
    let mut lua = String::new();
    if !run.json_bodies.is_empty() {
        let bodies: Vec<String> = run.json_bodies.iter().map(|b| lua_string(b)).collect();
        lua.push_str(&format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             bodies = {{ {} }}\nsent = 0\n\
             request = function()\n  sent = sent + 1\n  return wrk.format(nil, nil, nil, bodies[(sent % #bodies) + 1])\nend\n",
            bodies.join(", ")
        ));
    }
    for (name, value) in &run.headers {
        lua.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_string(name),
            lua_string(value)
        ));
    }
    std::fs::write(script.path(), lua)?;
    let server_cpu_before = run.server_pid.map(cpu_seconds);
    // bash's `time` reports the CPU wrk used (user, system) on stderr.
    let command = format!(
        "TIMEFORMAT='%3U %3S'; time taskset -c 1 wrk -t1 -c{} -d{}s --latency -s {} {}",
        run.connections,
        run.duration.as_secs().max(1),
        script.path().display(),
        run.url
    );
    let wrk = tokio::process::Command::new("bash")
        .args(["-c", &command])
        .output();
    tokio::pin!(wrk);
    let mut peak_rss_mib = 0f64;
    let output = loop {
        tokio::select! {
            output = &mut wrk => break output.context("running wrk (install Debian's `wrk`)")?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(pid) = run.server_pid {
                    peak_rss_mib = peak_rss_mib.max(rss_mib(pid));
                }
            }
        }
    };
    let server_cpu = match (run.server_pid, server_cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid) - before),
        _ => None,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "wrk failed: {stdout}{stderr}");
    let mut measured =
        parse(&stdout).with_context(|| format!("reading wrk's report:\n{stdout}"))?;
    let times: Vec<f64> = stderr
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    let wall = measured.elapsed.as_secs_f64();
    if times.len() == 2 && wall > 0.0 {
        measured.generator_cpu = Some((times[0] + times[1]) / wall);
    }
    measured.server_cpu = server_cpu.map(|seconds| seconds / wall);
    measured.peak_rss_mib = peak_rss_mib;
    Ok(measured)
}

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    format!("{text:?}")
}

/// The figures of a `wrk --latency` report.
fn parse(report: &str) -> anyhow::Result<Measured> {
    let mut measured = Measured::default();
    let mut failed_responses = 0;
    for line in report.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", value] => measured.p50 = duration(value)?,
            ["99%", value] => measured.p99 = duration(value)?,
            [requests, "requests", "in", elapsed, ..] => {
                measured.requests = requests.parse()?;
                measured.elapsed = duration(elapsed.trim_end_matches(','))?;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => failed_responses = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                for count in rest.iter().skip(1).step_by(2) {
                    measured.errors += count.trim_end_matches(',').parse::<usize>()?;
                }
            }
            _ => {}
        }
    }
    if measured.requests == 0 {
        bail!("no request was answered within the run");
    }
    // wrk counts a request that got an answer, whatever its status; one that timed out or
    // lost its connection is a socket error only.
    measured.succeeded = measured.requests.saturating_sub(failed_responses);
    measured.errors += failed_responses;
    Ok(measured)
}

/// `520.00us`, `1.20ms`, `10.00s`, `2.00m`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in `{text}`"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => bail!("unknown unit `{other}`"),
    };
    Ok(Duration::from_secs_f64(seconds))
}
