//! `vane watch` end to end against a real Vane: publishing changes the file
//! and runs the reload; a bad render or a failing check leaves the file alone
//! (reported as `render`, which never counts, or `check`, which does); a
//! failed reload puts the backup back and reports nothing; an agent started
//! before its server, or whose server restarts, catches up by itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use vane::agent::{AgentConfig, Backup, Counters, Resource};

use crate::common;
use crate::common::{Backend, TestApp, eventually, test_settings};

const WAIT: Duration = Duration::from_secs(15);
const TEMPLATE: &str = "upstream app {\n{% for s in servers %}  server {{ s }};\n{% endfor %}}\n";

fn upstreams(servers: &[&str]) -> String {
    let lines: String = servers.iter().map(|s| format!("  server {s};\n")).collect();
    format!("upstream app {{\n{lines}}}\n")
}

fn version(result: Value) -> Value {
    json!({"lang": "starlark", "source": format!("return {result}")})
}

fn resource(server: String, secret: &str, dir: &Path, check: Option<String>, reload: Option<String>) -> Resource {
    Resource {
        name: "upstreams".into(),
        server,
        config_id: "upstreams".into(),
        secret: secret.into(),
        token: None,
        meta: Default::default(),
        params: json!({}),
        configs: Default::default(),
        defaults: json!({}),
        template: Some(TEMPLATE.into()),
        template_file: None,
        destination: dir.join("upstreams.conf"),
        mode: "0644".into(),
        user: None,
        group: None,
        backup: Backup::Beside,
        keep_candidate: false,
        check,
        reload,
        reload_timeout_ms: 5000,
        debounce_ms: 50,
        exec: None,
        allowed_env: Vec::new(),
        owner: Default::default(),
    }
}

fn start_agent(resource: Resource) -> (tokio::task::JoinHandle<()>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let config = AgentConfig {
        metrics_listen: None,
        env: Vec::new(),
        exec: None,
        resources: vec![resource],
        registrations: Vec::new(),
    };
    let task = tokio::spawn({
        let counters = counters.clone();
        async move {
            let _ = vane::agent::run("unused-watch.toml".into(), config, counters).await;
        }
    });
    (task, counters)
}

