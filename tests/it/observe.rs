//! Observability: `/metrics` has every family and its numbers move with
//! traffic; `/api/v1/stats` feeds the dashboard; the dashboard page itself is
//! served with its assets inside. The browser test is `dashboard.rs`.

use reqwest::StatusCode;
use serde_json::json;

use crate::common;
use crate::common::{Backend, TestApp};

/// The value of the first sample line that starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_cover_every_family_and_move_with_traffic() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.released("m", "return p['n'] + 1", json!([{"name": "n", "type": "int"}]))
        .await;
    for n in 0..5 {
        assert_eq!(app.fetch("m", json!({"params": {"n": n}})).await.0, StatusCode::OK);
    }
    let first = app.scrape().await;
    for family in [
        "vane_http_requests_total{",
        "vane_http_request_duration_seconds",
        "vane_actor_mailbox_depth{",
        "vane_actor_messages_total{actor=\"config cache\"}",
        "vane_actor_handle_seconds",
        "vane_eval_duration_seconds",
        "vane_pool_queued",
        "vane_pool_running",
        "vane_pool_workers",
        "vane_pool_jobs_total{outcome=\"shed\"}",
        "vane_pool_jobs_total{outcome=\"timed_out\"}",
        "vane_pool_jobs_total{outcome=\"killed\"}",
        "vane_pool_jobs_total{outcome=\"restarted\"}",
        "vane_pool_worker_rss_bytes{",
        "vane_cache_hits_total{layer=\"memory\"}",
        "vane_push_connections",
        "vane_push_subscriptions",
        "vane_push_notices_total",
    ] {
        assert!(first.contains(family), "no {family} in\n{first}");
    }
    let route = "vane_http_requests_total{route=\"/config/{config_id}\",status=\"200\"}";
    let before = sample(&first, route);
    // The recorder is per process and other tests run beside this one, so
    // counters only ever grow by at least what this test did.
    let finished = app.state().pool.stats().finished;
    for n in 10..13 {
        app.fetch("m", json!({"params": {"n": n}})).await;
    }
    let second = app.scrape().await;
    assert!(sample(&second, route) >= before + 3.0);
    assert_eq!(app.state().pool.stats().finished, finished + 3);

    let (status, stats) = app.admin(reqwest::Method::GET, "/api/v1/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(stats["requests"]["total"].as_u64().unwrap() >= 8, "{stats}");
    let actors = stats["actors"].as_array().unwrap();
    let names: Vec<&str> = actors.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "config cache",
            "evaluator pool",
            "push registry",
            "change bus",
            "rollout scheduler"
        ]
    );
    assert!(actors.iter().all(|a| a["alive"] == json!(true)), "{actors:?}");
    assert!(stats["pool"]["worker_list"].as_array().unwrap().len() == 2, "{stats}");

    let page = app.client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("/api/v1/stats") && !html.contains("http://") && !html.contains("https://"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_covers_every_native_route() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let (status, doc) = app.admin(reqwest::Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/configs", &["get", "post"][..]),
        ("/api/v1/configs/{config_id}", &["get", "patch"]),
        ("/api/v1/configs/{config_id}/versions", &["get", "post"]),
        ("/api/v1/configs/{config_id}/versions/{code_id}", &["get"]),
        ("/api/v1/configs/{config_id}/release", &["post"]),
        ("/api/v1/configs/{config_id}/gray", &["post", "delete"]),
        ("/api/v1/configs/{config_id}/rollback", &["post"]),
        (
            "/api/v1/configs/{config_id}/versions/{code_id}/broken",
            &["post", "delete"],
        ),
        ("/api/v1/configs/{config_id}/events", &["get"]),
        ("/api/v1/configs/{config_id}/versions/{code_id}/tests", &["get", "post"]),
        (
            "/api/v1/configs/{config_id}/versions/{code_id}/tests/{test_id}",
            &["delete"],
        ),
        ("/api/v1/configs/{config_id}/versions/{code_id}/tests/run", &["post"]),
        ("/api/v1/configs/{config_id}/reports", &["post"]),
        ("/api/v1/configs/{config_id}/versions/{code_id}/reports", &["get"]),
        (
            "/api/v1/configs/{config_id}/versions/{code_id}/reports/summary",
            &["get"],
        ),
        ("/api/v1/configs/{config_id}/secret/rotate", &["post"]),
        ("/api/v1/configs/{config_id}/evaluate", &["post"]),
        ("/api/v1/subscribe", &["get"]),
        ("/api/v1/stats", &["get"]),
        ("/api/v1/admin/reload", &["post"]),
        ("/api/v1/admin/pool", &["get"]),
        ("/api/v1/admin/pool/pause", &["post"]),
        ("/api/v1/admin/pool/resume", &["post"]),
        ("/api/v1/admin/pool/resize", &["post"]),
    ] {
        for method in methods {
            let operation = paths.get(path).and_then(|p| p.get(*method));
            assert!(operation.is_some(), "{method} {path} missing");
            // Every native route answers refusals in the one error envelope.
            let refused = &operation.unwrap()["responses"]["4XX"]["content"]["application/json"]["schema"];
            assert_eq!(
                refused["properties"]["error"]["properties"]["code"]["type"], "string",
                "{method} {path}: {refused}"
            );
        }
    }
    // Request bodies carry their schemas, with what the server enforces.
    let body = &paths["/api/v1/configs/{config_id}/versions"]["post"]["requestBody"];
    assert!(body.to_string().contains("NewVersionBody"), "{body}");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["LangName"]["enum"],
        json!(["starlark", "javascript"]),
        "{schemas}"
    );
    assert_eq!(
        schemas["StatusName"]["enum"],
        json!(["active", "inactive"]),
        "{schemas}"
    );
    assert_eq!(
        schemas["GrayBody"]["properties"]["percentage"]["maximum"],
        json!(100),
        "{schemas}"
    );
    assert!(
        schemas["NewConfigBody"]["properties"]["id"]["pattern"].is_string(),
        "{schemas}"
    );
    let report = &paths["/api/v1/configs/{config_id}/reports"]["post"]["parameters"];
    assert!(report.to_string().contains("\"Secret\""), "{report}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starlark_results_are_remembered_even_for_cached_false() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.released(
        "pure",
        "return {'double': p['n'] * 2}",
        json!([{"name": "n", "type": "int"}]),
    )
    .await;
    let pool = app.state().pool.clone();
    // The recorder is the process's: other tests' servers count there too.
    let hits = |metrics: &str| {
        let line = "vane_cache_hits_total{layer=\"result\"} ";
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let before = hits(&app.scrape().await);
    let fetch = |n: i64, cached: bool| app.fetch("pure", json!({"params": {"n": n}, "cached": cached}));
    let (status, first) = fetch(21, true).await;
    assert_eq!(status, StatusCode::OK);
    // A result is kept the second time it is computed.
    let (_, second) = fetch(21, true).await;
    assert_eq!(second, first);
    // `submitted` counts a job before its answer exists, so it is exact the
    // moment a fetch returns (`finished` may lag the reply).
    let ran = pool.stats().submitted;
    // Same version, same params: answered without a run, the same bytes.
    let (_, again) = fetch(21, true).await;
    assert_eq!(again, first);
    assert_eq!(pool.stats().submitted, ran);
    // Other params run; `cached: false` does not run known params again:
    // versions never change, so neither does their result.
    fetch(22, true).await;
    assert_eq!(pool.stats().submitted, ran + 1);
    let (_, fresh) = fetch(21, false).await;
    assert_eq!(fresh, first);
    assert_eq!(pool.stats().submitted, ran + 1);
    // Two answered without a run: `again` and `fresh`.
    assert!(hits(&app.scrape().await) >= before + 2.0);
    app.stop().await;
}

/// What the observation routes show (worker pids, traffic, the API's shape)
/// is an operator's: behind the admin token on the public listener, or on
/// `server.admin_listen` and absent from the public one.
#[tokio::test(flavor = "multi_thread")]
async fn observation_routes_need_a_token_or_their_own_listener() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    for path in ["/metrics", "/api/v1/stats", "/api/v1/openapi.json"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let (status, _) = app.admin(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let page = app.client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    for header in ["content-security-policy", "x-frame-options", "x-content-type-options"] {
        assert!(page.headers().contains_key(header), "the dashboard has no {header}");
    }
    app.stop().await;

    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.admin_listen = "127.0.0.1:0".into())
        .await
        .unwrap();
    let admin = app.app().admin_addr.expect("an admin listener");
    for path in ["/metrics", "/api/v1/stats", "/api/v1/openapi.json", "/dashboard"] {
        let public = app
            .client
            .get(app.url(path))
            .bearer_auth(common::BEARER)
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), StatusCode::NOT_FOUND, "{path} is still public");
        let private = app.client.get(format!("http://{admin}{path}")).send().await.unwrap();
        assert_eq!(private.status(), StatusCode::OK, "{path} on the admin listener");
    }
    app.stop().await;
}
