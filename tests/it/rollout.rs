//! Rollout plans through the API, on every backend: steps raise gray and end
//! with the release, serving exactly the devices each share names and
//! telling subscribers each time; counted reports abort a plan, reports
//! that do not count do not; pause, resume, abort, a manual release, a
//! scheduled publish; bad requests are refused naming the field. Uploads
//! and an operator's pause, resume and abort are in the release log, by
//! whom, with the plan they touched.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vane::domain::gray::in_gray;

use crate::common;
use crate::common::networks::{Net, Route};
use crate::common::ws::{native_socket, subscribe};
use crate::common::{Backend, TestApp, eventually};

backend_tests!(
    steps_serve_their_share_and_end_stable,
    counted_reports_abort_the_plan_and_others_do_not,
    operators_hold_plans_and_bad_plans_are_refused,
    uploads_and_plan_controls_are_logged_by_their_operator
);

const WAIT: Duration = Duration::from_secs(30);

/// A config `app` at "old", a version "new" uploaded; returns the app, the
/// secret and the codes of old and new.
async fn served(backend: Backend) -> Option<(TestApp, String, String, String)> {
    let app = TestApp::spawn_with(backend, |s| {
        // The gate judges; no break by reports gets there first (plans
        // that abort set their own lower floor, `gate_min_sources`).
        s.reports.min_sources = 1_000;
        s.reports.break_ratio = 0.05;
    })
    .await?;
    let secret = app.create_config("app").await["secret"].as_str().unwrap().to_owned();
    let old = app
        .create_version("app", json!({"lang": "starlark", "source": "return 'old'"}))
        .await;
    app.release("app", &old).await;
    let new = app
        .create_version("app", json!({"lang": "starlark", "source": "return 'new'"}))
        .await;
    Some((app, secret, old, new))
}

async fn start(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.admin(Method::POST, "/api/v1/configs/app/plans", Some(body)).await
}

async fn plan(app: &TestApp, id: &str) -> Value {
    app.admin(Method::GET, &format!("/api/v1/configs/app/plans/{id}"), None)
        .await
        .1
}

async fn state_becomes(app: &TestApp, id: &str, state: &str) -> bool {
    eventually(WAIT, || async { plan(app, id).await["state"] == state }).await
}

/// The code id and revision served to `device`.
async fn fetch_as(app: &TestApp, device: &str) -> (String, i64) {
    let body = json!({"meta": {"platform": "ios", "device_id": device}});
    let (status, body) = app.post_json("/api/v1/configs/app/evaluate", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["code_id"].as_str().unwrap().to_owned(),
        body["revision"].as_i64().unwrap(),
    )
}

fn devices() -> Vec<String> {
    (0..200).map(|i| format!("device-{i}")).collect()
}

