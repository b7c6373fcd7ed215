//! The management console in a real browser: `tests/console/e2e.mjs` drives
//! Debian's Chromium with playwright-core through sign-in, a config's
//! versions (an upload's error at its line), release, gray, rollback, a
//! version broken by reports, the events as sentences, and the live socket
//! idling past several pings, at desktop and phone widths. Screenshots go to
//! `target/tmp/`.
//!
//! playwright-core is found in `VANE_PLAYWRIGHT_DIR`, else in
//! `target/ci-node` (where `.ci/run` installs it); without it, or without
//! node or Chromium, the test says it skipped, and `.ci/run` fails on that.

use std::path::PathBuf;
use std::process::Command;

use crate::common;
use crate::common::{Backend, TestApp};

pub(crate) fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

pub(crate) fn playwright() -> Result<PathBuf, &'static str> {
    let dir = std::env::var_os("VANE_PLAYWRIGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target().join("ci-node"));
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(
            "playwright-core is not installed (npm install --prefix target/ci-node playwright-core, or run .ci/run)",
        );
    }
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("node is not installed");
    }
    if !PathBuf::from("/usr/bin/chromium").exists() {
        return Err("chromium is not installed");
    }
    Ok(dir)
}

/// Runs `tests/console/<script>` under node with `args` and the screenshot
/// folder last; its stdout, after asserting it ran through and printed
/// `<done>: every step passed`.
pub(crate) async fn run_browser(dir: PathBuf, script: &str, done: &str, args: Vec<String>) -> String {
    let shots = target().join("tmp");
    std::fs::create_dir_all(&shots).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/console")
        .join(script);
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .arg(&shots)
            .env("VANE_PLAYWRIGHT_DIR", &dir)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the browser run failed:\n{out}\n{err}");
    assert!(out.contains(&format!("{done}: every step passed")), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_a_config_from_the_browser() {
    let dir = match playwright() {
        Ok(dir) => dir,
        Err(why) => return common::skipped("console browser", why),
    };
    // Pings every second, so the page's idle socket meets several of them
    // (and answers each, as browsers do) within the run.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.push.ping_interval_ms = 1000;
        s.push.pong_timeout_ms = 700;
    })
    .await
    .expect("sqlite always runs");
    let base = format!("http://{}", app.addr);
    run_browser(dir, "e2e.mjs", "console", vec![base, common::BEARER.to_owned()]).await;
    let shots = target().join("tmp");
    for name in [
        "signin",
        "configs",
        "error",
        "compare",
        "reports",
        "tests",
        "config",
        "plan",
        "events",
        "phone",
        "broken",
        "events-desktop",
        "events-phone",
        "refused",
    ] {
        let shot = shots.join(format!("console-{name}.png"));
        assert!(shot.exists(), "no screenshot {}", shot.display());
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "console screenshot: {}", shot.display());
    }
    app.stop().await;
}