/// A running Vane with an `upstreams` config, a directory for the files,
/// and the config's secret.
async fn served() -> (TestApp, tempfile::TempDir, String) {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let secret = app.create_config("upstreams").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    (app, tempfile::tempdir().unwrap(), secret)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn file_becomes(path: &Path, expected: &str) -> bool {
    eventually(WAIT, || async { read(path) == expected }).await
}

fn reloads(dir: &Path) -> usize {
    read(&dir.join("reloads")).lines().count()
}

async fn publish(app: &TestApp, result: Value) -> String {
    let code_id = app.create_version("upstreams", version(result)).await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/configs/upstreams/release",
            Some(json!({"code_id": code_id, "force": true})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    code_id
}

/// The kinds of a version's reports, and whether each counted.
async fn reports(app: &TestApp, code_id: &str) -> Vec<(String, bool)> {
    let path = format!("/api/v1/configs/upstreams/versions/{code_id}/reports");
    let (_, listed) = app.admin(Method::GET, &path, None).await;
    listed
        .as_array()
        .map(|all| {
            all.iter()
                .map(|r| {
                    (
                        r["kind"].as_str().unwrap_or("?").to_owned(),
                        r["counted"] == json!(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn error_count(app: &TestApp, code_id: &str) -> i64 {
    let path = format!("/api/v1/configs/upstreams/versions/{code_id}");
    app.admin(Method::GET, &path, None).await.1["error_count"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_rewrites_the_file_and_reloads() {
    let (app, dir, secret) = served().await;
    publish(&app, json!({"servers": ["10.0.0.1:80"]})).await;
    let reload = format!("echo reloaded >> {}", dir.path().join("reloads").display());
    let check = Some("grep -q upstream {}".to_owned());
    let conf = dir.path().join("upstreams.conf");
    let (agent, counters) = start_agent(resource(app.url(""), &secret, dir.path(), check, Some(reload)));

    assert!(
        file_becomes(&conf, &upstreams(&["10.0.0.1:80"])).await,
        "{}",
        read(&conf)
    );
    // The reload runs after the file is in place.
    assert!(eventually(WAIT, || async { reloads(dir.path()) == 1 }).await);
    publish(&app, json!({"servers": ["10.0.0.1:80", "10.0.0.2:80"]})).await;
    assert!(
        file_becomes(&conf, &upstreams(&["10.0.0.1:80", "10.0.0.2:80"])).await,
        "{}",
        read(&conf)
    );
    assert!(eventually(WAIT, || async { reloads(dir.path()) == 2 }).await);
    assert_eq!(
        read(&dir.path().join("upstreams.conf.bak")),
        upstreams(&["10.0.0.1:80"])
    );
    // A change that renders the same file writes and reloads nothing.
    publish(&app, json!({"servers": ["10.0.0.1:80", "10.0.0.2:80"], "unused": 1})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reloads(dir.path()), 2);
    assert_eq!(counters.writes.load(std::sync::atomic::Ordering::Relaxed), 2);
    agent.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_render_or_a_failing_check_leaves_the_file_and_is_reported() {
    let (app, dir, secret) = served().await;
    publish(&app, json!({"servers": ["10.0.0.1:80"]})).await;
    let check = Some("! grep -q forbidden {}".to_owned());
    let conf = dir.path().join("upstreams.conf");
    let (agent, counters) = start_agent(resource(app.url(""), &secret, dir.path(), check, None));
    let good = upstreams(&["10.0.0.1:80"]);
    assert!(file_becomes(&conf, &good).await);

    // No `servers` at all: the template refuses to render half a file. The
    // template is the operator's, so the report is shown but never counts.
    let missing = publish(&app, json!({"hosts": ["10.0.0.9:80"]})).await;
    assert!(eventually(WAIT, || async { !reports(&app, &missing).await.is_empty() }).await);
    assert_eq!(reports(&app, &missing).await, [("render".to_owned(), false)]);
    assert_eq!(error_count(&app, &missing).await, 0);
    assert_eq!(read(&conf), good);
    // Rendered, but the consumer's own check refuses it: that counts.
    let refused = publish(&app, json!({"servers": ["forbidden:80"]})).await;
    assert!(eventually(WAIT, || async { error_count(&app, &refused).await == 1 }).await);
    assert_eq!(reports(&app, &refused).await, [("check".to_owned(), true)]);
    assert_eq!(read(&conf), good);
    assert!(!dir.path().join("upstreams.conf.vane-candidate").exists());
    // The same failure again in this run is not reported again.
    let failures = counters.failures.load(std::sync::atomic::Ordering::Relaxed);
    let (status, _) = common::read(
        app.client
            .post(app.url("/update/upstreams"))
            .header("Secret", "update-secret-0123456789abcdef")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status.is_success());
    let failed_again = || async { counters.failures.load(std::sync::atomic::Ordering::Relaxed) > failures };
    assert!(eventually(WAIT, failed_again).await);
    // The agent reports after counting the failure: give a repeat report
    // time to land before asserting there is none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reports(&app, &refused).await.len(), 1);
    agent.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misspelt_template_variable_is_never_counted() {
    let (app, dir, secret) = served().await;
    let code_id = publish(&app, json!({"servers": ["10.0.0.1:80"]})).await;
    let mut misspelt = resource(app.url(""), &secret, dir.path(), None, None);
    misspelt.template = Some("{% for s in sevrers %}server {{ s }};{% endfor %}".into());
    let (agent, _) = start_agent(misspelt);
    assert!(eventually(WAIT, || async { !reports(&app, &code_id).await.is_empty() }).await);
    assert_eq!(reports(&app, &code_id).await, [("render".to_owned(), false)]);
    assert_eq!(error_count(&app, &code_id).await, 0);
    // The message names the template, the line and the missing name.
    let path = format!("/api/v1/configs/upstreams/versions/{code_id}/reports");
    let message = app.admin(Method::GET, &path, None).await.1[0]["message"].to_string();
    assert!(
        message.contains("template resource upstreams, line 1") && message.contains("`sevrers`"),
        "{message}"
    );
    agent.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_reload_puts_the_backup_back_and_blames_nobody() {
    let (app, dir, secret) = served().await;
    publish(&app, json!({"servers": ["good:80"]})).await;
    let conf = dir.path().join("upstreams.conf");
    // The "service" only accepts a file that names a good server.
    let reload = format!("grep -q good {}", conf.display());
    let (agent, counters) = start_agent(resource(app.url(""), &secret, dir.path(), None, Some(reload)));
    let good = upstreams(&["good:80"]);
    assert!(file_becomes(&conf, &good).await);

    let bad = publish(&app, json!({"servers": ["bad:80"]})).await;
    let failed = || async { counters.failures.load(std::sync::atomic::Ordering::Relaxed) >= 1 };
    assert!(eventually(WAIT, failed).await);
    assert_eq!(read(&conf), good, "the previous file is back");
    // A reload fails for the machine's reasons: nothing is reported.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reports(&app, &bad).await.is_empty());
    assert_eq!(counters.reports.load(std::sync::atomic::Ordering::Relaxed), 0);
    agent.abort();
    app.stop().await;
}

/// A server on a fixed port over a SQLite file that outlives it.
async fn server_at(db: &Path, port: u16) -> vane::app::App {
    let mut settings = test_settings(format!("sqlite://{}", db.display()));
    settings.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let listener = TcpListener::bind(settings.server.listen).await.unwrap();
    vane::app::start(settings, listener).await.unwrap()
}

/// A server on a free port over a SQLite file in `dir`, with the
/// `upstreams` config: the server, the file, the port and the secret.
async fn restartable(dir: &Path) -> (vane::app::App, PathBuf, u16, String) {
    let db = dir.join("vane.db");
    let port = common::free_port();
    let app = server_at(&db, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let config = common::admin_at(&base, Method::POST, "/api/v1/configs", Some(json!({"id": "upstreams"}))).await;
    let secret = config["secret"].as_str().unwrap().to_owned();
    (app, db, port, secret)
}

async fn release_at(base: &str, result: Value) {
    let version = common::admin_at(
        base,
        Method::POST,
        "/api/v1/configs/upstreams/versions",
        Some(version(result)),
    )
    .await;
    let body = json!({"code_id": version["code_id"]});
    common::admin_at(base, Method::POST, "/api/v1/configs/upstreams/release", Some(body)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_waits_for_its_server_and_catches_up_after_a_restart() {
    // Its servers are its own, not `TestApp`s: it holds their place.
    let _place = common::apart::beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    // The secret is the config's; make the config first, then stop.
    let (app, db, port, secret) = restartable(dir.path()).await;
    let base = format!("http://127.0.0.1:{port}");
    app.shutdown().await;

    // Server down at start: the existing file is kept, never emptied.
    let conf = dir.path().join("upstreams.conf");
    std::fs::write(&conf, "previous\n").unwrap();
    let (agent, _) = start_agent(resource(base.clone(), &secret, dir.path(), None, None));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(read(&conf), "previous\n");

    let app = server_at(&db, port).await;
    release_at(&base, json!({"servers": ["10.0.0.1:80"]})).await;
    assert!(
        file_becomes(&conf, &upstreams(&["10.0.0.1:80"])).await,
        "{}",
        read(&conf)
    );

    // Restart, and publish before the agent is back: it resumes by revision.
    app.shutdown().await;
    let app = server_at(&db, port).await;
    release_at(&base, json!({"servers": ["10.0.0.3:80"]})).await;
    assert!(
        file_becomes(&conf, &upstreams(&["10.0.0.3:80"])).await,
        "{}",
        read(&conf)
    );
    agent.abort();
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_renders_once_and_refuses_a_bad_file() {
    let (app, dir, secret) = served().await;
    publish(&app, json!({"servers": ["10.0.0.1:80"]})).await;
    std::fs::write(dir.path().join("upstreams.tmpl"), TEMPLATE).unwrap();
    let file = dir.path().join("watch.toml");
    let config = format!(
        "[[resource]]\nserver = \"{}\"\nconfig_id = \"upstreams\"\nsecret = \"{secret}\"\n\
         template_file = \"upstreams.tmpl\"\ndestination = \"{}\"\nmode = \"0600\"\n",
        app.url(""),
        dir.path().join("out.conf").display()
    );
    std::fs::write(&file, &config).unwrap();
    let run = |path: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vane"))
            .args(["watch", "--once", "--config", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = tokio::task::spawn_blocking({
        let file = file.clone();
        move || run(&file)
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(read(&dir.path().join("out.conf")), upstreams(&["10.0.0.1:80"]));

    std::fs::write(&file, config.replace("template_file = \"upstreams.tmpl\"\n", "")).unwrap();
    let bad = run(&file);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs `template` or `template_file`"));
    // A directory is no destination.
    let out = dir.path().join("out.conf").display().to_string();
    std::fs::write(&file, config.replace(&out, &dir.path().display().to_string())).unwrap();
    let bad = run(&file);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("must name a file"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_fetch_is_retried_until_the_file_is_current() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.sandbox.paused_jobs = vane::settings::PausedJobs::Shed
    })
    .await
    .unwrap();
    let secret = app.create_config("upstreams").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    publish(&app, json!({"servers": ["old:80"]})).await;
    let conf = dir.path().join("upstreams.conf");
    let (agent, counters) = start_agent(resource(app.url(""), &secret, dir.path(), None, None));
    assert!(file_becomes(&conf, &upstreams(&["old:80"])).await);

    // The notice arrives while the pool sheds: the fetch fails with 503.
    // (Uploading compiles in the pool, so that comes first.)
    let code_id = app
        .create_version("upstreams", version(json!({"servers": ["new:80"]})))
        .await;
    app.admin(Method::POST, "/api/v1/admin/pool/pause", None).await;
    app.release("upstreams", &code_id).await;
    let failed = || async { counters.failures.load(std::sync::atomic::Ordering::Relaxed) >= 1 };
    assert!(eventually(WAIT, failed).await);
    assert_eq!(read(&conf), upstreams(&["old:80"]));
    // No second notice comes; the agent tries again by itself.
    app.admin(Method::POST, "/api/v1/admin/pool/resume", None).await;
    assert!(file_becomes(&conf, &upstreams(&["new:80"])).await, "{}", read(&conf));
    agent.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_first_reload_is_retried_and_no_file_is_left_unreloaded() {
    let (app, dir, secret) = served().await;
    publish(&app, json!({"servers": ["a:80"]})).await;
    let conf = dir.path().join("upstreams.conf");
    let works = dir.path().join("reload-works");
    let reload = format!("test -e {}", works.display());
    let (agent, counters) = start_agent(resource(app.url(""), &secret, dir.path(), None, Some(reload)));
    let failed = || async { counters.failures.load(std::sync::atomic::Ordering::Relaxed) >= 1 };
    assert!(eventually(WAIT, failed).await);
    // There was no previous file to restore, so the new one is not left in
    // place unreloaded, and no backup of nothing appears.
    assert!(!conf.exists());
    assert!(!dir.path().join("upstreams.conf.bak").exists());
    std::fs::write(&works, "").unwrap();
    assert!(file_becomes(&conf, &upstreams(&["a:80"])).await);
    agent.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reconnect_backoff_starts_over_after_a_subscription() {
    // Its servers are its own, not `TestApp`s: it holds their place.
    let _place = common::apart::beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, db, port, secret) = restartable(dir.path()).await;
    let base = format!("http://127.0.0.1:{port}");
    release_at(&base, json!({"servers": ["1:80"]})).await;
    let conf = dir.path().join("upstreams.conf");
    let (agent, _) = start_agent(resource(base.clone(), &secret, dir.path(), None, None));
    assert!(file_becomes(&conf, &upstreams(&["1:80"])).await);

    // A long outage: the backoff grows past 3 s (0.2, 0.4, 0.8, 1.6, 3.2 s).
    app.shutdown().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let app = server_at(&db, port).await;
    release_at(&base, json!({"servers": ["2:80"]})).await;
    assert!(file_becomes(&conf, &upstreams(&["2:80"])).await);
    // Subscribed again, so a short blip is back to the first backoff.
    app.shutdown().await;
    let app = server_at(&db, port).await;
    release_at(&base, json!({"servers": ["3:80"]})).await;
    let quick = eventually(Duration::from_millis(2500), || async {
        read(&conf) == upstreams(&["3:80"])
    })
    .await;
    assert!(quick, "the agent waited out the old backoff: {}", read(&conf));
    agent.abort();
    app.shutdown().await;
}
