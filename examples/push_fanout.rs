//! Opens N idle push subscriptions to `vane serve` processes, publishes one
//! change, and reports the time until all N have it and the servers' resident
//! memory per connection. Loopback only, bounded in count and time (`LIMIT`).
//!
//!     cargo build --release --bins --examples
//!     cargo run --release --example push_fanout -- 10000
//!     cargo run --release --example push_fanout -- 100000 --nodes 6
//!     cargo run --release --example push_fanout -- 10000 --hold 600
//!
//! `--hold S` is the soak: the subscribers idle S seconds with the default
//! heartbeat (a ping every 30 s, answered by the client library as real
//! clients answer it) before the publish, and the run reports the servers'
//! CPU and memory per idle subscriber and every socket the servers dropped;
//! it fails if any was dropped or missed the publish.
//!
//! One node runs on SQLite. Several nodes share a fresh PostgreSQL database
//! (VANE_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test)
//! and Redis (VANE_BENCH_REDIS_URL, default redis://127.0.0.1:6379); the
//! change is published on the first node and reaches the others through the
//! change bus. Each node gets its own subscriber process (this program, run
//! as `client`), since one process may hold only so many sockets; sockets
//! come from several loopback source addresses so ports never run out.

use std::io::BufReader;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
/// The run's bound, beyond `--hold`.
const LIMIT: Duration = Duration::from_secs(300);
/// Connections one subscriber process opens at once.
const OPENING: usize = 128;
/// Sockets per loopback source address: under the server's default
/// `push.max_sockets_per_address` (1,024), or the rest would be refused.
const PER_SOURCE: usize = 1_000;

mod support;

use support::{
    BEARER, Process, count_ready, expect_line, open_files_limit, option, raise_open_files, rss_bytes, start_gated,
    start_server, store_for, subscribe, unix_nanos, wait_ready,
};

fn main() -> anyhow::Result<()> {
    vane::tls::install();
    let args: Vec<String> = std::env::args().collect();
    raise_open_files();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("client") {
        return runtime.block_on(client(&args[2..]));
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let nodes = option(&args, "--nodes").unwrap_or(1);
    let hold = Duration::from_secs(option(&args, "--hold").unwrap_or(0) as u64);
    let limit = LIMIT + hold;
    runtime.block_on(async {
        match tokio::time::timeout(limit, run(n, nodes, hold)).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("gave up after {limit:?}"),
        }
    })
}

