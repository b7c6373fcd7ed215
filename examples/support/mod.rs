//! What the load tools share: the `vane` binary they start, a child process
//! that dies with them, waiting for a node to be ready, a PostgreSQL database
//! of their own, and the original client's push subscription.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, client_async_with_config};

pub const BEARER: &str = "bench-token-0123456789abcdef";

/// The release `vane` beside this example's binary.
pub fn vane_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("vane"))
        .filter(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("build the vane binary first: cargo build --release"))
}

/// A child process, killed however the run ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number after `name` on the command line, if any.
pub fn option(args: &[String], name: &str) -> Option<usize> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

pub async fn wait_ready(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        let ready = http.get(format!("http://{addr}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("node {addr} did not become ready")
}

/// A fresh PostgreSQL database (VANE_BENCH_DATABASE_URL names the server).
pub struct Database {
    admin: String,
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        let admin = std::env::var("VANE_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("{prefix}{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        let url = format!("{}/{name}", admin.rsplit_once('/').map_or(admin.as_str(), |(p, _)| p));
        Ok(Self { admin, name, url })
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        conn.execute(sqlx::AssertSqlSafe(sql)).await?;
        Ok(())
    }
}

/// The store for a run of `nodes` nodes: an SQLite file in `dir` for one,
/// a fresh PostgreSQL database (dropped by the caller) for several.
pub async fn store_for(nodes: usize, dir: &std::path::Path, name: &str) -> anyhow::Result<(Option<Database>, String)> {
    if nodes > 1 {
        let database = Database::create(&format!("vane_{name}_")).await?;
        let url = database.url.clone();
        return Ok((Some(database), url));
    }
    Ok((None, format!("sqlite://{}", dir.join(format!("{name}.db")).display())))
}

/// Starts `vane serve` on a free port; `env` adds settings.
pub fn start_server(
    dir: &std::path::Path,
    store: &str,
    redis: Option<(&String, &String)>,
    env: &[(&str, &str)],
) -> anyhow::Result<(Process, SocketAddr)> {
    let vane = vane_exe()?;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut command = Command::new(vane);
    command
        .arg("serve")
        .current_dir(dir)
        .env("VANE_SERVER__LISTEN", addr.to_string())
        .env("VANE_STORE__URL", store)
        .env("VANE_AUTH__ADMIN_TOKENS", format!("bench={BEARER}"))
        .env("VANE_LOG__LEVEL", "warn")
        .stdout(Stdio::null());
    command.envs(env.iter().copied());
    if let Some((url, prefix)) = redis {
        command.env("VANE_REDIS__URL", url).env("VANE_REDIS__PREFIX", prefix);
    }
    Ok((Process(command.spawn()?), addr))
}

pub fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Raises the open-files limit to the hard limit (children inherit it).
pub fn raise_open_files() {
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
}

pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain syscall on a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

pub type Socket = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The original client's subscription: `GET /push/{config_id}` with `Secret`,
/// from a loopback source address of the caller's choosing.
pub async fn subscribe(addr: SocketAddr, source: Ipv4Addr, config_id: &str, secret: &str) -> anyhow::Result<Socket> {
    let tcp = TcpSocket::new_v4()?;
    tcp.bind(SocketAddr::new(source.into(), 0))?;
    let stream = tcp.connect(addr).await?;
    let mut request = format!("ws://{addr}/push/{config_id}").into_client_request()?;
    request.headers_mut().insert("Secret", secret.parse()?);
    // Small buffers on this side too, or the subscribers would need gigabytes.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (socket, _) = client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config)).await?;
    Ok(socket)
}

/// Runs `start` holding a permit of `gate` (so only so many connect at
/// once), and tells `ready` whether it worked.
pub async fn start_gated<T>(
    gate: &tokio::sync::Semaphore,
    ready: &tokio::sync::mpsc::UnboundedSender<bool>,
    what: &str,
    start: impl Future<Output = anyhow::Result<T>>,
) -> Option<T> {
    let _permit = gate.acquire().await.ok()?;
    let started = start.await;
    if let Err(e) = &started {
        eprintln!("{what} failed: {e}");
    }
    let _ = ready.send(started.is_ok());
    started.ok()
}

/// How many of `count` starts reported success.
pub async fn count_ready(ready: &mut tokio::sync::mpsc::UnboundedReceiver<bool>, count: usize) -> usize {
    let mut ok = 0;
    for _ in 0..count {
        ok += usize::from(ready.recv().await == Some(true));
    }
    ok
}

/// Reads one line of a child's output, which must start with `word`.
pub fn expect_line(out: &mut BufReader<ChildStdout>, word: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    out.read_line(&mut line)?;
    anyhow::ensure!(line.starts_with(word), "a subscriber process said {line:?}, not {word}");
    Ok(line)
}
