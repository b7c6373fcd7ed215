//! A store outage under load: `vane serve` (release) over a fresh PostgreSQL
//! database, a steady load of original-client fetches with 10 % `cached:
//! false`, and the database cut off for 15 s in the middle
//! (`ALTER DATABASE ... ALLOW_CONNECTIONS false` and its backends
//! terminated). Reports latency and errors of warm and fresh fetches before,
//! during and after, whether every answer was the version published before
//! the outage, and how long after the store's return fresh fetches stopped
//! being stale. Loopback only, bounded in time.
//!
//!     cargo build --release --bins --examples
//!     cargo run --release --example outage -- [requests/s, default 2000] [outage seconds, default 15] [--partition]
//!
//! With `--partition` the store is not refused but stops answering: the node
//! reaches PostgreSQL through a TCP proxy in this program, which for the
//! outage stops passing bytes either way and holds new connections open
//! without connecting them, as a network partition does.
//!
//! VANE_BENCH_DATABASE_URL names the PostgreSQL server (default
//! postgres://postgres@127.0.0.1:5432/test); the database made is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;

use support::{BEARER, Database, start_server, wait_ready};

const CONFIGS: [&str; 3] = ["alpha", "beta", "gamma"];
const CLIENTS: usize = 32;
const BEFORE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Before,
    During,
    After,
}

#[derive(Default)]
struct Samples {
    /// (phase, fresh, latency, ok and the expected version)
    fetches: Vec<(Phase, bool, Duration, bool)>,
}

fn main() -> anyhow::Result<()> {
    vane::tls::install();
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let outage = Duration::from_secs(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(15));
    let partition = args.iter().any(|a| a == "--partition");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let limit = BEFORE + outage + AFTER + Duration::from_secs(60);
        match tokio::time::timeout(limit, run(rate, outage, partition)).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("gave up after {limit:?}"),
        }
    })
}