async fn run(n: usize, nodes: usize, hold: Duration) -> anyhow::Result<()> {
    let per_node = n.div_ceil(nodes);
    let files = open_files_limit();
    anyhow::ensure!(
        (per_node as u64) + 200 < files,
        "{per_node} sockets per node need more than the open-files limit of {files} per process; use more --nodes"
    );
    let dir = tempfile::tempdir()?;
    let (database, store) = store_for(nodes, dir.path(), "fan").await?;
    let redis = std::env::var("VANE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("vane_fan_{:08x}:", rand::random::<u32>());
    let mut servers = Vec::new();
    for _ in 0..nodes {
        servers.push(start_server(
            dir.path(),
            &store,
            (nodes > 1).then_some((&redis, &prefix)),
            &[],
        )?);
    }
    let http = reqwest::Client::new();
    for (_, addr) in &servers {
        wait_ready(&http, *addr).await?;
    }
    let first = servers[0].1;
    let admin = |path: &str, body: Value| {
        http.post(format!("http://{first}{path}"))
            .bearer_auth(BEARER)
            .json(&body)
            .send()
    };
    let config: Value = admin("/api/v1/configs", json!({"id": "fan"}))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let secret = config["secret"].as_str().unwrap_or_default().to_owned();
    let mut versions = Vec::new();
    for v in 1..=2 {
        let body = json!({"lang": "starlark", "source": format!("return {v}")});
        let version: Value = admin("/api/v1/configs/fan/versions", body)
            .await?
            .error_for_status()?
            .json()
            .await?;
        versions.push(version["code_id"].as_str().unwrap_or_default().to_owned());
    }
    admin("/api/v1/configs/fan/release", json!({"code_id": versions[0]}))
        .await?
        .error_for_status()?;

    let before: u64 = servers.iter().map(|(p, _)| rss_bytes(p.0.id())).sum();
    let started = Instant::now();
    let mut clients = Vec::new();
    for (i, (_, addr)) in servers.iter().enumerate() {
        let count = per_node.min(n - i * per_node);
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "client",
                &addr.to_string(),
                &count.to_string(),
                &secret,
                &i.to_string(),
                &hold.as_secs().to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        clients.push((Process(child), BufReader::new(stdout)));
    }
    for (_, out) in &mut clients {
        let line = expect_line(out, "opened")?;
        anyhow::ensure!(line.trim().ends_with(" 0"), "some subscriptions failed: {line}");
    }
    let open_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: u64 = servers.iter().map(|(p, _)| rss_bytes(p.0.id())).sum();
    let soak = if hold.is_zero() {
        None
    } else {
        let cpu_before: u64 = servers.iter().map(|(p, _)| cpu_ticks(p.0.id())).sum();
        let held = Instant::now();
        tokio::time::sleep(hold).await;
        let cpu = servers.iter().map(|(p, _)| cpu_ticks(p.0.id())).sum::<u64>() - cpu_before;
        let held = held.elapsed();
        let rss: u64 = servers.iter().map(|(p, _)| rss_bytes(p.0.id())).sum();
        let mut dropped = 0.0;
        for (_, addr) in &servers {
            dropped += dropped_clients(&http, *addr).await?;
        }
        Some((held, cpu, rss, dropped))
    };

    let published = unix_nanos();
    admin("/api/v1/configs/fan/release", json!({"code_id": versions[1]}))
        .await?
        .error_for_status()?;
    let mut delays = Vec::with_capacity(n);
    for (_, out) in &mut clients {
        let line = expect_line(out, "received")?;
        for at in line.split_whitespace().skip(1) {
            let at: u128 = at.parse()?;
            delays.push(Duration::from_nanos(at.saturating_sub(published) as u64));
        }
    }
    anyhow::ensure!(
        delays.len() == n,
        "{} of {n} subscribers heard of the change",
        delays.len()
    );
    delays.sort();
    let pick = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    println!("{n} idle subscribers (original /push/{{id}}) on {nodes} node(s), {per_node} per node:");
    println!("  opened in {open_time:.2?}");
    println!(
        "  servers' RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / n as f64 / 1024.0
    );
    println!(
        "  publish on node 1 -> delivery: median {:.1?}, p99 {:.1?}, last {:.1?}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    if let Some((held, cpu, rss, dropped)) = soak {
        let cpu_s = cpu as f64 / ticks_per_second();
        println!("  held idle {held:.0?} with the default heartbeat: {dropped} sockets dropped");
        println!(
            "  servers' CPU {cpu_s:.2} s over the hold: {:.3} % of a core, {:.2} µs per subscriber per second",
            cpu_s / held.as_secs_f64() * 100.0,
            cpu_s * 1e6 / held.as_secs_f64() / n as f64
        );
        println!(
            "  servers' RSS after the hold {:.1} MiB: {:.1} KiB per connection",
            rss as f64 / 1048576.0,
            rss.saturating_sub(before) as f64 / n as f64 / 1024.0
        );
        anyhow::ensure!(dropped == 0.0, "{dropped} idle subscribers were dropped");
    }
    drop(clients);
    drop(servers);
    if let Some(db) = database {
        db.drop().await?;
    }
    Ok(())
}

/// `client <addr> <count> <secret> <index>`: opens `count` subscriptions,
/// says "opened <ok> <failed>", waits for one notice on each, and says "received" with
/// every arrival time (unix nanoseconds).
async fn client(args: &[String]) -> anyhow::Result<()> {
    let addr: SocketAddr = args[0].parse()?;
    let count: usize = args[1].parse()?;
    let secret = args[2].clone();
    let index: usize = args[3].parse()?;
    let hold = Duration::from_secs(args.get(4).map_or(Ok(0), |h| h.parse())?);
    let gate = Arc::new(Semaphore::new(OPENING));
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..count {
        let block = i / PER_SOURCE;
        let source = Ipv4Addr::new(127, 1 + index as u8, 1 + (block / 250) as u8, 1 + (block % 250) as u8);
        let (secret, gate, opened_tx, arrived_tx) =
            (secret.clone(), gate.clone(), opened_tx.clone(), arrived_tx.clone());
        tokio::spawn(async move {
            let what = format!("subscription {i}");
            let started = subscribe(addr, source, "fan", &secret);
            let Some(socket) = start_gated(&gate, &opened_tx, &what, started).await else {
                return;
            };
            let (_sink, mut frames) = socket.split();
            while let Some(Ok(frame)) = frames.next().await {
                if frame.is_text() {
                    let _ = arrived_tx.send(unix_nanos());
                }
            }
        });
    }
    let ok = count_ready(&mut opened, count).await;
    println!("opened {ok} {}", count - ok);
    let mut times = Vec::with_capacity(ok);
    while times.len() < ok {
        match arrived.recv().await {
            Some(at) => times.push(at.to_string()),
            None => break,
        }
    }
    println!("received {}", times.join(" "));
    // Stay connected until the parent is done.
    tokio::time::sleep(LIMIT + hold).await;
    Ok(())
}

/// User and system CPU of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// `vane_push_dropped_clients_total`, every reason summed, from `/metrics`.
async fn dropped_clients(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<f64> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(BEARER)
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("vane_push_dropped_clients_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
