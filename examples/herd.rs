//! The publish wave, as the original service's client fleet makes it: N
//! clients hold the original `GET /push/{id}` with the config's `Secret`; on
//! each notice a client fetches `POST /config/{id}` exactly as the original
//! client library does (snake_case keys, `"cached": false`, its own
//! `device_id` and params). Reports, from the publish's 2xx, when 50 %, 99 %
//! and 100 % of the clients hold the new `code_id`. Loopback only, bounded in
//! count and time (`LIMIT`).
//!
//!     cargo build --release --bins --examples
//!     cargo run --release --example herd -- 10000
//!     cargo run --release --example herd -- 10000 --nodes 2
//!     cargo run --release --example herd -- 1000 --nodes 2 --redis-down
//!     cargo run --release --example herd -- 10000 --connections 256
//!     cargo run --release --example herd -- 2000 --one-address --idle 60
//!
//! `--one-address` opens every push socket from one address, so past
//! `push.max_sockets_per_address` clients are refused (429); a refused
//! client is slow to give up: it tries again every 10 s for the whole run.
//! `--idle S` has the subscribed clients idle S seconds before the publish
//! (past the default heartbeat's 40 s, say). The figures are then over the
//! admitted clients, with the refusals counted.
//!
//! `--connections K` has each client process fetch over at most K keep-alive
//! connections, as apps behind a load balancer with a bounded upstream pool
//! do; without it, the wave opens as many new connections as fetches wait.
//!
//! One node runs on SQLite. Two nodes share a fresh PostgreSQL database
//! (VANE_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test)
//! and Redis (VANE_BENCH_REDIS_URL, default redis://127.0.0.1:6379); the
//! clients are split between them and the publish goes to the first. With
//! `--redis-down` the nodes use a Redis of this run's own (`redis-server` on
//! a free port), stopped before the publish, so the change reaches the second
//! node only through its poll of the store. Each
//! node's clients run in a process of their own (this program, run as
//! `client`, one per 8,000 clients). Every client fetches once at start, as
//! an app does, then subscribes; a process's clients share one HTTP client
//! whose keep-alive connections stay open (an app's own connection each would
//! take the server past this machine's 20,000 open files per process).

use std::io::BufReader;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

mod support;
// The tests' own: a Redis on a free port that can be stopped.
#[path = "../tests/it/common/private_redis.rs"]
mod private_redis;

use private_redis::PrivateRedis;

use support::{
    BEARER, Process, count_ready, expect_line, open_files_limit, option, raise_open_files, start_gated, start_server,
    store_for, subscribe, unix_nanos, wait_ready,
};

const LIMIT: Duration = Duration::from_secs(300);
/// How long clients keep fetching for the new version after the publish.
const WAVE_LIMIT: Duration = Duration::from_secs(30);
/// Connections one client process opens at once.
const OPENING: usize = 128;
/// Sockets per loopback source address (push and fetch each have their own).
const PER_SOURCE: usize = 20_000;
/// Sockets one client process holds at most.
const PER_PROCESS: usize = 16_000;
const CONFIG: &str = "herd";

fn main() -> anyhow::Result<()> {
    vane::tls::install();
    let args: Vec<String> = std::env::args().collect();
    raise_open_files();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("client") {
        return runtime.block_on(client(&args[2..]));
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let nodes = option(&args, "--nodes").unwrap_or(1);
    let redis_down = args.iter().any(|a| a == "--redis-down");
    let connections = option(&args, "--connections").unwrap_or(0);
    let wave = Wave {
        one_address: args.iter().any(|a| a == "--one-address"),
        idle: Duration::from_secs(option(&args, "--idle").unwrap_or(0) as u64),
    };
    let limit = LIMIT + wave.idle;
    runtime.block_on(async {
        match tokio::time::timeout(limit, run(n, nodes, redis_down, connections, wave)).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("gave up after {limit:?}"),
        }
    })
}