async fn run(rate: u64, outage: Duration, partition: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = Database::create("vane_outage_").await?;
    let frozen = Arc::new(AtomicBool::new(false));
    let store_url = if partition {
        let upstream = database_host(&database.url)?;
        let proxy = proxy(upstream, frozen.clone()).await?;
        database.url.replacen(&upstream.to_string(), &proxy.to_string(), 1)
    } else {
        database.url.clone()
    };
    let (server, addr) = start_server(dir.path(), &store_url, None, &[])?;
    let http = reqwest::Client::new();
    wait_ready(&http, addr).await?;
    let mut expected = Vec::new();
    for id in CONFIGS {
        expected.push(publish(&http, addr, id).await?);
    }
    let expected: Arc<[String]> = expected.into();

    let phase = Arc::new(Mutex::new(Phase::Before));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut load = Vec::new();
    for c in 0..CLIENTS {
        let (http, phase, samples, expected, stop) = (
            http.clone(),
            phase.clone(),
            samples.clone(),
            expected.clone(),
            stop.clone(),
        );
        let every = Duration::from_micros(1_000_000 * CLIENTS as u64 / rate.max(1));
        load.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u64.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.notified() => return,
                }
                let which = (n as usize + c) % CONFIGS.len();
                let fresh = (n + c as u64).is_multiple_of(10);
                let started = Instant::now();
                let served = fetch(&http, addr, CONFIGS[which], fresh, c as u64 * 1_000_000 + n).await;
                let took = started.elapsed();
                let ok = served.as_deref() == Some(expected[which].as_str());
                let at = *phase.lock().unwrap();
                samples.lock().unwrap().fetches.push((at, fresh, took, ok));
            }
        }));
    }

    tokio::time::sleep(BEFORE).await;
    let admin_url = database_admin_url();
    if partition {
        frozen.store(true, Ordering::SeqCst);
    } else {
        cut_off(&admin_url, &database.name, true).await?;
    }
    *phase.lock().unwrap() = Phase::During;
    let during_stale = stale(&http, addr, CONFIGS[0]).await;
    tokio::time::sleep(outage).await;
    if partition {
        frozen.store(false, Ordering::SeqCst);
    } else {
        cut_off(&admin_url, &database.name, false).await?;
    }
    let back = Instant::now();
    *phase.lock().unwrap() = Phase::After;
    let mut caught_up = None;
    while back.elapsed() < AFTER {
        if caught_up.is_none() && stale(&http, addr, CONFIGS[0]).await == Some(false) {
            caught_up = Some(back.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.notify_waiters();
    for task in load {
        task.abort();
    }

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let how = if partition {
        "partitioned (no answer)"
    } else {
        "cut off (refused)"
    };
    println!("{rate} requests/s from {CLIENTS} clients, 10 % cached: false, store {how} for {outage:?}:");
    for at in [Phase::Before, Phase::During, Phase::After] {
        for fresh in [Some(false), Some(true), None] {
            summarize(&samples.fetches, at, fresh);
        }
    }
    println!("  native fresh fetch during the outage said Vane-Stale: {during_stale:?}");
    match caught_up {
        Some(took) => println!("  fresh fetches current again {took:.0?} after the store came back"),
        None => println!("  fresh fetches still stale {AFTER:?} after the store came back"),
    }
    drop(server);
    database.drop().await?;
    Ok(())
}

/// One phase's fetches: cached, fresh, or (`None`) all of them.
fn summarize(fetches: &[(Phase, bool, Duration, bool)], at: Phase, fresh: Option<bool>) {
    let picked = |p: &Phase, f: &bool| *p == at && fresh.is_none_or(|fresh| *f == fresh);
    let mut times: Vec<Duration> = fetches
        .iter()
        .filter(|(p, f, _, _)| picked(p, f))
        .map(|(_, _, t, _)| *t)
        .collect();
    let bad = fetches.iter().filter(|(p, f, _, ok)| picked(p, f) && !ok).count();
    if times.is_empty() {
        return;
    }
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let kind = match fresh {
        Some(true) => "cached: false",
        Some(false) => "cached: true ",
        None => "all          ",
    };
    println!(
        "  {at:?}, {kind}: {} fetches, p50 {:.2?}, p99 {:.2?}, max {:.2?}, errors or wrong version {bad}",
        times.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}

async fn publish(http: &reqwest::Client, addr: SocketAddr, id: &str) -> anyhow::Result<String> {
    let api = format!("http://{addr}/api/v1/configs");
    let post = |url: String, body: Value| http.post(url).bearer_auth(BEARER).json(&body).send();
    post(api.clone(), json!({"id": id})).await?.error_for_status()?;
    let source = include_str!("../loadtest/scripts/config60.star");
    let version: Value = post(
        format!("{api}/{id}/versions"),
        json!({"lang": "starlark", "source": source}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let code_id = version["code_id"].as_str().unwrap_or_default().to_owned();
    post(format!("{api}/{id}/release"), json!({"code_id": code_id}))
        .await?
        .error_for_status()?;
    Ok(code_id)
}

/// The original route as its client sends it; the code_id served, if 200.
async fn fetch(http: &reqwest::Client, addr: SocketAddr, id: &str, fresh: bool, n: u64) -> Option<String> {
    let body = json!({
        "meta": {"platform": "iphone", "version": 120, "device_id": format!("d{n}")},
        "params": {"score": n % 100, "platform": "iphone", "version_code": 100 + n % 80, "seq": n},
        "cached": !fresh,
    });
    let response = http
        .post(format!("http://{addr}/config/{id}"))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let reply: Value = response.json().await.ok()?;
    reply["data"]["code_id"].as_str().map(str::to_owned)
}

/// Whether a native fresh fetch was answered stale (None: not a 200).
async fn stale(http: &reqwest::Client, addr: SocketAddr, id: &str) -> Option<bool> {
    let url = format!("http://{addr}/api/v1/configs/{id}/evaluate");
    let body = json!({"cached": false, "params": {"score": 1, "platform": "iphone", "version_code": 130}});
    let response = http.post(url).json(&body).send().await.ok()?;
    response
        .status()
        .is_success()
        .then(|| response.headers().contains_key("vane-stale"))
}

fn database_admin_url() -> String {
    std::env::var("VANE_BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Refuses (or allows again) connections to the node's database, ending the
/// ones it has: as a database that went away.
async fn cut_off(admin: &str, name: &str, off: bool) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    let allow = if off { "false" } else { "true" };
    conn.execute(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"
    )))
    .await?;
    if off {
        let kill = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
        conn.execute(sqlx::AssertSqlSafe(kill)).await?;
    }
    Ok(())
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn database_host(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or_default();
    Ok(host.parse()?)
}

/// A TCP proxy to `upstream` that, while `frozen`, passes no bytes either way
/// and leaves new connections unconnected: a partition, not a refusal.
async fn proxy(upstream: SocketAddr, frozen: Arc<AtomicBool>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let frozen = frozen.clone();
            tokio::spawn(async move {
                thaw(&frozen).await;
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pass(client_read, server_write, &frozen),
                    pass(server_read, client_write, &frozen)
                );
            });
        }
    });
    Ok(addr)
}

async fn thaw(frozen: &AtomicBool) {
    while frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pass(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, frozen: &AtomicBool) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        thaw(frozen).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read as the partition began are held, not passed.
        thaw(frozen).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
