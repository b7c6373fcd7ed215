//! The dashboard in a real browser: headless Chromium (Debian's `chromium`;
//! `.ci/run` installs it) loads the page while traffic flows, and the page
//! must show live numbers with no console errors. A screenshot is saved and
//! its path printed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::common;
use crate::common::{Backend, TestApp};

fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium must be installed when CI=true (.ci/run installs it)");
        }
        common::skipped("dashboard", "chromium is not installed");
    }
    found
}

/// Runs headless Chromium on `url` with `extra` flags; returns (stdout, stderr).
fn browse(chromium: &PathBuf, url: &str, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The text of the element with `id` in a dumped DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in\n{dom}"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    &rest[open..open + close]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_live_numbers_in_a_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.released("load", "return p['n'] * 2", json!([{"name": "n", "type": "int"}]))
        .await;
    // An open rollout plan, with a bake long enough to stay at its first step.
    let next = app
        .create_version(
            "load",
            json!({"lang": "starlark", "source": "return p['n'] * 3",
        "params": [{"name": "n", "type": "int"}]}),
        )
        .await;
    let plan = json!({"code_id": next, "steps": [{"percentage": 20, "bake_s": 600}], "force": true});
    let (status, plan) = app
        .admin(reqwest::Method::POST, "/api/v1/configs/load/plans", Some(plan))
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{plan}");
    let running = Arc::new(AtomicBool::new(true));
    let traffic = tokio::spawn({
        let (client, url, running) = (app.client.clone(), app.url("/config/load"), running.clone());
        async move {
            let mut n = 0;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let _ = client.post(&url).json(&json!({"params": {"n": n}})).send().await;
            }
        }
    });
    // The token rides in the fragment, which the browser never sends.
    let url = app.url(&format!("/dashboard#token={}", common::BEARER));
    let (dom, log) = tokio::task::spawn_blocking({
        let (chromium, url) = (chromium.clone(), url.clone());
        move || browse(&chromium, &url, &["--dump-dom"])
    })
    .await
    .unwrap();
    let served: u64 = text_of(&dom, "requests-total").trim().parse().unwrap();
    assert!(served > 0, "no live numbers:\n{dom}");
    assert!(text_of(&dom, "status").starts_with("live"), "{dom}");
    assert!(
        dom.contains(&format!("load → {}", &next[..8])),
        "the open plan is listed:\n{dom}"
    );
    assert!(
        dom.contains("worker 0") || dom.contains("worker 1"),
        "no workers shown:\n{dom}"
    );
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console errors:\n{}", console.join("\n"));

    // Inside the target directory, wherever CARGO_TARGET_DIR puts it.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let flag = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || browse(&chromium, &url, &[&flag, "--window-size=1280,1000"]))
        .await
        .unwrap();
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "dashboard screenshot: {}", shot.display());
    running.store(false, Ordering::Relaxed);
    let _ = traffic.await;
    app.stop().await;
}
