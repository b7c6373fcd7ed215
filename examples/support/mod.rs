//! What the load tools share: the `vane` binary they start, a child process
//! that dies with them, and waiting for a node to be ready.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

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
