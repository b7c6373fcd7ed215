//! Two `vane serve` processes over one PostgreSQL database and one Redis:
//! publish-on-A to notice-on-B latency over 1,000 publishes, then fetch
//! throughput against one node and against both. Loopback only, bounded.
//!
//!     cargo build --release --bins --examples
//!     cargo run --release --example cluster_bench
//!
//! PostgreSQL and Redis come from VANE_BENCH_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test; a fresh database is made and
//! dropped) and VANE_BENCH_REDIS_URL (default redis://127.0.0.1:6379).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const BEARER: &str = "bench-token-0123456789abcdef";
const PUBLISHES: usize = 1000;
const LOAD_TIME: Duration = Duration::from_secs(10);
const CONNECTIONS: usize = 64;

mod support;

use support::{Process, vane_exe, wait_ready};

/// A node: its process (killed when dropped) and address.
struct Node(#[allow(dead_code)] Process, SocketAddr);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vane::tls::install();
    let base =
        std::env::var("VANE_BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis = std::env::var("VANE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let name = format!("vane_bench_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&base).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    let url = format!("{}/{name}", base.rsplit_once('/').map_or(base.as_str(), |(p, _)| p));
    let outcome = tokio::time::timeout(Duration::from_secs(300), run(&url, &redis)).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
    outcome.map_err(|_| anyhow::anyhow!("gave up after 300 s"))?
}

async fn run(database: &str, redis: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let prefix = format!("vane_bench_{:08x}:", rand::random::<u32>());
    let a = start(dir.path(), database, redis, &prefix)?;
    let b = start(dir.path(), database, redis, &prefix)?;
    let http = reqwest::Client::new();
    for node in [&a, &b] {
        wait_ready(&http, node.1).await?;
    }
    let post = |node: &Node, path: &str, body: Value| {
        http.post(format!("http://{}{path}", node.1))
            .bearer_auth(BEARER)
            .json(&body)
            .send()
    };
    let config: Value = post(&a, "/api/v1/configs", json!({"id": "bench"}))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let secret = config["secret"].as_str().unwrap_or_default().to_owned();
    let source = include_str!("../loadtest/scripts/config60.star");
    let mut versions = Vec::new();
    for _ in 0..2 {
        let version: Value = post(
            &a,
            "/api/v1/configs/bench/versions",
            json!({"lang": "starlark", "source": source}),
        )
        .await?
        .error_for_status()?
        .json()
        .await?;
        versions.push(version["code_id"].as_str().unwrap_or_default().to_owned());
    }
    post(&a, "/api/v1/configs/bench/release", json!({"code_id": versions[0]}))
        .await?
        .error_for_status()?;

    // Publish on A, wait for the notice on B.
    let (mut socket, _) = connect_async(format!("ws://{}/api/v1/subscribe", b.1)).await?;
    let subscribe = json!({"type": "subscribe", "config_id": "bench", "secret": secret, "revision": i64::MAX});
    socket.send(Message::text(subscribe.to_string())).await?;
    let mut latencies = Vec::with_capacity(PUBLISHES);
    for i in 0..PUBLISHES {
        let code_id = &versions[(i + 1) % 2];
        let started = Instant::now();
        let config: Value = post(&a, "/api/v1/configs/bench/release", json!({"code_id": code_id}))
            .await?
            .error_for_status()?
            .json()
            .await?;
        let revision = config["revision"].as_i64().unwrap_or_default();
        loop {
            let Some(frame) = socket.next().await else {
                anyhow::bail!("B closed the socket");
            };
            if let Message::Text(text) = frame? {
                let message: Value = serde_json::from_str(&text)?;
                if message["type"] == json!("update") && message["revision"].as_i64() >= Some(revision) {
                    break;
                }
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!("publish on A (release request sent) -> notice on B, {PUBLISHES} publishes:");
    println!(
        "  median {:.2?}  p99 {:.2?}  max {:.2?}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );

    let one = load(&[a.1]).await;
    let two = load(&[a.1, b.1]).await;
    println!("fetch throughput, {CONNECTIONS} connections, {LOAD_TIME:?}, params varying, 2 cores shared by all:");
    println!("  one node:  {one:.0} requests/s");
    println!("  two nodes: {two:.0} requests/s");
    Ok(())
}

/// Requests per second over `LOAD_TIME`, connections spread over `nodes`.
async fn load(nodes: &[SocketAddr]) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let node = nodes[c % nodes.len()];
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://{node}/config/bench");
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                i += CONNECTIONS;
                let body = json!({"meta": {"platform": "iphone", "version": 120, "device_id": format!("d{i}")},
                                  "params": {"score": (i % 100) as i64, "platform": "iphone",
                                             "version_code": 100 + (i % 80) as i64}});
                if let Ok(response) = client.post(&url).json(&body).send().await
                    && response.status().is_success()
                    && response.bytes().await.is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start, from) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(LOAD_TIME).await;
    let rate = (done.load(Ordering::Relaxed) - from) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    rate
}

fn start(dir: &std::path::Path, database: &str, redis: &str, prefix: &str) -> anyhow::Result<Node> {
    let vane = vane_exe()?;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let child = Command::new(vane)
        .arg("serve")
        .current_dir(dir)
        .env("VANE_SERVER__LISTEN", addr.to_string())
        .env("VANE_STORE__URL", database)
        .env("VANE_REDIS__URL", redis)
        .env("VANE_REDIS__PREFIX", prefix)
        .env("VANE_AUTH__ADMIN_TOKENS", format!("bench={BEARER}"))
        .env("VANE_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Node(Process(child), addr))
}