async fn steps_serve_their_share_and_end_stable(backend: Backend) {
    let Some((app, secret, old, new)) = served(backend).await else {
        return;
    };
    let mut socket = native_socket(&app).await;
    let subscribed = subscribe(&mut socket, "app", &secret, None).await;
    let from = subscribed["revision"].as_i64().unwrap();
    // Counted in /metrics, whose recorder is the process's: other tests add.
    let counted = |metrics: &str, state: &str| -> f64 {
        let name = format!("vane_rollout_moves_total{{state=\"{state}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .map_or(0.0, |v| v.parse().unwrap())
    };
    let before = app.scrape().await;

    let steps =
        json!([{"percentage": 10, "bake_s": 1}, {"percentage": 50, "bake_s": 1}, {"percentage": 100, "bake_s": 1}]);
    let (status, created) = start(&app, json!({"code_id": new, "steps": steps})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // Fetch as 200 devices over and over while the plan runs.
    let mut served: Vec<(String, String, i64)> = Vec::new();
    while plan(&app, &id).await["state"] == "active" {
        for device in devices() {
            let (code_id, revision) = fetch_as(&app, &device).await;
            served.push((device, code_id, revision));
        }
    }
    let done = plan(&app, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(
        (config["release"]["code_id"].as_str(), &config["gray"]),
        (Some(new.as_str()), &Value::Null)
    );

    // One event per step, by `rollout`, with the plan and the step.
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    let moves: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["actor"] == "rollout")
        .collect();
    let kinds: Vec<&str> = moves.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["gray", "gray", "release"]);
    assert!(moves.iter().all(|e| e["detail"]["plan"] == id.as_str()));
    // Exactly the devices each share names were served the new version.
    let mut share_at: BTreeMap<i64, u8> = BTreeMap::new();
    for event in &moves {
        let percentage = event["to"]["gray"]["percentage"].as_u64().map_or(100, |p| p as u8);
        share_at.insert(event["revision"].as_i64().unwrap(), percentage);
    }
    let mut seen = BTreeMap::new();
    for (device, code_id, revision) in &served {
        let share = share_at.range(..=revision).next_back().map_or(0, |(_, p)| *p);
        let expected = if share == 100 || in_gray(device, &new, share) {
            &new
        } else {
            &old
        };
        assert_eq!(code_id, expected, "{device} at revision {revision} (share {share})");
        *seen.entry(share).or_insert(0) += 1;
    }
    assert!(
        seen.contains_key(&10) && seen.contains_key(&50),
        "fetched during each step: {seen:?}"
    );
    let metrics = app.scrape().await;
    assert!(
        counted(&metrics, "active") >= counted(&before, "active") + 3.0,
        "{metrics}"
    );
    assert!(
        counted(&metrics, "completed") >= counted(&before, "completed") + 1.0,
        "{metrics}"
    );
    assert!(metrics.contains("\nvane_rollout_plans{state=\"active\"} "), "{metrics}");
    // Subscribers were told of each move.
    for revision in share_at.keys() {
        assert!(*revision > from);
        common::ws::until_revision(&mut socket, "app", *revision).await;
    }
    app.stop().await;
}

async fn counted_reports_abort_the_plan_and_others_do_not(backend: Backend) {
    let Some((app, secret, _old, new)) = served(backend).await else {
        return;
    };
    let report = |device: String, kind: &'static str| {
        let request = app
            .client
            .post(app.url("/api/v1/configs/app/reports"))
            .header("Secret", secret.clone())
            .json(&json!({"code_id": new, "device_id": device, "kind": kind, "message": "crash"}));
        async move { common::read(request.send().await.unwrap()).await }
    };
    // A long second step, to report in.
    let steps = json!([{"percentage": 10, "bake_s": 1}, {"percentage": 50, "bake_s": 8}]);
    let body = json!({"code_id": new, "steps": steps.clone(), "bake_after_release_s": 1});

    // Reports that cannot count: a render failure, and networks never
    // served (as devices that were), with a floor of one network.
    let mut body = body;
    body["gate_min_sources"] = json!(1);
    let (_, created) = start(&app, body.clone()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let at_50 = || async { plan(&app, &id).await["applied"] == 2 };
    assert!(eventually(WAIT, at_50).await);
    let stranger = Net::new(&app, 200);
    for device in devices().into_iter().take(40) {
        let (code_id, _) = fetch_as(&app, &device).await;
        report(device.clone(), "render").await;
        let (_, receipt) = stranger.report(Route::Native, "app", &secret, &code_id, &device).await;
        assert_eq!(receipt["reason"], "not_served", "{receipt}");
    }
    assert!(state_becomes(&app, &id, "completed").await, "{}", plan(&app, &id).await);

    // Counted reports from networks during step 2 (a floor of five): the
    // plan aborts, gray goes, stable stays.
    let next = app
        .create_version("app", json!({"lang": "starlark", "source": "return 'next'"}))
        .await;
    let body = json!({"code_id": next, "steps": steps, "gate_min_sources": 5});
    let (status, created) = start(&app, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(eventually(WAIT, || async { plan(&app, &id).await["applied"] == 2 }).await);
    let mut reported = 0;
    for (net, device) in Net::many(&app, 1, 60).iter().zip(devices()) {
        let (_, served) = net.fetch(Route::Native, "app", &device).await;
        if served.unwrap().0 == next && reported < 20 {
            let (status, receipt) = net.report(Route::Native, "app", &secret, &next, &device).await;
            assert!(status.is_success() && receipt["counted"] == true, "{receipt}");
            reported += 1;
        }
    }
    assert!(reported >= 5, "{reported} networks were served the new version");
    assert!(state_becomes(&app, &id, "aborted").await, "{}", plan(&app, &id).await);
    let aborted = plan(&app, &id).await;
    let reason = aborted["reason"].as_str().unwrap();
    assert!(
        reason.contains("health gate failed at step 2") && reason.contains("ratio"),
        "{reason}"
    );
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(
        (config["release"]["code_id"].as_str(), &config["gray"]),
        (Some(new.as_str()), &Value::Null)
    );
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    let last = &events[0];
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("gray_removed"), Some("rollout"))
    );
    assert_eq!(last["detail"]["gate"]["counted_sources"], reported);
    assert!(last["detail"]["gate"]["ratio"].as_f64().unwrap() >= 0.05, "{last}");
    app.stop().await;
}

