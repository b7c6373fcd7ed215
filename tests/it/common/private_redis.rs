//! A Redis server of the test's own, on a free port, that the test may stop
//! and start again: outage tests never touch the shared one.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// None (said on stderr) when `redis-server` is missing outside CI; in
    /// CI that is a failure.
    pub async fn start() -> Option<Self> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server must be installed when CI=true");
            }
            // Not `eprintln!`, which libtest captures: a plain `cargo test`
            // shows this.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipping Redis test: redis-server is not installed");
            return None;
        }
        // Not `common::free_port`: examples/herd.rs includes this file alone.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.resume().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub async fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not listen on port {}", self.port);
    }

    /// Kills the server: its clients see their connections drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
