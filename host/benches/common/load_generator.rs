//! The in-process load generator: `connections` clients, each sending requests back to back
//! over keep-alive connections, latencies recorded per request. The swap bench uses it (it
//! must see every failed request during a swap), and the load bench for traffic running
//! beside a login storm; throughput rows are driven by wrk (`wrk.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resident memory of a process, from /proc.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU time (user and system, all threads) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which is in parentheses.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            // Linux reports clock ticks of 1/100 s (USER_HZ).
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

#[derive(Default)]
pub struct Measured {
    /// Requests answered, with any status.
    pub requests: usize,
    /// Requests answered with a 2xx status.
    pub succeeded: usize,
    /// Requests answered with another status, and requests that never got an answer
    /// (refused, reset, timed out).
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub peak_rss_mib: f64,
    /// Cores the load generator used, when known (wrk).
    pub generator_cpu: Option<f64>,
    /// Cores the server used, when known.
    pub server_cpu: Option<f64>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.succeeded as f64 / self.elapsed.as_secs_f64()
    }

    pub fn row(&self, scenario: &str, connections: usize, baseline: Option<&Measured>) -> String {
        let ratio = |value: f64, base: f64| format!(" ({:.2}x)", value / base);
        let (rate_ratio, p99_ratio) = match baseline {
            Some(base) => (
                ratio(self.rate(), base.rate()),
                ratio(self.p99.as_secs_f64(), base.p99.as_secs_f64()),
            ),
            None => (String::new(), String::new()),
        };
        let cores = |cpu: Option<f64>| match cpu {
            Some(cpu) => format!("{:.0}%", cpu * 100.0),
            None => "-".to_string(),
        };
        format!(
            "| {scenario} | {connections} | {:.0}{rate_ratio} | {:.2} ms | {:.2} ms{p99_ratio} | {} | {} | {} |\n",
            self.rate(),
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.errors,
            cores(self.server_cpu),
            cores(self.generator_cpu),
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `connections` clients sending `request()` back to back for `duration`.
pub async fn drive<F>(
    connections: usize,
    duration: Duration,
    watch_pid: Option<u32>,
    request: F,
) -> Measured
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let running = Arc::new(AtomicBool::new(true));
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("an HTTP client");
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|worker| {
            let (http, request, running) = (http.clone(), request.clone(), running.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut sequence) = (Vec::new(), 0, 0);
                while running.load(Ordering::Relaxed) {
                    sequence += 1;
                    let sent = Instant::now();
                    match request(&http, worker * 1_000_000 + sequence).send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut peak_rss_mib = 0f64;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(pid) = watch_pid {
            peak_rss_mib = peak_rss_mib.max(rss_mib(pid));
        }
    }
    running.store(false, Ordering::Relaxed);
    let mut measured = Measured {
        peak_rss_mib,
        ..Measured::default()
    };
    let mut all = Vec::new();
    // Requests still in flight finish (and count) before the next scenario starts.
    for worker in workers {
        let (latencies, errors) = worker.await.expect("a load worker");
        measured.requests += latencies.len() + errors;
        measured.succeeded += latencies.len();
        measured.errors += errors;
        all.extend(latencies);
    }
    measured.elapsed = started.elapsed();
    all.sort();
    measured.p50 = percentile(&all, 0.50);
    measured.p99 = percentile(&all, 0.99);
    measured
}
