//! The `vane watch` binary as an operator runs it, against a real Vane:
//! SIGHUP reloads `watch.toml` and restarts only what changed (and refuses
//! an invalid file), a wrong secret or an unreachable Vane fails loudly,
//! `--dry-run` writes nothing, several configs feed one template, and exec
//! mode starts, signals, restarts and stops a child.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common;
use crate::common::{Backend, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(20);

/// A running `vane watch`, its log in a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_vane"))
            .args(["watch", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the agent to exit by itself and returns its code.
    async fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..(WAIT.as_millis() / 50) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn becomes(path: &Path, expected: &str) -> bool {
    eventually(WAIT, || async { read(path) == expected }).await
}

/// A config whose released version returns `result`; returns its secret.
async fn config(app: &TestApp, id: &str, result: Value) -> String {
    let secret = app.create_config(id).await["secret"].as_str().unwrap().to_owned();
    publish(app, id, result).await;
    secret
}

async fn publish(app: &TestApp, id: &str, result: Value) {
    let source = json!({"lang": "starlark", "source": format!("return {result}")});
    let code_id = app.create_version(id, source).await;
    let path = format!("/api/v1/configs/{id}/release");
    let (status, body) = app
        .admin(Method::POST, &path, Some(json!({"code_id": code_id, "force": true})))
        .await;
    assert!(status.is_success(), "{body}");
}

/// One `[[resource]]` rendering `{{ v }}` of config `id` into `<dir>/<name>`.
fn resource(app: &TestApp, dir: &Path, name: &str, id: &str, secret: &str, template: &str) -> String {
    format!(
        "[[resource]]\nname = \"{name}\"\nserver = \"{}\"\nconfig_id = \"{id}\"\nsecret = \"{secret}\"\n\
         template = '{template}'\ndestination = \"{}\"\ndebounce_ms = 20\n",
        app.url(""),
        dir.join(name).display()
    )
}

fn run_once(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg("watch")
        .args(args)
        .args(["--config", config.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_watch_toml_restarting_only_what_changed() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut secrets = Vec::new();
    for id in ["kept", "changed", "removed", "added"] {
        secrets.push(config(&app, id, json!({"v": id})).await);
    }
    // A scripted check and reload on the one that stays: the check sees the
    // candidate, the reload runs after the file is in place.
    let journal = d.join("journal");
    let kept = format!(
        "{}check = \"cat {{}} >> {j}\"\nreload = \"echo reloaded $(cat {k}) >> {j}\"\n",
        resource(&app, d, "kept", "kept", &secrets[0], "{{ v }}"),
        j = journal.display(),
        k = d.join("kept").display()
    );
    let changed = resource(&app, d, "changed", "changed", &secrets[1], "{{ v }}");
    let removed = resource(&app, d, "removed", "removed", &secrets[2], "{{ v }}");
    let file = d.join("watch.toml");
    std::fs::write(&file, format!("{kept}{changed}{removed}")).unwrap();
    let agent = Agent::start(&file);
    for name in ["kept", "changed", "removed"] {
        assert!(becomes(&d.join(name), name).await, "{name}: {}", agent.log());
    }

    let changed_now = resource(&app, d, "changed", "changed", &secrets[1], "new {{ v }}");
    let added = resource(&app, d, "added", "added", &secrets[3], "{{ v }}");
    std::fs::write(&file, format!("{kept}{changed_now}{added}")).unwrap();
    agent.signal(libc::SIGHUP);
    assert!(becomes(&d.join("added"), "added").await, "{}", agent.log());
    assert!(becomes(&d.join("changed"), "new changed").await, "{}", agent.log());
    let log = agent.log();
    let stopped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("stopped: removed or changed"))
        .collect();
    assert_eq!(stopped.len(), 2, "{log}");
    assert!(stopped.iter().all(|l| !l.contains("kept")), "{log}");
    // The removed resource's file stays, and is no longer followed.
    publish(&app, "removed", json!({"v": "later"})).await;
    publish(&app, "kept", json!({"v": "kept 2"})).await;
    assert!(becomes(&d.join("kept"), "kept 2").await, "{}", agent.log());
    assert_eq!(read(&d.join("removed")), "removed");
    let journal_says = || async { read(&journal) == "keptreloaded kept\nkept 2reloaded kept 2\n" };
    assert!(eventually(WAIT, journal_says).await, "{:?}", read(&journal));
    // Only a resource with a reload command says it reloaded.
    let log = agent.log();
    let replaced: Vec<&str> = log.lines().filter(|l| l.contains("file replaced")).collect();
    assert!(
        replaced
            .iter()
            .any(|l| l.contains("and reloaded") && l.contains("kept")),
        "{log}"
    );
    assert!(
        replaced
            .iter()
            .filter(|l| !l.contains("kept"))
            .all(|l| !l.contains("reloaded")),
        "{log}"
    );

    // An invalid file changes nothing and says why.
    std::fs::write(&file, format!("{kept}[[resource]]\nname = \"broken\"\n")).unwrap();
    agent.signal(libc::SIGHUP);
    let refused = || async { agent.log().contains("watch.toml not reloaded") };
    assert!(eventually(WAIT, refused).await, "{}", agent.log());
    assert!(
        agent.log().contains("server"),
        "the error names the missing key: {}",
        agent.log()
    );
    publish(&app, "added", json!({"v": "added 2"})).await;
    assert!(becomes(&d.join("added"), "added 2").await, "{}", agent.log());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_fails_once_and_stops_the_watch() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(&app, "app", json!({"v": 1})).await;
    let file = dir.path().join("watch.toml");
    let wrong = "0123456789abcdef0123456789abcdef";
    std::fs::write(&file, resource(&app, dir.path(), "app", "app", wrong, "{{ v }}")).unwrap();

    let once = tokio::task::spawn_blocking({
        let file = file.clone();
        move || run_once(&["--once"], &file)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert_eq!(once.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the subscription"), "{stderr}");
    assert!(!dir.path().join("app").exists());

    let mut agent = Agent::start(&file);
    assert_eq!(agent.exit_code().await, Some(1), "{}", agent.log());
    assert!(
        agent.log().contains("refused the subscription to app"),
        "{}",
        agent.log()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_vane_down_once_says_the_connection_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let file = dir.path().join("watch.toml");
    std::fs::write(
        &file,
        format!(
            "[[resource]]\nserver = \"http://127.0.0.1:{port}\"\nconfig_id = \"app\"\nsecret = \"s\"\n\
             template = \"x\"\ndestination = \"{}\"\n",
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || run_once(&["--once"], &file))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_every_resource_and_writes_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = config(&app, "app", json!({"servers": ["a:1", "b:2"]})).await;
    let flags = config(&app, "flags", json!({"beta": "on"})).await;
    let file = dir.path().join("watch.toml");
    // Two configs in one template, each by name, with tojson and a default.
    let text = format!(
        "[[resource]]\nname = \"both\"\nserver = \"{}\"\ndestination = \"{}\"\n\
         template = '{{{{ up.servers | tojson }}}} {{{{ flags.beta }}}} {{{{ flags.missing | default(\"d\") }}}}'\n\
         [resource.configs.up]\nconfig_id = \"app\"\nsecret = \"{secret}\"\n\
         [resource.configs.flags]\nconfig_id = \"flags\"\nsecret = \"{flags}\"\n",
        app.url(""),
        dir.path().join("both").display()
    );
    std::fs::write(&file, &text).unwrap();
    let out = tokio::task::spawn_blocking({
        let file = file.clone();
        move || run_once(&["--dry-run"], &file)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("resource both ->"), "{stdout}");
    assert!(stdout.contains("[\"a:1\", \"b:2\"] on d"), "{stdout}");
    assert!(!dir.path().join("both").exists());

    // Watching, a publish to either config re-renders the file.
    let agent = Agent::start(&file);
    let both = dir.path().join("both");
    assert!(becomes(&both, "[\"a:1\", \"b:2\"] on d").await, "{}", agent.log());
    publish(&app, "flags", json!({"beta": "off", "missing": "set"})).await;
    assert!(becomes(&both, "[\"a:1\", \"b:2\"] off set").await, "{}", agent.log());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_mode_starts_signals_restarts_and_stops_the_child() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = config(&app, "app", json!({"v": 1})).await;
    let events = d.join("events");
    let child = format!(
        "trap 'echo hup >> {e}' HUP; trap 'echo term >> {e}; exit 7' TERM; echo start $(cat {f}) >> {e}; \
         while true; do sleep 0.05; done",
        e = events.display(),
        f = d.join("app").display()
    );
    let exec = format!(
        "[exec]\ncommand = [\"sh\", \"-c\", \"{}\"]\nkill_timeout_ms = 5000\n",
        child.replace('"', "\\\"")
    );
    let file = d.join("watch.toml");
    std::fs::write(
        &file,
        format!("{exec}{}", resource(&app, d, "app", "app", &secret, "{{ v }}")),
    )
    .unwrap();
    let mut agent = Agent::start(&file);
    let lines = || read(&events).lines().map(str::to_owned).collect::<Vec<_>>();
    // Started only after the file it reads was rendered.
    assert!(
        eventually(WAIT, || async { lines() == ["start 1"] }).await,
        "{:?} {}",
        lines(),
        agent.log()
    );

    publish(&app, "app", json!({"v": 2})).await;
    assert!(
        eventually(WAIT, || async { lines().contains(&"hup".to_owned()) }).await,
        "{:?}",
        lines()
    );

    // Killed from outside: started again.
    let pid = agent
        .log()
        .lines()
        .filter_map(|l| l.split("pid=").nth(1))
        .next_back()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(
        eventually(WAIT, || async { lines().last().map(String::as_str) == Some("start 2") }).await,
        "{:?}",
        lines()
    );

    // SIGTERM reaches the child, and its status is the agent's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.exit_code().await, Some(7), "{}", agent.log());
    assert_eq!(lines().last().map(String::as_str), Some("term"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resources_own_child_follows_only_its_file() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mine = config(&app, "mine", json!({"v": 1})).await;
    let other = config(&app, "other", json!({"v": 1})).await;
    let events = d.join("events");
    let child = format!(
        "trap 'echo hup >> {e}' HUP; trap 'exit 3' TERM; echo start >> {e}; while true; do sleep 0.05; done",
        e = events.display()
    );
    let exec = format!("[resource.exec]\ncommand = [\"sh\", \"-c\", \"{child}\"]\n");
    let text = format!(
        "{}{exec}{}",
        resource(&app, d, "mine", "mine", &mine, "{{ v }}"),
        resource(&app, d, "other", "other", &other, "{{ v }}")
    );
    let file = d.join("watch.toml");
    std::fs::write(&file, text).unwrap();
    let mut agent = Agent::start(&file);
    let lines = || read(&events).lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(
        eventually(WAIT, || async { lines() == ["start"] }).await,
        "{:?} {}",
        lines(),
        agent.log()
    );
    assert!(becomes(&d.join("other"), "1").await);

    publish(&app, "other", json!({"v": 2})).await;
    assert!(becomes(&d.join("other"), "2").await);
    publish(&app, "mine", json!({"v": 2})).await;
    assert!(
        eventually(WAIT, || async { lines() == ["start", "hup"] }).await,
        "{:?}",
        lines()
    );

    agent.signal(libc::SIGTERM);
    assert_eq!(agent.exit_code().await, Some(3), "{}", agent.log());
    app.stop().await;
}
