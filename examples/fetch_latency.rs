//! Times sequential fetches of a ~60-line Starlark config through the real
//! app and real worker processes, then the recovery from a worker kill.
//!
//!     cargo build --release && cargo run --release --example fetch_latency -- 2000

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use vane::settings::Settings;

const TOKEN: &str = "bench=bench-token-0123456789abcdef";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let exe = std::env::current_exe()?;
    let vane = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("vane"))
        .filter(|p| p.exists());
    let Some(vane) = vane else {
        anyhow::bail!("build the vane binary first: cargo build --release")
    };
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.store.url = format!("sqlite://{}", dir.path().join("bench.db").display());
    settings.auth.admin_tokens = vec![TOKEN.into()];
    settings.sandbox.worker_exe = vane.display().to_string();
    settings.sandbox.workers = 1;
    let app = vane::app::start(settings, TcpListener::bind("127.0.0.1:0").await?).await?;
    let base = format!("http://{}", app.addr);
    let client = reqwest::Client::new();
    let admin = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth("bench-token-0123456789abcdef")
            .json(&body)
            .send()
    };
    admin("/api/v1/configs", json!({"id": "bench"}))
        .await?
        .error_for_status()?;
    let source = include_str!("../loadtest/scripts/config60.star");
    let version: serde_json::Value = admin(
        "/api/v1/configs/bench/versions",
        json!({"lang": "starlark", "source": source}),
    )
    .await?
    .json()
    .await?;
    admin("/api/v1/configs/bench/release", json!({"code_id": version["code_id"]}))
        .await?
        .error_for_status()?;

    let fetch = |i: usize| {
        let body = json!({"meta": {"platform": "iphone", "version": 120, "device_id": format!("d{i}")},
                          "params": {"score": (i % 100) as i64, "platform": "iphone", "version_code": 100 + (i % 80) as i64}});
        client.post(format!("{base}/config/bench")).json(&body).send()
    };
    for i in 0..50 {
        fetch(i).await?.error_for_status()?;
    }
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests {
        let start = Instant::now();
        fetch(i).await?.error_for_status()?.bytes().await?;
        times.push(start.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "fetch of a {}-line starlark config, {requests} sequential requests, 1 worker:",
        source.lines().count()
    );
    println!(
        "  median {:?}  p90 {:?}  p99 {:?}  max {:?}",
        pick(0.5),
        pick(0.9),
        pick(0.99),
        pick(1.0)
    );

    let mut recoveries = Vec::new();
    for round in 0..10 {
        let pids = worker_pids();
        for pid in &pids {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let killed = Instant::now();
        loop {
            if fetch(round).await?.status().is_success() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        recoveries.push(killed.elapsed());
    }
    // Kills after the third within 10 s meet the respawn backoff by design.
    println!("worker SIGKILL -> next successful request, rounds in order: {recoveries:?}");
    app.shutdown().await;
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
