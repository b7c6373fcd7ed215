//! Hostile scripts in both languages and both isolation modes: each gets an
//! error that names what stopped it, nothing takes the server down, and
//! healthy requests in between keep succeeding. The corpus is in
//! tests/hostile/: the first line says which error messages are acceptable
//! (`expect: a|b`), a `params:` line gives the params.

mod common;

use std::path::Path;

use common::{BEARER, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vane::settings::Isolation;

struct Hostile {
    name: String,
    route: &'static str,
    code: String,
    params: Value,
    expect: Vec<String>,
}

fn corpus() -> Vec<Hostile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    entries
        .into_iter()
        .map(|path| {
            let code = std::fs::read_to_string(&path).unwrap();
            let (route, comment) = match path.extension().and_then(|e| e.to_str()) {
                Some("star") => ("/playground/starlark", "#"),
                Some("js") => ("/playground/js", "//"),
                other => panic!("unexpected corpus file {path:?} ({other:?})"),
            };
            let directive = |key: &str| {
                code.lines()
                    .find_map(|l| l.strip_prefix(comment)?.trim().strip_prefix(key).map(str::trim))
                    .map(str::to_owned)
            };
            let expect = directive("expect:").unwrap_or_else(|| panic!("{path:?} has no `expect:` line"));
            let params = directive("params:").map_or(json!({}), |p| serde_json::from_str(&p).unwrap());
            Hostile {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                route,
                code,
                params,
                expect: expect.split('|').map(str::to_owned).collect(),
            }
        })
        .collect()
}

async fn playground(app: &TestApp, route: &str, code: &str, params: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(route))
        .bearer_auth(BEARER)
        .json(&json!({"code": code, "params": params}))
        .send()
        .await
        .unwrap();
    common::read(response).await
}

/// Runs every script in `scripts`, each followed by a healthy fetch, and
/// returns a line per script that did not behave.
async fn run_corpus(app: &TestApp, scripts: &[Hostile]) -> Vec<String> {
    app.released("healthy", "return p['n'] * 2", json!([{"name": "n", "type": "int"}]))
        .await;
    let mut failures = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let (status, body) = playground(app, script.route, &script.code, &script.params).await;
        let message = body["message"].as_str().unwrap_or_default();
        eprintln!("{}: {status} {message}", script.name);
        if status != StatusCode::BAD_REQUEST || !script.expect.iter().any(|e| message.contains(e.as_str())) {
            failures.push(format!(
                "{}: {status} {body}, expected one of {:?}",
                script.name, script.expect
            ));
        }
        let (status, body) = app.fetch("healthy", json!({"params": {"n": i}})).await;
        if status != StatusCode::OK || body["data"]["result"] != json!((i * 2).to_string()) {
            failures.push(format!("healthy fetch after {}: {status} {body}", script.name));
        }
    }
    failures
}

fn hostile_settings(s: &mut vane::settings::Settings) {
    // Generous for debug builds; every script here runs far past it.
    s.sandbox.deadline_ms = 1000;
    s.sandbox.kill_grace_ms = 300;
    s.sandbox.memory_mb = 512;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_corpus_in_worker_processes() {
    let app = TestApp::spawn_with(Backend::Sqlite, hostile_settings).await.unwrap();
    let scripts = corpus();
    assert!(scripts.len() >= 30, "corpus went missing");
    let failures = run_corpus(&app, &scripts).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stats = app.state().pool.stats();
    assert!(stats.killed >= 1, "some scripts only stop by being killed: {stats:?}");
    app.stop().await;
}

/// In-thread workers cannot be killed, so only scripts an engine stops by
/// itself (deadline checks, limits, compile checks) belong here.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_corpus_in_worker_threads() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        hostile_settings(s);
        s.sandbox.isolation = Isolation::Thread;
    })
    .await
    .unwrap();
    let stoppable = [
        "loop.star",
        "nested_loops.star",
        "repeat_constant.star",
        "deep_output.star",
        "self_reference.star",
        "shared_output.star",
        "bigint_shift_constant.star",
        "recursion.star",
        "nesting_source.star",
        "huge_output.star",
        "loop.js",
        "for_ever.js",
        "deep_output.js",
        "self_reference.js",
        "shared_output.js",
        "recursion.js",
        "nesting_source.js",
    ];
    let scripts: Vec<_> = corpus()
        .into_iter()
        .filter(|h| stoppable.contains(&h.name.as_str()))
        .collect();
    assert_eq!(scripts.len(), stoppable.len());
    let failures = run_corpus(&app, &scripts).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}