/// How the clients meet the publish.
#[derive(Clone, Copy)]
struct Wave {
    /// Every push socket from one address.
    one_address: bool,
    /// How long subscribed clients idle before the publish.
    idle: Duration,
}

async fn run(n: usize, nodes: usize, redis_down: bool, connections: usize, wave: Wave) -> anyhow::Result<()> {
    let per_node = n.div_ceil(nodes);
    let files = open_files_limit();
    anyhow::ensure!(n <= 100_000, "at most 100000 clients");
    anyhow::ensure!(
        (PER_PROCESS as u64) + 200 < files && nodes <= 8,
        "client processes need an open-files limit above {PER_PROCESS} (this one is {files}), and at most 8 nodes"
    );
    let dir = tempfile::tempdir()?;
    let (database, store) = store_for(nodes, dir.path(), "herd").await?;
    let mut private_redis = match redis_down {
        true => Some(
            PrivateRedis::start()
                .await
                .ok_or_else(|| anyhow::anyhow!("needs redis-server"))?,
        ),
        false => None,
    };
    let redis = match &private_redis {
        Some(private) => private.url(),
        None => std::env::var("VANE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    };
    let prefix = format!("vane_herd_{:08x}:", rand::random::<u32>());
    let mut servers = Vec::new();
    for _ in 0..nodes {
        let redis = (nodes > 1).then_some((&redis, &prefix));
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("MIMALLOC_") || k.starts_with("VANE_"))
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        servers.push(start_server(dir.path(), &store, redis, &env)?);
    }
    let http = reqwest::Client::new();
    for (_, addr) in &servers {
        wait_ready(&http, *addr).await?;
    }
    let (secret, versions) = set_up(&http, servers[0].1).await?;

    let mut clients = Vec::new();
    for (i, (_, addr)) in servers.iter().enumerate() {
        let count = per_node.min(n - i * per_node);
        // Two sockets a client; a process may hold only so many.
        let processes = (2 * count).div_ceil(PER_PROCESS);
        for j in 0..processes {
            let share = count / processes + usize::from(j < count % processes);
            let index = (i * 8 + j).to_string();
            let mut child = Command::new(std::env::current_exe()?)
                .args([
                    "client",
                    &connections.to_string(),
                    &addr.to_string(),
                    &share.to_string(),
                    &secret,
                    &index,
                    &versions[1],
                    if wave.one_address { "1" } else { "0" },
                    &wave.idle.as_secs().to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
            clients.push((Process(child), BufReader::new(stdout)));
        }
    }
    let mut refused = 0;
    for (_, out) in &mut clients {
        let line = expect_line(out, "ready")?;
        let failed: usize = line.split_whitespace().nth(2).and_then(|w| w.parse().ok()).unwrap_or(0);
        anyhow::ensure!(failed == 0 || wave.one_address, "some clients failed to start: {line}");
        refused += failed;
    }
    if wave.one_address {
        println!("{refused} of {n} clients refused a push socket (one address); they retry every 10 s");
    }
    tokio::time::sleep(Duration::from_secs(1) + wave.idle).await;
    if let Some(mut redis) = private_redis.take() {
        redis.stop();
        // Time for the nodes to see it gone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("redis stopped before the publish");
    }

    let client_cpu = |clients: &[(Process, BufReader<std::process::ChildStdout>)]| {
        clients.iter().map(|(p, _)| cpu_seconds(p.0.id())).sum::<f64>()
    };
    let (busy_before, clients_before) = (machine_busy_seconds(), client_cpu(&clients));
    let started = Instant::now();
    admin(&http, servers[0].1, "/release", json!({"code_id": versions[1]})).await?;
    let published = unix_nanos();
    let publish_took = started.elapsed();
    let mut delays = Vec::with_capacity(n);
    let mut retries = 0;
    for (_, out) in &mut clients {
        let line = expect_line(out, "held")?;
        let mut words = line.split_whitespace().skip(1);
        retries += words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        for at in words {
            let at: u128 = at.parse()?;
            delays.push(Duration::from_nanos(at.saturating_sub(published) as u64));
        }
    }
    let wave = started.elapsed();
    let busy = machine_busy_seconds() - busy_before;
    let clients_cpu = client_cpu(&clients) - clients_before;
    report(n - refused, nodes, publish_took, retries, delays);
    println!(
        "  the wave took {wave:.2?}: machine busy {busy:.2} s of CPU, of which the client processes {clients_cpu:.2} s; \
         the servers {:.0} µs per client",
        (busy - clients_cpu) / n as f64 * 1e6
    );
    drop(clients);
    drop(servers);
    if let Some(db) = database {
        db.drop().await?;
    }
    Ok(())
}

fn report(n: usize, nodes: usize, publish_took: Duration, retries: u64, mut delays: Vec<Duration>) {
    delays.sort();
    let held = delays.len();
    let pick = |q: f64| {
        let rank = ((n as f64) * q).ceil() as usize;
        match rank {
            0 => Some(Duration::ZERO),
            r if r <= held => Some(delays[r - 1]),
            _ => None,
        }
    };
    let show = |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{d:.1?}"));
    println!("{n} clients (original /push + POST /config, cached: false) on {nodes} node(s):");
    println!("  publish answered in {publish_took:.1?}; {held} of {n} clients hold the new code_id");
    println!(
        "  after the publish's 2xx: 50 % {}, 99 % {}, 100 % {}; fetches retried after an error: {retries}",
        show(pick(0.5)),
        show(pick(0.99)),
        show(pick(1.0))
    );
}

/// Creates the config with two versions of the 58-line benchmark script and
/// releases the first; returns the secret and both code_ids.
async fn set_up(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<(String, Vec<String>)> {
    let config = admin(http, addr, "", json!({"id": CONFIG})).await?;
    let secret = config["secret"].as_str().unwrap_or_default().to_owned();
    let source = include_str!("../loadtest/scripts/config60.star");
    let mut versions = Vec::new();
    for v in 1..=2 {
        let body = json!({"lang": "starlark", "source": format!("{source}\n# version {v}\n")});
        let version = admin(http, addr, "/versions", body).await?;
        versions.push(version["code_id"].as_str().unwrap_or_default().to_owned());
    }
    admin(http, addr, "/release", json!({"code_id": versions[0]})).await?;
    Ok((secret, versions))
}

async fn admin(http: &reqwest::Client, addr: SocketAddr, path: &str, body: Value) -> anyhow::Result<Value> {
    let url = match path {
        "" => format!("http://{addr}/api/v1/configs"),
        path => format!("http://{addr}/api/v1/configs/{CONFIG}{path}"),
    };
    let response = http.post(url).bearer_auth(BEARER).json(&body).send().await?;
    Ok(response.error_for_status()?.json().await?)
}

/// `client <connections> <addr> <count> <secret> <index> <new code_id>`: starts `count`
/// clients, each fetching once and subscribing; says "ready <ok> <failed>";
/// then every client fetches on each notice until it holds the new code_id;
/// says "held <retries> <unix nanos when each client held it>...".
async fn client(args: &[String]) -> anyhow::Result<()> {
    let connections: usize = args[0].parse()?;
    let addr: SocketAddr = args[1].parse()?;
    let count: usize = args[2].parse()?;
    let secret = args[3].clone();
    let index: usize = args[4].parse()?;
    let target: Arc<str> = args[5].as_str().into();
    let one_address = args.get(6).is_some_and(|a| a == "1");
    let idle = Duration::from_secs(args.get(7).map_or(Ok(0), |a| a.parse())?);
    let pool = Arc::new(Semaphore::new(match connections {
        0 => Semaphore::MAX_PERMITS,
        k => k,
    }));
    let gate = Arc::new(Semaphore::new(OPENING));
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
    // One HTTP client for the process's apps, its connections kept open:
    // 10,000 apps each with a connection of its own and a socket would need
    // 20,000 open files in the server, this machine's hard limit.
    let fetch_source = Ipv4Addr::new(127, 101 + index as u8, 1, 1);
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(fetch_source))
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(10))
        .build()?;
    for i in 0..count {
        let source = match one_address {
            true => Ipv4Addr::new(127, 1, 1, 1),
            false => Ipv4Addr::new(127, 1 + index as u8, 1 + (i / PER_SOURCE) as u8, 1),
        };
        let app = App {
            http: http.clone(),
            pool: pool.clone(),
            addr,
            device: format!("herd-{index}-{i}"),
            n: i,
        };
        let (secret, gate, ready_tx, held_tx, target) = (
            secret.clone(),
            gate.clone(),
            ready_tx.clone(),
            held_tx.clone(),
            target.clone(),
        );
        tokio::spawn(async move {
            let started = async {
                app.fetch().await?;
                subscribe(addr, source, CONFIG, &secret).await
            };
            let what = format!("client {i}");
            let Some(socket) = start_gated(&gate, &ready_tx, &what, started).await else {
                if one_address {
                    // Slow to give up: a socket it gets later is held, unread.
                    let mut kept = Vec::new();
                    loop {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        if let Ok(socket) = subscribe(addr, source, CONFIG, &secret).await {
                            kept.push(socket);
                        }
                    }
                }
                return;
            };
            let (_sink, mut frames) = socket.split();
            let mut retries = 0;
            let mut held = false;
            while let Some(Ok(frame)) = frames.next().await {
                if !frame.is_text() || held {
                    continue;
                }
                // Fetch until this client holds the new version, as a client
                // that got an error would try again; then stay subscribed,
                // as an app does.
                loop {
                    match app.fetch().await {
                        Ok(code_id) if *code_id == *target => {
                            let _ = held_tx.send((unix_nanos(), retries));
                            held = true;
                            break;
                        }
                        Ok(_) => break,
                        Err(e) => {
                            if retries == 0 && i % 500 == 0 {
                                eprintln!("client {i}: {e}");
                            }
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
    }
    let ok = count_ready(&mut ready, count).await;
    println!("ready {ok} {}", count - ok);
    let mut times = Vec::with_capacity(ok);
    let mut retries = 0;
    let deadline = tokio::time::Instant::now() + idle + WAVE_LIMIT;
    while times.len() < ok {
        match tokio::time::timeout_at(deadline, held.recv()).await {
            Ok(Some((at, tries))) => {
                times.push(at.to_string());
                retries += tries;
            }
            _ => break,
        }
    }
    println!("held {retries} {}", times.join(" "));
    // Stay connected until the parent is done.
    tokio::time::sleep(LIMIT + idle).await;
    Ok(())
}

/// One app of the original's fleet.
struct App {
    http: reqwest::Client,
    /// Fetches under way at once, so at most that many connections.
    pool: Arc<Semaphore>,
    addr: SocketAddr,
    device: String,
    n: usize,
}

impl App {
    /// `POST /config/{id}` as the original client library sends it; returns
    /// the code_id served.
    async fn fetch(&self) -> anyhow::Result<String> {
        let _connection = self.pool.acquire().await?;
        let body = json!({
            "meta": {"platform": "iphone", "version": 120, "device_id": self.device},
            "params": {"score": self.n % 100, "platform": "iphone", "version_code": 100 + self.n % 80, "seq": self.n},
            "cached": false,
        });
        let url = format!("http://{}/config/{CONFIG}", self.addr);
        let response = self.http.post(url).json(&body).send().await?;
        let status = response.status();
        let reply: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{status}: {reply}");
        Ok(reply["data"]["code_id"].as_str().unwrap_or_default().to_owned())
    }
}

/// CPU seconds a process has used (utime + stime).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / clock_ticks()
}

/// Busy CPU seconds of the whole machine since boot (/proc/stat).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| fields.get(*i)).sum();
    busy / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}
