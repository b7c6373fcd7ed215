//! Times sequential fetches of the same ~60-line config in Starlark and in
//! JavaScript, with workers as processes and as threads, through the real app;
//! then what a request costs when the queue is full (time to the 503); then
//! the recovery from a worker process kill.
//!
//!     cargo build --release && cargo run --release --example fetch_latency -- 2000

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use vane::app::App;
use vane::settings::{Isolation, Settings};

mod support;

const TOKEN: &str = "bench=bench-token-0123456789abcdef";
const BEARER: &str = "bench-token-0123456789abcdef";
const STARLARK: &str = include_str!("../loadtest/scripts/config60.star");
const JAVASCRIPT: &str = include_str!("../loadtest/scripts/config60.js");
const BUSY: &str = "const end = Date.now() + p.ms;\nwhile (Date.now() < end) {}\nreturn p.ms";

struct Bench {
    app: App,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        let vane = support::vane_exe()?;
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::default();
        settings.server.listen = "127.0.0.1:0".parse()?;
        settings.store.url = format!("sqlite://{}", dir.path().join("bench.db").display());
        settings.auth.admin_tokens = vec![TOKEN.into()];
        settings.sandbox.worker_exe = vane.display().to_string();
        settings.sandbox.workers = 1;
        tweak(&mut settings);
        let app = vane::app::start(settings, TcpListener::bind("127.0.0.1:0").await?).await?;
        Ok(Self {
            base: format!("http://{}", app.addr),
            app,
            client: reqwest::Client::new(),
            _dir: dir,
        })
    }

    async fn admin(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(BEARER)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    async fn publish(&self, id: &str, lang: &str, source: &str) -> anyhow::Result<()> {
        self.admin("/api/v1/configs", json!({"id": id})).await?;
        let version = self
            .admin(
                &format!("/api/v1/configs/{id}/versions"),
                json!({"lang": lang, "source": source}),
            )
            .await?;
        self.admin(
            &format!("/api/v1/configs/{id}/release"),
            json!({"code_id": version["code_id"]}),
        )
        .await?;
        Ok(())
    }

    fn fetch(&self, id: &str, i: usize) -> reqwest::RequestBuilder {
        let body = json!({"meta": {"platform": "iphone", "version": 120, "device_id": format!("d{i}")},
                          "params": {"score": (i % 100) as i64, "platform": "iphone", "version_code": 100 + (i % 80) as i64,
                                     "ms": 3000}});
        self.client.post(format!("{}/config/{id}", self.base)).json(&body)
    }
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!(
        "median {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        pick(0.5),
        pick(0.9),
        pick(0.99),
        pick(1.0)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vane::tls::install();
    let requests: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    println!("{requests} sequential fetches each, 1 worker, parameters varying per request:");
    for isolation in [Isolation::Process, Isolation::Thread] {
        for (lang, source) in [("starlark", STARLARK), ("javascript", JAVASCRIPT)] {
            let bench = Bench::start(|s| s.sandbox.isolation = isolation).await?;
            bench.publish("bench", lang, source).await?;
            for i in 0..50 {
                bench.fetch("bench", i).send().await?.error_for_status()?;
            }
            let mut times = Vec::with_capacity(requests);
            for i in 0..requests {
                let start = Instant::now();
                bench
                    .fetch("bench", i)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                times.push(start.elapsed());
            }
            println!(
                "  {lang:<10} ({} lines) {:<7} {}",
                source.lines().count(),
                format!("{isolation:?}").to_lowercase(),
                summary(times)
            );
            bench.app.shutdown().await;
        }
    }

    // One worker busy, the queue of one full: every further request is shed.
    // With no pipelining, so the busy worker holds no jobs itself.
    let bench = Bench::start(|s| {
        s.sandbox.queue_bound = 1;
        s.sandbox.pipeline_depth = 1;
        s.sandbox.deadline_ms = 5000;
    })
    .await?;
    bench.publish("busy", "javascript", BUSY).await?;
    let running = tokio::spawn(bench.fetch("busy", 0).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = tokio::spawn(bench.fetch("busy", 1).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut times = Vec::new();
    for i in 0..requests.min(2000) {
        let start = Instant::now();
        let response = bench.fetch("busy", i).send().await?;
        anyhow::ensure!(response.status() == 503, "expected 503, got {}", response.status());
        response.bytes().await?;
        times.push(start.elapsed());
        if times.len() % 200 == 0 && running.is_finished() {
            break;
        }
    }
    println!("queue full -> 503, {} requests: {}", times.len(), summary(times));
    let _ = (running.await, queued.await);
    bench.app.shutdown().await;

    let bench = Bench::start(|_| {}).await?;
    bench.publish("bench", "starlark", STARLARK).await?;
    let mut recoveries = Vec::new();
    for round in 0..10 {
        let pids = worker_pids();
        for pid in &pids {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let killed = Instant::now();
        loop {
            if bench.fetch("bench", round).send().await?.status().is_success() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        recoveries.push(killed.elapsed());
    }
    // Kills after the third within 10 s meet the respawn backoff by design.
    println!("worker SIGKILL -> next successful request, rounds in order: {recoveries:?}");
    bench.app.shutdown().await;
    Ok(())
}

fn worker_pids() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(") ")?;
            (rest.split(' ').nth(1) == Some(me.as_str())).then(|| entry.file_name().to_string_lossy().parse().ok())?
        })
        .collect()
}
