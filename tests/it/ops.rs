//! Operations: settings reload (admin route and SIGHUP), pool control routes,
//! and graceful shutdown, in process and as a real `vane serve` process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common;
use crate::common::ws::native_socket;
use crate::common::{BEARER, Backend, TOKEN, TestApp, eventually};

const SPIN: &str = "while (true) {}";
const BUSY: &str =
    "const end = Date.now() + p.ms;\n[1].forEach(function () { while (Date.now() < end) {} });\nreturn p.ms";
const WAIT: Duration = Duration::from_secs(15);

async fn publish(app: &TestApp, id: &str, source: &str) {
    app.create_config(id).await;
    let code_id = app
        .create_version(id, json!({"lang": "javascript", "source": source}))
        .await;
    app.release(id, &code_id).await;
}

async fn deadline_message(app: &TestApp) -> String {
    let (status, body) = app.fetch("spin", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

async fn pool(app: &TestApp) -> Value {
    let (status, body) = app.admin(Method::GET, "/api/v1/admin/pool", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_changes_pool_size_and_deadline_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vane.toml");
    // Deadlines generous enough for a loaded debug build. Alone: it counts workers and spins them to their deadline.
    let app = TestApp::spawn_alone(|s| s.sandbox.deadline_ms = 2000).await;
    app.app().set_settings_source(file.clone(), true);
    publish(&app, "spin", SPIN).await;
    assert!(deadline_message(&app).await.contains("2000 ms"));
    assert_eq!(pool(&app).await["workers"], json!(2));

    // The test servers' queue wait (common::test_settings) kept, so it is no change.
    std::fs::write(
        &file,
        "[sandbox]\nworkers = 3\nmin_workers = 3\ndeadline_ms = 1500\nqueue_wait_ms = 10000\n\
         [reports]\nbreak_threshold = 4\n",
    )
    .unwrap();
    let (status, plan) = app.admin(Method::POST, "/api/v1/admin/reload", None).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let applied: Vec<&str> = plan["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        applied,
        [
            "reports.break_threshold",
            "sandbox.deadline_ms",
            "sandbox.min_workers",
            "sandbox.workers"
        ]
    );
    let waiting: Vec<&str> = plan["restart_required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert!(
        waiting.contains(&"store.url") && waiting.contains(&"server.listen"),
        "{plan}"
    );
    assert!(
        !plan.to_string().contains("sqlite://"),
        "store URLs are not shown: {plan}"
    );

    // Observably: the deadline of the next job, and three workers.
    assert!(deadline_message(&app).await.contains("1500 ms"));
    let app_ref = &app;
    assert!(
        eventually(WAIT, || async move {
            let status = pool(app_ref).await;
            status["workers"] == json!(3) && status["worker_list"].as_array().unwrap().len() == 3
        })
        .await,
        "the pool did not grow to three workers: {}",
        pool(&app).await
    );

    // An invalid file is refused, naming the key, and changes nothing.
    for bad in [
        "[sandbox]\nworkers = 1\ndeadline_ms = 0\n",
        "[sandbox]\nworkers = 1\nspeed = 11\n",
    ] {
        std::fs::write(&file, bad).unwrap();
        let (status, body) = app.admin(Method::POST, "/api/v1/admin/reload", None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("sandbox"), "{body}");
    }
    assert!(deadline_message(&app).await.contains("1500 ms"));
    assert_eq!(pool(&app).await["workers"], json!(3));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_routes_pause_resume_and_resize() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let status = pool(&app).await;
    assert_eq!(
        (status["gate"].clone(), status["workers"].clone()),
        (json!("open"), json!(2))
    );
    let workers = status["worker_list"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert!(
        workers
            .iter()
            .all(|w| w["pid"].as_u64().is_some() && w["rss_bytes"].as_u64().unwrap() > 0)
    );

    let (_, paused) = app.admin(Method::POST, "/api/v1/admin/pool/pause", None).await;
    assert_eq!(paused["gate"], json!("paused"));
    let (_, resumed) = app.admin(Method::POST, "/api/v1/admin/pool/resume", None).await;
    assert_eq!(resumed["gate"], json!("open"));
    let (status, _) = app
        .admin(Method::POST, "/api/v1/admin/pool/resize", Some(json!({"workers": 0})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, resized) = app
        .admin(Method::POST, "/api/v1/admin/pool/resize", Some(json!({"workers": 1})))
        .await;
    assert_eq!((status, resized["workers"].clone()), (StatusCode::OK, json!(1)));
    let app_ref = &app;
    assert!(
        eventually(WAIT, || async move {
            pool(app_ref).await["worker_list"].as_array().unwrap().len() == 1
        })
        .await
    );
    publish(&app, "busy", BUSY).await;
    let (status, _) = app.fetch("busy", json!({"params": {"ms": 1}})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(pool(&app).await["worker_list"][0]["jobs_done"].as_u64().unwrap() >= 1);
    let anonymous = app.client.get(app.url("/api/v1/admin/pool")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_requests_in_flight_and_closes_sockets_with_1001() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.sandbox.deadline_ms = 5000)
        .await
        .unwrap();
    publish(&app, "busy", BUSY).await;
    let secret = app.create_config("watched").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut socket = native_socket(&app).await;
    common::ws::subscribe(&mut socket, "watched", &secret, None).await;
    let (client, url) = (app.client.clone(), app.url("/config/busy"));
    let in_flight = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&json!({"params": {"ms": 700}}))
            .send()
            .await
            .unwrap();
        common::read(response).await
    });
    let pool = app.state().pool.clone();
    assert!(
        eventually(WAIT, || async { pool.stats().running == 1 }).await,
        "the request never ran"
    );
    app.stop().await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let close = loop {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
}

/// `vane serve` as a real process, configured by a file and environment,
/// its log in a file.
struct Served {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(file: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let path = dir.path().join("vane.toml");
        std::fs::write(&path, file).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vane"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .current_dir(dir.path())
            .env("VANE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("VANE_AUTH__ADMIN_TOKENS", TOKEN)
            .env("VANE_LOG__LEVEL", "info")
            .stdout(Stdio::from(log))
            .spawn()
            .unwrap();
        let served = Self {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let ready = eventually(WAIT, || async {
            client
                .get(format!("{}/readyz", served.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "vane serve did not become ready");
        served
    }

    fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("vane.toml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
    }

    /// Waits until a job is in a worker's hands.
    async fn until_running(&self) {
        let running = eventually(WAIT, || async {
            self.admin(Method::GET, "/api/v1/admin/pool", None).await.1["running"] == json!(1)
        })
        .await;
        assert!(running, "the request never ran: {}", self.log());
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.addr))
            .bearer_auth(BEARER);
        if let Some(body) = body {
            request = request.json(&body);
        }
        common::read(request.send().await.unwrap()).await
    }

    async fn publish_busy(&self) {
        self.admin(Method::POST, "/api/v1/configs", Some(json!({"id": "busy"})))
            .await;
        let (_, version) = self
            .admin(
                Method::POST,
                "/api/v1/configs/busy/versions",
                Some(json!({"lang": "javascript", "source": BUSY})),
            )
            .await;
        let (status, _) = self
            .admin(
                Method::POST,
                "/api/v1/configs/busy/release",
                Some(json!({"code_id": version["code_id"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    fn busy(&self, ms: u64) -> tokio::task::JoinHandle<Option<StatusCode>> {
        let url = format!("{}/config/busy", self.addr);
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&json!({"params": {"ms": ms}}))
                .send()
                .await;
            response.ok().map(|r| r.status())
        })
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVED: &str = "[store]\nurl = \"sqlite://vane.db\"\n[sandbox]\nworkers = 1\ndeadline_ms = 5000\n";

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_sigterm_drains_then_exits_cleanly() {
    let mut served = Served::start(SERVED).await;
    served.publish_busy().await;
    std::fs::write(served.config_path(), SERVED.replace("workers = 1", "workers = 2")).unwrap();
    served.signal(libc::SIGHUP);
    let grown = eventually(WAIT, || async {
        served.admin(Method::GET, "/api/v1/admin/pool", None).await.1["workers"] == json!(2)
    })
    .await;
    assert!(grown, "SIGHUP did not reload the pool size");

    let in_flight = served.busy(800);
    served.until_running().await;
    served.signal(libc::SIGTERM);
    assert_eq!(
        in_flight.await.unwrap(),
        Some(StatusCode::OK),
        "the request in flight was cut"
    );
    let status = served.wait_exit(WAIT).expect("vane serve exited");
    assert_eq!(status.code(), Some(0), "{status:?} {}", served.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    let mut served = Served::start(SERVED).await;
    served.publish_busy().await;
    let in_flight = served.busy(4000);
    served.until_running().await;
    served.signal(libc::SIGTERM);
    // Two signals sent before the process runs arrive as one.
    let draining = eventually(WAIT, || async { served.log().contains("terminated, shutting down") }).await;
    assert!(draining, "{}", served.log());
    let second = Instant::now();
    served.signal(libc::SIGTERM);
    let status = served.wait_exit(Duration::from_secs(2)).expect("exited at once");
    assert!(second.elapsed() < Duration::from_secs(2));
    assert_ne!(status.code(), Some(0), "{status:?}");
    let _ = in_flight.await;
}

/// A client address header with nobody trusted to set it is ignored, and
/// the start-up says so; with its proxy listed, nothing is said.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_address_header_without_trusted_proxies_is_warned_of_at_start() {
    let header = "[server]\nclient_address_header = \"X-Forwarded-For\"\n";
    let served = Served::start(&format!("{header}{SERVED}")).await;
    let warned = eventually(WAIT, || async {
        served.log().contains("server.trusted_proxies is empty")
    })
    .await;
    assert!(warned, "{}", served.log());
    let trusted = Served::start(&format!("{header}trusted_proxies = [\"127.0.0.1\"]\n{SERVED}")).await;
    let started = eventually(WAIT, || async { trusted.log().contains("vane listening") }).await;
    assert!(started, "{}", trusted.log());
    assert!(!trusted.log().contains("trusted_proxies is empty"), "{}", trusted.log());
}
