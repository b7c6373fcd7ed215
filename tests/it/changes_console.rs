//! Four eyes in the console, in a real browser: `tests/console/changes.mjs`
//! holds a release for approval as one publisher and approves it as
//! another, reading each message and mark the operator sees. Skipped (and
//! said so) without node, Chromium or playwright-core; `.ci/run` fails then.

use reqwest::Method;
use serde_json::json;

use crate::common;
use crate::common::{Backend, TestApp};
use crate::console::{playwright, run_browser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_in_the_console_for_a_second_person() {
    let dir = match playwright() {
        Ok(dir) => dir,
        Err(why) => return common::skipped("changes browser", why),
    };
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite always runs");
    app.config_with("app", &[1]).await;
    let v2 = app
        .create_version("app", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    let tests = format!("/api/v1/configs/app/versions/{v2}/tests");
    app.admin(Method::POST, &tests, Some(json!({"name": "two", "expected": 2})))
        .await;
    app.admin(
        Method::PATCH,
        "/api/v1/configs/app",
        Some(json!({"approvals_required": 1})),
    )
    .await;
    let alice = app.make_token("alice", "publisher", &["*"]).await;
    let bob = app.make_token("bob", "publisher", &["*"]).await;
    let base = format!("http://{}", app.addr);
    run_browser(dir, "changes.mjs", "changes", vec![base, alice, bob, v2]).await;
    app.stop().await;
}
