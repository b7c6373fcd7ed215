//! Opens N idle push subscriptions to a `vane serve` started as its own
//! process, publishes one change, and reports the time until all N have it
//! and the server's resident memory per connection. Loopback only, bounded in
//! count (each process's open-files limit) and time (`LIMIT`).
//!
//!     cargo build --release --bins --examples
//!     cargo run --release --example push_fanout -- 10000
//!
//! Sockets come from several loopback source addresses, so the ephemeral port
//! range is never the limit; the open-files limit is raised to its hard limit.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, client_async_with_config};

const BEARER: &str = "bench-token-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(180);
/// Connections opened at once.
const OPENING: usize = 256;
/// Sockets per loopback source address.
const PER_SOURCE: usize = 20_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let files = raise_open_files();
    anyhow::ensure!(
        (n as u64) + 200 < files,
        "{n} sockets need more than this machine's open-files limit of {files} per process"
    );
    match tokio::time::timeout(LIMIT, run(n)).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("gave up after {LIMIT:?}"),
    }
}

/// The server process, killed however the run ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, addr) = start_server(dir.path())?;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    wait_ready(&http, &base).await?;
    let admin = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
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
    for n in 1..=2 {
        let version: Value = admin(
            "/api/v1/configs/fan/versions",
            json!({"lang": "starlark", "source": format!("return {n}")}),
        )
        .await?
        .error_for_status()?
        .json()
        .await?;
        versions.push(version["code_id"].as_str().unwrap_or_default().to_owned());
    }
    admin("/api/v1/configs/fan/release", json!({"code_id": versions[0]}))
        .await?
        .error_for_status()?;

    let before = rss_bytes(server.0.id());
    let (received_tx, mut received) = mpsc::unbounded_channel::<Instant>();
    let (opened_tx, mut opened) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(OPENING));
    let started = Instant::now();
    for i in 0..n {
        let source = Ipv4Addr::new(127, 0, 1 + (i / PER_SOURCE) as u8, 1);
        let (secret, gate) = (secret.clone(), gate.clone());
        let (received_tx, opened_tx) = (received_tx.clone(), opened_tx.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let socket = match subscribe(addr, source, &secret).await {
                Ok(socket) => socket,
                Err(e) => {
                    eprintln!("subscription {i} failed: {e}");
                    return;
                }
            };
            drop(permit);
            let _ = opened_tx.send(());
            let (_, mut frames) = socket.split();
            // Idle until the first notice, then stay connected until the end.
            while let Some(Ok(frame)) = frames.next().await {
                if frame.is_text() {
                    let _ = received_tx.send(Instant::now());
                }
            }
        });
    }
    for _ in 0..n {
        opened.recv().await;
    }
    let open_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(server.0.id());
    let per_connection = after.saturating_sub(before) as f64 / n as f64;

    let published = Instant::now();
    admin("/api/v1/configs/fan/release", json!({"code_id": versions[1]}))
        .await?
        .error_for_status()?;
    let mut delays = Vec::with_capacity(n);
    while delays.len() < n {
        let at = received.recv().await.unwrap_or_else(Instant::now);
        delays.push(at.saturating_duration_since(published));
    }
    delays.sort();
    let pick = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    println!("{n} idle subscribers (original /push/{{id}}), one server process:");
    println!("  opened in {open_time:.2?}");
    println!(
        "  server RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_connection / 1024.0
    );
    println!(
        "  publish -> delivery: median {:.1?}, p99 {:.1?}, last {:.1?}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    drop(server);
    Ok(())
}

type Socket = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(addr: SocketAddr, source: Ipv4Addr, secret: &str) -> anyhow::Result<Socket> {
    let tcp = TcpSocket::new_v4()?;
    tcp.bind(SocketAddr::new(source.into(), 0))?;
    let stream = tcp.connect(addr).await?;
    let mut request = format!("ws://{addr}/push/fan").into_client_request()?;
    request.headers_mut().insert("Secret", secret.parse()?);
    // Small buffers on this side too, or the tool would need gigabytes.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (socket, _) = client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config)).await?;
    Ok(socket)
}

fn start_server(dir: &std::path::Path) -> anyhow::Result<(Server, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let vane = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("vane"))
        .filter(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("build the vane binary first: cargo build --release"))?;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let child = Command::new(vane)
        .arg("serve")
        .current_dir(dir)
        .env("VANE_SERVER__LISTEN", addr.to_string())
        .env("VANE_STORE__URL", format!("sqlite://{}", dir.join("fan.db").display()))
        .env("VANE_AUTH__ADMIN_TOKENS", format!("bench={BEARER}"))
        .env("VANE_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    Ok((Server(child), addr))
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the server did not become ready")
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Raises this process's (and so the server's) open-files limit to the hard
/// limit; returns it.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}