async fn operators_hold_plans_and_bad_plans_are_refused(backend: Backend) {
    let Some((app, _secret, old, new)) = served(backend).await else {
        return;
    };
    let refused = |body: Value, field: &'static str| {
        let app = &app;
        async move {
            let (status, answer) = start(app, body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            let message = answer["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(field), "{field}: {message}");
        }
    };
    let step = |percentage: i64, bake_s: i64| json!({"percentage": percentage, "bake_s": bake_s});
    refused(
        json!({"code_id": new, "steps": [step(50, 1), step(10, 1)]}),
        "steps[1].percentage",
    )
    .await;
    refused(json!({"code_id": new, "steps": [step(120, 1)]}), "steps[0].percentage").await;
    refused(json!({"code_id": new, "steps": [step(10, 0)]}), "steps[0].bake_s").await;
    refused(
        json!({"code_id": new, "steps": [step(10, 1)], "gate_min_sources": 0}),
        "gate_min_sources",
    )
    .await;
    refused(json!({"code_id": new, "steps": [step(10, -3)]}), "steps[0].bake_s").await;
    refused(
        json!({"code_id": new, "steps": [step(10, 1)], "start_at": 1000}),
        "start_at",
    )
    .await;
    let path = "/api/v1/configs/nowhere/plans";
    let (status, _) = app
        .admin(
            Method::POST,
            path,
            Some(json!({"code_id": new, "steps": [step(10, 1)]})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an unknown config is not found, not an invalid plan"
    );
    app.create_config("other").await;
    let foreign = app
        .create_version("other", json!({"lang": "starlark", "source": "return 1"}))
        .await;
    refused(json!({"code_id": foreign, "steps": [step(10, 1)]}), "code_id").await;

    // Stored tests gate the start, unless forced.
    let failing = json!({"name": "says old", "params": {}, "expected": "old"});
    let tests = format!("/api/v1/configs/app/versions/{new}/tests");
    let (status, body) = app.admin(Method::POST, &tests, Some(failing)).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = start(&app, json!({"code_id": new, "steps": [step(10, 1)]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("tests failed"), "{body}");

    // A scheduled publish: one step to 100 % at a time; a second plan is 409.
    let at = vane::domain::model::now_millis() + 1500;
    let scheduled = json!({"code_id": new, "steps": [step(100, 1)], "start_at": at, "force": true});
    let (status, created) = start(&app, scheduled).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = start(&app, json!({"code_id": new, "steps": [step(10, 1)]})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let released = || async {
        let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
        config["release"]["code_id"] == new.as_str()
    };
    assert!(eventually(WAIT, released).await);
    let release_event = app.admin(Method::GET, "/api/v1/configs/app/events", None).await.1[0].clone();
    assert!(release_event["created_at"].as_i64().unwrap() >= at, "{release_event}");
    assert!(state_becomes(&app, &id, "completed").await);

    // Pause holds a plan; resume lets it go on; a release by hand pauses it.
    let (_, created) = start(
        &app,
        json!({"code_id": old, "steps": [step(10, 1), step(50, 60)], "force": true}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = |what: &str| format!("/api/v1/configs/app/plans/{id}/{what}");
    assert!(eventually(WAIT, || async { plan(&app, &id).await["applied"] == 1 }).await);
    let (status, paused) = app.admin(Method::POST, &path("pause"), None).await;
    assert_eq!(
        (status, paused["state"].as_str()),
        (StatusCode::OK, Some("paused")),
        "{paused}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(plan(&app, &id).await["applied"], 1, "a paused plan does not move");
    let (_, resumed) = app.admin(Method::POST, &path("resume"), None).await;
    assert_eq!(resumed["state"], "active");
    assert!(eventually(WAIT, || async { plan(&app, &id).await["applied"] == 2 }).await);
    let (status, _) = app
        .admin(
            Method::POST,
            "/api/v1/configs/app/release",
            Some(json!({"code_id": old})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let held = plan(&app, &id).await;
    assert_eq!(held["state"], "paused", "{held}");
    // An open plan shows the figures its gate would judge now.
    assert_eq!(held["gate_now"]["threshold"], 0.05, "{held}");
    assert_eq!(held["gate_now"]["counted_sources"], 0, "{held}");
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    assert_eq!(events[0]["detail"]["plan_paused"], id.as_str());
    let (status, aborted) = app.admin(Method::POST, &path("abort"), None).await;
    assert_eq!((status, aborted["state"].as_str()), (StatusCode::OK, Some("aborted")));
    let (status, _) = app.admin(Method::POST, &path("resume"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, open) = app.admin(Method::GET, "/api/v1/plans", None).await;
    assert_eq!(open, json!([]));
    app.stop().await;
}

/// A node over a SQLite file that outlives it, on a free port.
async fn node_over(db: &std::path::Path) -> (vane::app::App, String) {
    let mut settings = common::test_settings(format!("sqlite://{}", db.display()));
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    let listener = tokio::net::TcpListener::bind(settings.server.listen).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (vane::app::start(settings, listener).await.unwrap(), base)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_middle_of_a_plan_resumes_it() {
    // Its servers are its own, not `TestApp`s: it holds their place.
    let _place = common::apart::beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vane.db");
    let (node, base) = node_over(&db).await;
    common::admin_at(&base, Method::POST, "/api/v1/configs", Some(json!({"id": "app"}))).await;
    let upload = |n: i64| json!({"lang": "starlark", "source": format!("return {n}")});
    let v1 = common::admin_at(&base, Method::POST, "/api/v1/configs/app/versions", Some(upload(1))).await;
    common::admin_at(
        &base,
        Method::POST,
        "/api/v1/configs/app/release",
        Some(json!({"code_id": v1["code_id"]})),
    )
    .await;
    let v2 = common::admin_at(&base, Method::POST, "/api/v1/configs/app/versions", Some(upload(2))).await;
    let steps =
        json!([{"percentage": 10, "bake_s": 2}, {"percentage": 50, "bake_s": 1}, {"percentage": 100, "bake_s": 1}]);
    let body = json!({"code_id": v2["code_id"], "steps": steps});
    let plan = common::admin_at(&base, Method::POST, "/api/v1/configs/app/plans", Some(body)).await;
    let path = format!("/api/v1/configs/app/plans/{}", plan["id"].as_str().unwrap());
    assert!(
        eventually(WAIT, || async {
            common::admin_at(&base, Method::GET, &path, None).await["applied"] == 1
        })
        .await
    );
    node.shutdown().await;

    // Down past the step's bake: the next node picks the plan up where it was.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (node, base) = node_over(&db).await;
    let done = || async { common::admin_at(&base, Method::GET, &path, None).await["state"] == "completed" };
    assert!(
        eventually(WAIT, done).await,
        "{}",
        common::admin_at(&base, Method::GET, &path, None).await
    );
    let events = common::admin_at(&base, Method::GET, "/api/v1/configs/app/events", None).await;
    let steps: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["actor"] == "rollout")
        .map(|e| e["detail"]["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    node.shutdown().await;
}

async fn events(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

async fn revision(app: &TestApp) -> i64 {
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    config["revision"].as_i64().unwrap()
}

async fn uploads_and_plan_controls_are_logged_by_their_operator(backend: Backend) {
    let Some((app, _secret, old, new)) = served(backend).await else {
        return;
    };
    // Each upload is logged by its uploader, at the revision the config was
    // at (an upload changes nothing clients see).
    let log = events(&app).await;
    for code in [&old, &new] {
        let uploaded = log
            .iter()
            .find(|e| e["kind"] == "uploaded" && e["to"]["code_id"] == json!(code))
            .unwrap_or_else(|| panic!("no upload event for {code}: {log:?}"));
        assert_eq!(uploaded["actor"], "token:tester", "{uploaded}");
        assert_eq!(uploaded["to"]["lang"], "starlark", "{uploaded}");
        assert_eq!(uploaded["from"], Value::Null, "{uploaded}");
    }
    assert_eq!(
        log[0]["kind"], "uploaded",
        "the newest event is the last upload: {log:?}"
    );
    assert_eq!(log[0]["revision"].as_i64(), Some(revision(&app).await));

    let step = |percentage: i64, bake_s: i64| json!({"percentage": percentage, "bake_s": bake_s});
    let (status, created) = start(&app, json!({"code_id": new, "steps": [step(30, 600), step(100, 600)]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(WAIT, || async { plan(&app, &id).await["applied"] == 1 }).await,
        "the first step was not applied"
    );
    let control = |action: &'static str| {
        let app = &app;
        let path = format!("/api/v1/configs/app/plans/{id}/{action}");
        async move {
            let (status, body) = app.admin(Method::POST, &path, Some(json!({}))).await;
            assert_eq!(status, StatusCode::OK, "{action}: {body}");
        }
    };
    let expect = |event: &Value, kind: &str, from: &str, to: &str| {
        assert_eq!(event["kind"], kind, "{event}");
        assert_eq!(event["actor"], "token:tester", "{event}");
        assert_eq!(event["from"]["state"], from, "{event}");
        assert_eq!(event["to"]["state"], to, "{event}");
        assert_eq!(event["detail"]["plan"], json!(id), "{event}");
        assert_eq!(event["detail"]["code_id"], json!(new), "{event}");
        assert_eq!(event["detail"]["step"], 1, "{event}");
        assert_eq!(event["detail"]["of"], 2, "{event}");
        assert_eq!(event["detail"]["percentage"], 30, "{event}");
    };

    control("pause").await;
    let log = events(&app).await;
    expect(&log[0], "plan_paused", "active", "paused");
    assert_eq!(
        log[0]["revision"].as_i64(),
        Some(revision(&app).await),
        "a pause bumped the revision"
    );

    control("resume").await;
    expect(&events(&app).await[0], "plan_resumed", "paused", "active");

    // An abort removes gray (its own event, by the operator) and is logged after it.
    control("abort").await;
    let log = events(&app).await;
    expect(&log[0], "plan_aborted", "active", "aborted");
    assert_eq!(log[0]["detail"]["gray_removed"], true, "{}", log[0]);
    assert_eq!(log[1]["kind"], "gray_removed", "{}", log[1]);
    assert_eq!(log[1]["actor"], "token:tester", "{}", log[1]);
    assert_eq!(
        log[0]["revision"], log[1]["revision"],
        "the abort's entry carries the gray removal's revision"
    );

    // A refused control writes nothing.
    let before = events(&app).await.len();
    let (status, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/configs/app/plans/{id}/pause"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(events(&app).await.len(), before, "a refused pause was logged");
    app.stop().await;
}
