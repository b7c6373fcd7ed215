//! The fetch path end to end, through HTTP, against each store backend.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common;
use crate::common::{Backend, TestApp};

const VERSION_CHECK: &str = "if p[\"version_code\"] > 100:\n    return \"valid\"\nreturn \"invalid\"";

backend_tests!(
    create_version_release_fetch,
    rules_accept_and_reject,
    params_are_checked,
    gray_hits_exactly_the_bucket,
    inactive_config_is_forbidden,
    bad_requests_are_400,
    runaway_loop_hits_the_deadline,
    memory_bomb_fails_and_service_keeps_serving,
    bad_uploads_are_refused,
    killed_worker_is_replaced,
    admin_routes_need_a_token,
);

async fn create_version_release_fetch(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let params = json!([{"name": "version_code", "type": "int"}]);
    let code_id = app.released("greeting", VERSION_CHECK, params).await;

    let (status, body) = app
        .fetch(
            "greeting",
            json!({"meta": {"version": 1, "platform": "iphone", "device_id": "d1"}, "params": {"version_code": 101}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"data": {"result": "\"valid\"", "code_id": code_id}, "message": "success"})
    );

    let (_, body) = app
        .fetch("greeting", json!({"params": {"version_code": 7}, "cached": false}))
        .await;
    assert_eq!(body["data"]["result"], "\"invalid\"");

    let (status, body) = app
        .post_json(
            "/api/v1/configs/greeting/evaluate",
            json!({"params": {"version_code": 500}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"result": "valid", "code_id": code_id, "revision": 2}));

    // Objects come back as JSON text too, for either route.
    app.create_config("shape").await;
    let code = app
        .create_version(
            "shape",
            json!({"lang": "starlark", "source": "return {\"a\": [1, 2.5, True, None], \"p\": p}"}),
        )
        .await;
    app.release("shape", &code).await;
    let (_, body) = app.fetch("shape", json!({"params": {"x": "y"}})).await;
    let text = body["data"]["result"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(text).unwrap(),
        json!({"a": [1, 2.5, true, null], "p": {"x": "y"}})
    );

    // A memoized result (kept on its second computation, served from the
    // memo on the third) comes back byte for byte as the first did, on both
    // routes, with quotes in it escaped once and correctly.
    let same = json!({"params": {"x": "say \"hi\"\n"}});
    let submitted = || async {
        let (_, stats) = app.admin(Method::GET, "/api/v1/stats", None).await;
        stats["pool"]["submitted"].as_u64().unwrap()
    };
    let before = submitted().await;
    let mut bodies = Vec::new();
    for path in ["/config/shape", "/api/v1/configs/shape/evaluate"] {
        for _ in 0..3 {
            let response = app.client.post(app.url(path)).json(&same).send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "application/json");
            bodies.push(response.text().await.unwrap());
        }
    }
    // Six answers, two runs: the rest came from the memo.
    assert_eq!(submitted().await - before, 2);
    assert!(bodies[..3].iter().all(|b| *b == bodies[0]) && bodies[3..].iter().all(|b| *b == bodies[3]));
    let compat: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let native: serde_json::Value = serde_json::from_str(&bodies[3]).unwrap();
    let expected = json!({"a": [1, 2.5, true, null], "p": {"x": "say \"hi\"\n"}});
    let result = compat["data"]["result"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(result).unwrap(), expected);
    assert_eq!(native["result"], expected);
    assert_eq!(
        (native["code_id"].clone(), native["revision"].clone()),
        (json!(code), json!(2))
    );
    app.stop().await;
}

