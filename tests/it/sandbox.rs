//! Hostile scripts in both languages and both isolation modes: each gets an
//! error that names what stopped it, nothing takes the server down, and
//! healthy requests in between keep succeeding. The corpus is in
//! tests/hostile/: the first line says which error messages are acceptable
//! (`expect: a|b`), a `params:` line gives the params.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vane::settings::Isolation;

use crate::common;
use crate::common::{BEARER, Backend, TestApp};

backend_tests!(
    javascript_versions_upload_release_and_fetch,
    compile_errors_name_line_and_column
);

async fn javascript_versions_upload_release_and_fetch(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_config("js").await;
    let source = "const tiers = { gold: 3, silver: 2 };\nfunction tier(name) { return tiers[name] || 1 }\n\
                  return { tier: tier(p.level), big: p.version_code > 100, list: [1, 2].map(x => x * p.version_code) }";
    let code_id = app
        .create_version(
            "js",
            json!({"lang": "javascript", "source": source,
                   "params": [{"name": "level", "type": "string"}, {"name": "version_code", "type": "int"}]}),
        )
        .await;
    app.release("js", &code_id).await;
    let params = json!({"level": "gold", "version_code": 101});
    let (status, body) = app.fetch("js", json!({"params": params})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result: Value = serde_json::from_str(body["data"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(result, json!({"tier": 3, "big": true, "list": [101, 202]}));
    assert_eq!(body["data"]["code_id"], json!(code_id));
    let (status, body) = app
        .post_json(
            "/api/v1/configs/js/evaluate",
            json!({"params": {"level": "x", "version_code": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], json!({"tier": 1, "big": false, "list": [1, 2]}));

    // A write to the shared realm by one request is not seen by the next.
    app.create_config("nosy").await;
    let nosy = app
        .create_version(
            "nosy",
            json!({"lang": "javascript", "source": "globalThis.seen = (globalThis.seen || 0) + 1;\n\
                   Array.prototype.map = function () { return 'patched' };\nreturn typeof globalThis.seen"}),
        )
        .await;
    app.release("nosy", &nosy).await;
    for _ in 0..4 {
        let (status, body) = app.fetch("nosy", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["result"], json!("\"undefined\""));
    }
    let (_, body) = app.fetch("js", json!({"params": params})).await;
    let result: Value = serde_json::from_str(body["data"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["list"], json!([101, 202]), "Array.prototype.map stayed patched");
    app.stop().await;
}

async fn compile_errors_name_line_and_column(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_config("bad").await;
    for (lang, source, line, column) in [
        ("javascript", "let a = 1;\nlet b = = 2;\nreturn a", 2, 9),
        ("starlark", "a = 1\nb = = 2\nreturn a", 2, 5),
        (
            "javascript",
            "let x = 1;\nreturn ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((x))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))",
            2,
            72,
        ),
        ("starlark", "x = 1\ny = 'ab' * 100000000", 2, 5),
    ] {
        let (status, body) = app
            .admin(
                Method::POST,
                "/api/v1/configs/bad/versions",
                Some(json!({"lang": lang, "source": source})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{lang} {source}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("line {line}, column {column}")),
            "{lang} {source}: {message}"
        );
    }
    let (_, versions) = app.admin(Method::GET, "/api/v1/configs/bad/versions", None).await;
    assert_eq!(versions.as_array().map(Vec::len), Some(0), "{versions}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn playground_needs_an_admin_token_unless_open() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let body = json!({"code": "return p['a'] + 1", "params": {"a": 1}});
    let anonymous = app.post_json("/playground/starlark", body.clone()).await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED, "{}", anonymous.1);
    let wrong = app
        .client
        .post(app.url("/playground/starlark"))
        .bearer_auth("not-the-token-at-all")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let (status, reply) = playground(&app, "/playground/starlark", "return p['a'] + 1", &json!({"a": 1})).await;
    assert_eq!(
        (status, reply),
        (StatusCode::OK, json!({"data": "2", "message": "success"}))
    );
    let (status, reply) = playground(&app, "/playground/js", "return [p.a, 'x']", &json!({"a": 1})).await;
    assert_eq!(
        (status, reply),
        (StatusCode::OK, json!({"data": "[1,\"x\"]", "message": "success"}))
    );
    let (status, reply) = playground(&app, "/playground/js", "return (", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["message"].as_str().unwrap().contains("line 1"), "{reply}");
    app.stop().await;

    let open = TestApp::spawn_with(Backend::Sqlite, |s| s.playground.open = true)
        .await
        .unwrap();
    let (status, reply) = open.post_json("/playground/js", json!({"code": "return 42"})).await;
    assert_eq!(
        (status, reply),
        (StatusCode::OK, json!({"data": "42", "message": "success"}))
    );
    open.stop().await;
}

struct Hostile {
    name: String,
    route: &'static str,
    code: String,
    params: Value,
    expect: Vec<String>,
}

/// Sources too large to keep as files: long chains of prefix operators, which
/// both parsers handle by recursing once per operator.
fn generated() -> Vec<Hostile> {
    let chain = |name: &str, route, op: &str| Hostile {
        name: name.into(),
        route,
        code: format!("return {}1", op.repeat(300_000)),
        params: json!({}),
        expect: vec!["compile limit".into(), "compiling the source failed".into()],
    };
    vec![
        chain("unary_chain.js", "/playground/js", "!"),
        chain("unary_chain.star", "/playground/starlark", "-"),
    ]
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
        .chain(generated())
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

/// Uploads, releases and fetches `script` as config `id`; returns the status
/// and message of the step that refused it (a compile limit refuses the
/// upload with 422, anything else fails the fetch with 400).
async fn attempt(app: &TestApp, id: &str, script: &Hostile) -> (StatusCode, String) {
    app.create_config(id).await;
    let lang = if script.route.ends_with("js") {
        "javascript"
    } else {
        "starlark"
    };
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/api/v1/configs/{id}/versions"),
            Some(json!({"lang": lang, "source": script.code})),
        )
        .await;
    if status != StatusCode::CREATED {
        return (status, body["error"]["message"].as_str().unwrap_or_default().to_owned());
    }
    app.release(id, body["code_id"].as_str().unwrap()).await;
    let (status, body) = app.fetch(id, json!({"params": script.params})).await;
    (status, body["message"].as_str().unwrap_or_default().to_owned())
}

/// Runs every script in `scripts`, each followed by a healthy fetch, and
/// returns a line per script that did not behave.
async fn run_corpus(app: &TestApp, scripts: &[Hostile]) -> Vec<String> {
    app.released("healthy", "return p['n'] * 2", json!([{"name": "n", "type": "int"}]))
        .await;
    let mut failures = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let (status, message) = attempt(app, &format!("hostile-{i}"), script).await;
        eprintln!("{}: {status} {message}", script.name);
        let refused = status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY;
        if !refused || !script.expect.iter().any(|e| message.contains(e.as_str())) {
            failures.push(format!(
                "{}: {status} {message}, expected one of {:?}",
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

/// No script's expected limit depends on the machine's speed (a script that
/// could meet the deadline first names both limits), but a corpus run kills
/// workers and fills memory: it runs with no other test's server beside it
/// (`TestApp::spawn_alone`), neither slowing the others' deadlines nor
/// slowed by them.
fn hostile_settings(s: &mut vane::settings::Settings) {
    // Generous for debug builds; every script here runs far past it.
    s.sandbox.deadline_ms = 1000;
    s.sandbox.kill_grace_ms = 300;
    s.sandbox.memory_mb = 512;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_corpus_in_worker_processes() {
    let app = TestApp::spawn_alone(hostile_settings).await;
    let scripts = corpus();
    assert!(scripts.len() >= 33, "corpus went missing");
    let failures = run_corpus(&app, &scripts).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stats = app.state().pool.stats();
    assert!(stats.killed >= 1, "some scripts only stop by being killed: {stats:?}");
    app.stop().await;
}

/// In-thread workers cannot be killed, so only scripts an engine stops by
/// itself (deadline checks, limits, compile checks) belong here. Their
/// uploads are still checked in a worker process.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_corpus_in_worker_threads() {
    let app = TestApp::spawn_alone(|s| {
        hostile_settings(s);
        s.sandbox.isolation = Isolation::Thread;
    })
    .await;
    let stoppable = [
        "loop.star",
        "nested_loops.star",
        "repeat_constant.star",
        "deep_output.star",
        "deep_output_huge.star",
        "self_reference.star",
        "shared_output.star",
        "bigint_shift_constant.star",
        "recursion.star",
        "nesting_source.star",
        "huge_output.star",
        "loop.js",
        "for_ever.js",
        "deep_output.js",
        "deep_output_huge.js",
        "self_reference.js",
        "shared_output.js",
        "recursion.js",
        "nesting_source.js",
        "unary_chain.js",
        "unary_chain.star",
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

/// The playground checks what a fetch checks when it is given the version's
/// rules and schema and the request's metadata; each refusal is a 400 that
/// names its part, never a 500.
#[tokio::test(flavor = "multi_thread")]
async fn the_playground_checks_rules_and_schema_as_a_fetch_would() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let rules = json!([{"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "10"}]]}]);
    let schema = json!([{"name": "vip", "type": "bool", "optional": true, "default": false}]);
    let run = |body: Value| {
        let app = &app;
        async move { app.admin(Method::POST, "/playground/starlark", Some(body)).await }
    };
    let base = json!({"code": "return p['vip']", "params": {}, "rules": rules, "params_schema": schema,
        "meta": {"platform": "iphone", "version": 12, "app_version": "2.1.0", "device_id": "d-1"}});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    // Admitted, and the schema's default filled in.
    assert_eq!(
        run(base.clone()).await,
        (StatusCode::OK, json!({"data": "false", "message": "success"}))
    );
    let cases = [
        (
            with("meta", json!({"platform": "iphone", "version": 9})),
            "rules: they do not admit this request (platform `iphone`, version 9",
        ),
        (
            with(
                "rules",
                json!([{"platform": "iphone", "rules": [[{"field": "colour", "compare": "==", "value": "1"}]]}]),
            ),
            "rules: ",
        ),
        (with("rules", json!({"platform": "iphone"})), "malformed JSON body"),
        (
            with(
                "params_schema",
                json!([{"name": "vip", "type": "bool", "default": "yes"}]),
            ),
            "params_schema: ",
        ),
        (
            with("params_schema", json!([{"name": "vip", "type": "bool"}])),
            "params: missing parameter `vip`",
        ),
        (
            with("params", json!({"vip": "yes"})),
            "params: parameter `vip` must be of type bool",
        ),
        (with("meta", json!({"version": "twelve"})), "malformed JSON body"),
    ];
    for (body, expected) in cases {
        let (status, reply) = run(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(expected) || message.contains(expected),
            "{body}: {message}"
        );
    }
    // Without them, the original's request runs as before.
    let plain = json!({"code": "return 1", "params": {}});
    assert_eq!(run(plain).await.0, StatusCode::OK);
    app.stop().await;
}
