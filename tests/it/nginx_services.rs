//! The service registry end to end, as the README's "Services" section sets
//! it up: two upstream HTTP servers, each registered by an agent of its own
//! while its health check passes; a third agent renders nginx's upstream
//! block from `service("api")` and runs nginx. A client retrying through
//! nginx never fails while one upstream's check fails (it leaves nginx
//! within its ttl plus a second) and a third upstream joins. An agent told
//! to stop deregisters at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::common;
use crate::common::{BEARER, Backend, TestApp, eventually};
use crate::nginx::backend;

const WAIT: Duration = Duration::from_secs(20);
const TTL_S: u64 = 2;

struct Agent(Child, std::path::PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    fn start(dir: &Path, name: &str, toml: &str) -> Self {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_vane"))
            .args(["watch", "--config", file.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self(child, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// SIGTERM, then its exit code.
    async fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..200 {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

fn registering(vane: &str, id: &str, port: u16, flag: &Path) -> String {
    format!(
        "[[register]]\nserver = \"{vane}\"\ntoken = \"{BEARER}\"\nservice = \"api\"\ninstance_id = \"{id}\"\n\
         address = \"127.0.0.1\"\nport = {port}\ncheck = \"test -f {}\"\ninterval_s = 1\nttl_s = {TTL_S}\n",
        flag.display()
    )
}

fn nginx_agent(dir: &Path, vane: &str, port: u16) -> String {
    let upstream = "{%- for i in service(\"api\") %}\n    server {{ i.address }}:{{ i.port }} max_fails=0;\n\
                    {%- else %}\n    server 127.0.0.1:1 down;\n{%- endfor %}";
    crate::nginx::agent_toml(dir, &format!("token = \"{BEARER}\"\n"), vane, "api", upstream, port)
}

/// A client that retries through nginx, as a real one does: a request
/// fails only if three tries in a row fail.
async fn through(client: &reqwest::Client, port: u16) -> Option<String> {
    for _ in 0..3 {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/")).send().await
            && response.status().is_success()
        {
            return response.text().await.ok();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Which upstreams answer `n` requests.
async fn answering(client: &reqwest::Client, port: u16, n: usize) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match through(client, port).await {
            Some(name) if !seen.contains(&name) => seen.push(name),
            Some(_) => {}
            None => failed += 1,
        }
    }
    seen.sort();
    (seen, failed)
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_follows_the_registry_as_checks_pass_and_fail() {
    if Command::new("nginx").arg("-v").output().is_err() {
        common::skipped("nginx", "nginx is not installed (apt-get install nginx)");
        return;
    }
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vane = app.url("");
    let flags: Vec<_> = (1..=3).map(|i| dir.path().join(format!("healthy-{i}"))).collect();
    for flag in &flags[..2] {
        std::fs::write(flag, "").unwrap();
    }
    let (one, two, three) = (backend("one").await, backend("two").await, backend("three").await);
    let mut first = Agent::start(dir.path(), "one", &registering(&vane, "one", one, &flags[0]));
    let _second = Agent::start(dir.path(), "two", &registering(&vane, "two", two, &flags[1]));
    let port = common::free_port();
    let started = Instant::now();
    let edge = Agent::start(dir.path(), "edge", &nginx_agent(dir.path(), &vane, port));
    let client = reqwest::Client::new();
    let both = || async { answering(&client, port, 8).await.0 == ["one", "two"] };
    assert!(eventually(WAIT, both).await, "{}{}", edge.log(), first.log());
    println!("agents started to nginx serving both: {:?}", started.elapsed());

    // One upstream's check fails: it leaves within its ttl plus a second
    // (and a render), and the retrying client never fails meanwhile.
    std::fs::remove_file(&flags[0]).unwrap();
    let failing = Instant::now();
    let mut failures = 0;
    loop {
        let (seen, failed) = answering(&client, port, 4).await;
        failures += failed;
        if seen == ["two"] {
            break;
        }
        assert!(failing.elapsed() < WAIT, "{}", edge.log());
    }
    let gone_after = failing.elapsed();
    println!("check failed to nginx without it: {gone_after:?}");
    assert!(
        gone_after < Duration::from_millis(TTL_S * 1000 + 2_500),
        "{gone_after:?}"
    );
    assert_eq!(failures, 0, "a retrying client failed while an upstream left");
    let (_, members) = app.admin(Method::GET, "/api/v1/services/api", None).await;
    assert_eq!(members["instances"].as_array().unwrap().len(), 1, "{members}");

    // A third joins.
    std::fs::write(&flags[2], "").unwrap();
    let _third = Agent::start(dir.path(), "three", &registering(&vane, "three", three, &flags[2]));
    let joined = Instant::now();
    let two_and_three = || async { answering(&client, port, 8).await.0 == ["three", "two"] };
    assert!(eventually(WAIT, two_and_three).await, "{}", edge.log());
    println!("registered to nginx serving it: {:?}", joined.elapsed());

    // An agent told to stop deregisters at once and exits 0; its check
    // passing again did not matter, since the agent is gone.
    std::fs::write(&flags[0], "").unwrap();
    let one_back = || async { answering(&client, port, 8).await.0 == ["one", "three", "two"] };
    assert!(eventually(WAIT, one_back).await, "{}", edge.log());
    let stopped = Instant::now();
    assert_eq!(first.stop().await, Some(0), "{}", first.log());
    let (_, members) = app.admin(Method::GET, "/api/v1/services/api", None).await;
    let ids: Vec<&str> = members["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["three", "two"], "deregistered on SIGTERM, not left to expire");
    assert!(
        stopped.elapsed() < Duration::from_secs(TTL_S),
        "{:?}",
        stopped.elapsed()
    );

    // `--dry-run` says what it would register, and registers nothing.
    let said = Command::new(env!("CARGO_BIN_EXE_vane"))
        .args([
            "watch",
            "--dry-run",
            "--config",
            dir.path().join("one.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&said.stdout);
    assert!(
        said.status.success() && text.contains("would register 127.0.0.1:"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, members) = app.admin(Method::GET, "/api/v1/services/api", None).await;
    assert_eq!(members["instances"].as_array().unwrap().len(), 2, "{members}");
    app.stop().await;
}