async fn rules_accept_and_reject(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_config("ruled").await;
    let rules = json!([{"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "10"}]]}]);
    let code = app
        .create_version(
            "ruled",
            json!({"lang": "starlark", "source": "return 1", "rules": rules}),
        )
        .await;
    app.release("ruled", &code).await;

    let fetch = |platform: &'static str, version: i64| {
        app.fetch(
            "ruled",
            json!({"meta": {"platform": platform, "version": version, "device_id": "d"}}),
        )
    };
    assert_eq!(fetch("iphone", 10).await.0, StatusCode::OK);
    let (status, body) = fetch("iphone", 9).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("rules"), "{body}");
    assert_eq!(
        fetch("android", 1).await.0,
        StatusCode::OK,
        "a platform without rules is allowed"
    );
    app.stop().await;
}

async fn params_are_checked(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let params = json!([{"name": "version_code", "type": "int"}, {"name": "tags", "type": "array"}]);
    app.released("typed", "return len(p[\"tags\"])", params).await;

    let (status, body) = app
        .fetch("typed", json!({"params": {"version_code": "101", "tags": []}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "parameter `version_code` must be of type int, got string"
    );
    let (status, body) = app.fetch("typed", json!({"params": {"version_code": 1}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "missing parameter `tags`");
    let (status, body) = app
        .fetch("typed", json!({"params": {"version_code": 1, "tags": [1, 2]}}))
        .await;
    assert_eq!((status, body["data"]["result"].clone()), (StatusCode::OK, json!("2")));
    app.stop().await;
}

async fn gray_hits_exactly_the_bucket(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let stable = app.released("rollout", "return \"stable\"", json!([])).await;
    let gray = app
        .create_version("rollout", json!({"lang": "starlark", "source": "return \"gray\""}))
        .await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/configs/rollout/gray",
            Some(json!({"code_id": gray, "percentage": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["gray"], json!({"code_id": gray, "percentage": 30}));

    let (mut hits, mut misses) = (0, 0);
    for i in 0..40 {
        let device = format!("device-{i}");
        let expect_gray = vane::domain::gray::in_gray(&device, &gray, 30);
        let (_, body) = app.fetch("rollout", json!({"meta": {"device_id": device}})).await;
        let (expected_code, expected_result) = if expect_gray {
            (&gray, "\"gray\"")
        } else {
            (&stable, "\"stable\"")
        };
        assert_eq!(body["data"]["code_id"], json!(expected_code), "device {device}");
        assert_eq!(body["data"]["result"], expected_result);
        if expect_gray { hits += 1 } else { misses += 1 }
    }
    assert!(
        hits > 0 && misses > 0,
        "the sample covers both sides: {hits} hits, {misses} misses"
    );
    app.stop().await;
}

async fn inactive_config_is_forbidden(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.released("switch", "return True", json!([])).await;
    assert_eq!(app.fetch("switch", json!({})).await.0, StatusCode::OK);
    let (status, body) = app
        .admin(
            Method::PATCH,
            "/api/v1/configs/switch",
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone(), body["revision"].clone()),
        (StatusCode::OK, json!("inactive"), json!(3))
    );
    let (status, body) = app.fetch("switch", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"data": null, "message": "config `switch` is inactive"}));
    app.stop().await;
}

async fn bad_requests_are_400(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, body) = app.fetch("nope", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "config `nope` does not exist");

    app.released("here", "return 1", json!([])).await;
    let response = app
        .client
        .post(app.url("/config/here"))
        .body("{\"meta\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().starts_with("malformed JSON body"),
        "{body}"
    );
    let (status, body) = app.fetch("here", json!({"meta": {"version": "ten"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // NUL (which PostgreSQL refuses in text and SQLite would store) is
    // refused alike on every backend, before any store sees it, naming where.
    let (status, body) = app.fetch("a%00b", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "nul_character", "{body}");
    let response = app.client.get(app.url("/push/a%00")).send().await.unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        !body.to_string().contains("UTF8"),
        "the store's own words reached the client: {body}"
    );
    let (status, body) = app
        .admin(
            Method::PATCH,
            "/api/v1/configs/here",
            Some(json!({"description": "a\u{0}b"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("body.description"),
        "{body}"
    );
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/here", None).await;
    assert_eq!(config["description"], "", "nothing was stored");
    // An int parameter no 64-bit integer holds says so.
    app.released("wide", "return p['n']", json!([{"name": "n", "type": "int"}]))
        .await;
    let response = app
        .client
        .post(app.url("/api/v1/configs/wide/evaluate"))
        .header("content-type", "application/json")
        .body(r#"{"params": {"n": 99999999999999999999999}}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("outside the 64-bit range"), "{body}");

    let (status, body) = app.post_json("/api/v1/configs/nope/evaluate", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    app.create_config("empty").await;
    let (status, body) = app.fetch("empty", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "config `empty` has no released version");
    app.stop().await;
}

async fn runaway_loop_hits_the_deadline(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sandbox.deadline_ms = 100).await else {
        return;
    };
    app.released("spin", "for i in range(2147483647):\n    pass\nreturn 1", json!([]))
        .await;
    app.released("fine", "return 2", json!([])).await;
    let started = Instant::now();
    let (status, body) = app.fetch("spin", json!({})).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("deadline exceeded"),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(2),
        "stopped near the deadline, took {took:?}"
    );
    for _ in 0..4 {
        assert_eq!(app.fetch("fine", json!({})).await.1["data"]["result"], "2");
    }
    app.stop().await;
}

async fn memory_bomb_fails_and_service_keeps_serving(backend: Backend) {
    // A long deadline, so the memory cap (not the clock) stops the bomb even in a debug build.
    let settings = |s: &mut vane::settings::Settings| {
        s.sandbox.workers = 1;
        s.sandbox.deadline_ms = 5000;
    };
    let Some(app) = TestApp::spawn_with(backend, settings).await else {
        return;
    };
    // Through a parameter, so it goes off at run time, not while compiling.
    app.create_config("bomb").await;
    let source = "return (\"x\" * 1000000) * p[\"n\"]";
    let code = app
        .create_version("bomb", json!({"lang": "starlark", "source": source}))
        .await;
    app.release("bomb", &code).await;
    app.released("fine", "return 2", json!([])).await;
    let (status, body) = app.fetch("bomb", json!({"params": {"n": 2000000}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("memory"), "the error names the limit: {message}");
    // One worker: the next request needs the replacement process.
    let after_crash = Instant::now();
    let (status, body) = app.fetch("fine", json!({})).await;
    assert_eq!((status, body["data"]["result"].clone()), (StatusCode::OK, json!("2")));
    eprintln!("first success after the worker died: {:?}", after_crash.elapsed());
    assert_eq!(
        app.client.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    app.stop().await;
}

async fn bad_uploads_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_config("strict").await;
    let upload = |body| app.admin(Method::POST, "/api/v1/configs/strict/versions", Some(body));

    let (status, body) = upload(json!({"lang": "starlark", "source": "x = 1\ny = = 2\nreturn x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "compile_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 2"), "{body}");

    let rules = json!([{"platform": "web", "rules": [[{"field": "version", "compare": "=>", "value": "1"}]]}]);
    let (status, body) = upload(json!({"lang": "starlark", "source": "return 1", "rules": rules})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown operator `=>`"),
        "{body}"
    );

    let (status, body) =
        upload(json!({"lang": "starlark", "source": "return 1", "params": [{"name": "a", "type": "integer"}]})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an unknown param type names its entry"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("entry 1"), "{body}");

    let (status, body) = app
        .admin(Method::POST, "/api/v1/configs", Some(json!({"id": "strict"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = app
        .admin(Method::POST, "/api/v1/configs", Some(json!({"id": "has space"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .admin(
            Method::POST,
            "/api/v1/configs/strict/release",
            Some(json!({"code_id": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .admin(
            Method::POST,
            "/api/v1/configs/strict/gray",
            Some(json!({"code_id": "x", "percentage": 101})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, versions) = app.admin(Method::GET, "/api/v1/configs/strict/versions", None).await;
    assert_eq!(versions, json!([]), "nothing refused was stored");
    app.stop().await;
}

async fn admin_routes_need_a_token(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let response = app
        .client
        .post(app.url("/api/v1/configs"))
        .json(&json!({"id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(app.url("/api/v1/configs"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The scheme is case-insensitive.
    let response = app
        .client
        .get(app.url("/api/v1/configs"))
        .header("authorization", format!("bearer {}", common::BEARER))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The playground checks the token before it reads the body.
    let response = app
        .client
        .post(app.url("/playground/js"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    app.released("audited", "return 1", json!([])).await;
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/audited/events", None).await;
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["release", "uploaded", "created"], "newest first");
    assert_eq!(events[0]["actor"], "token:tester");
    let (status, body) = common::read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {"store": true, "actors": true, "change_bus": null}})
    );
    app.stop().await;
}

/// Pids of processes started as `exe` (tests run in parallel in one process,
/// so each app that needs its workers found gets its own executable path).
fn worker_pids(exe: &std::path::Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).next() == Some(exe.as_os_str().as_encoded_bytes()) {
            pids.push(entry.file_name().to_string_lossy().parse().unwrap());
        }
    }
    pids
}

async fn killed_worker_is_replaced(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("vane-under-test");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vane"), &exe).unwrap();
    let settings = |s: &mut vane::settings::Settings| {
        s.sandbox.workers = 1;
        s.sandbox.worker_exe = exe.display().to_string();
    };
    let Some(app) = TestApp::spawn_with(backend, settings).await else {
        return;
    };
    let worker_pids = || worker_pids(&exe);
    app.released("steady", "return 3", json!([])).await;
    assert_eq!(app.fetch("steady", json!({})).await.0, StatusCode::OK);
    let before = worker_pids();
    assert!(!before.is_empty(), "a worker process is running");
    for pid in &before {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let killed = Instant::now();
    let dead = |pid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z'))
    };
    assert!(common::eventually(Duration::from_secs(5), || async { before.iter().all(dead) }).await);
    let (status, body) = app.fetch("steady", json!({})).await;
    assert_eq!(
        (status, body["data"]["result"].clone()),
        (StatusCode::OK, json!("3")),
        "{body}"
    );
    eprintln!("first success after killing the worker: {:?}", killed.elapsed());
    let after = worker_pids();
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "the worker was replaced: {before:?} -> {after:?}"
    );
    app.stop().await;
}
