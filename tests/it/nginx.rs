//! `vane watch` with a real nginx as its consumer, the way the README shows
//! it: the agent renders nginx's whole configuration, checks the candidate
//! with `nginx -t`, and runs nginx in exec mode, sending it SIGHUP on each
//! change. nginx runs under a temporary prefix on loopback ports, as a child
//! of the agent, not as a system service. Prints publish-to-serving times.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::common;
use crate::common::{Backend, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(20);

/// A backend that answers every request with its name.
pub async fn backend(name: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(move || async move { name });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn publish(app: &TestApp, servers: &[String]) -> String {
    let source = json!({"lang": "starlark", "source": format!("return {}", json!({"servers": servers}))});
    let code_id = app.create_version("edge", source).await;
    let body = json!({"code_id": code_id, "force": true});
    let (status, body) = app
        .admin(Method::POST, "/api/v1/configs/edge/release", Some(body))
        .await;
    assert!(status.is_success(), "{body}");
    code_id
}

async fn served_by(client: &reqwest::Client, port: u16) -> String {
    match client.get(format!("http://127.0.0.1:{port}/")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watch_toml(dir: &Path, vane: &str, secret: &str, port: u16) -> String {
    let upstream = "{% for s in servers %}    server {{ s }};\n{% endfor %}";
    agent_toml(
        dir,
        &format!("config_id = \"edge\"\nsecret = \"{secret}\"\n"),
        vane,
        "app",
        upstream,
        port,
    )
}

/// A `watch.toml` whose agent runs nginx under `dir` (exec mode, SIGHUP on
/// change) and renders its whole configuration: an upstream `name` whose
/// body is the template `upstream`, proxied from `port` on loopback; `reads`
/// are the resource's keys that say what it reads (a config, or a token).
pub fn agent_toml(dir: &Path, reads: &str, vane: &str, name: &str, upstream: &str, port: u16) -> String {
    let d = dir.display();
    let template = format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         \x20 upstream {name} {{\n{upstream}\n\x20 }}\n\
         \x20 server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://{name}; proxy_next_upstream error timeout http_502; }} }}\n\
         }}\n"
    );
    let nginx = format!("\"nginx\", \"-p\", \"{d}\", \"-e\", \"{d}/error.log\"");
    format!(
        "[exec]\ncommand = [{nginx}, \"-c\", \"{d}/nginx.conf\", \"-g\", \"daemon off;\"]\n\
         reload_signal = \"SIGHUP\"\n\n\
         [[resource]]\nname = \"nginx\"\nserver = \"{vane}\"\n{reads}\
         template = '''\n{template}'''\ndestination = \"{d}/nginx.conf\"\n\
         check = \"nginx -t -q -p {d} -e {d}/error.log -c {{}}\"\ndebounce_ms = 20\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_follows_publishes_refuses_a_bad_file_and_stops_with_the_agent() {
    if Command::new("nginx").arg("-v").output().is_err() {
        common::skipped("nginx", "nginx is not installed (apt-get install nginx)");
        return;
    }
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let secret = app.create_config("edge").await["secret"].as_str().unwrap().to_owned();
    let (one, two) = (backend("one").await, backend("two").await);
    publish(&app, &[format!("127.0.0.1:{one}")]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let file = dir.path().join("watch.toml");
    std::fs::write(&file, watch_toml(dir.path(), &app.url(""), &secret, port)).unwrap();
    let log = dir.path().join("agent.log");
    let started = Instant::now();
    let mut agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_vane"))
            .args(["watch", "--config", file.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let client = reqwest::Client::new();
    let first = eventually(WAIT, || async { served_by(&client, port).await == "one" }).await;
    assert!(first, "nginx never served: {}", logs());
    println!("start to nginx serving: {:?}", started.elapsed());

    for (round, backend) in [two, one, two].into_iter().enumerate() {
        let name = if backend == one { "one" } else { "two" };
        let published = Instant::now();
        publish(&app, &[format!("127.0.0.1:{backend}")]).await;
        let followed = eventually(WAIT, || async { served_by(&client, port).await == name }).await;
        assert!(followed, "round {round}: {}", logs());
        println!(
            "publish {round} to nginx serving the new upstream: {:?}",
            published.elapsed()
        );
    }

    // nginx refuses this file in `nginx -t`: it never reaches nginx.conf,
    // nginx keeps serving, and the check failure counts against the version.
    let conf = std::fs::read_to_string(dir.path().join("nginx.conf")).unwrap();
    let bad = publish(&app, &["127.0.0.1:bad port".to_owned()]).await;
    let path = format!("/api/v1/configs/edge/versions/{bad}");
    let counted = || async { app.admin(Method::GET, &path, None).await.1["error_count"] == json!(1) };
    assert!(eventually(WAIT, counted).await, "{}", logs());
    assert_eq!(std::fs::read_to_string(dir.path().join("nginx.conf")).unwrap(), conf);
    assert_eq!(served_by(&client, port).await, "two");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("nginx.conf"))
        .collect();
    assert_eq!(names, ["nginx.conf"], "no backup or candidate beside the file");

    // SIGTERM goes to nginx, which stops; the agent exits with its status.
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let mut status = None;
    for _ in 0..(WAIT.as_millis() / 50) {
        status = agent.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", logs());
    assert_eq!(served_by(&client, port).await, "");
    app.stop().await;
}
