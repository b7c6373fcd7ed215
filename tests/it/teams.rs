//! People, roles and approvals: every operator route's role, tokens made at
//! run time, and four eyes on every backend.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp};

backend_tests!(
    tokens_live_and_die,
    four_eyes_apply_once,
    a_stale_request_applies_nothing
);

const ROLES: [&str; 5] = ["viewer", "registrar", "editor", "publisher", "admin"];

/// Fills a route's parameters: the config `app`, its version, and ids that
/// do not exist for the rest (a 404 after the guard is fine here).
fn concrete(path: &str, code_id: &str) -> String {
    path.replace("{config_id}", "app")
        .replace("{code_id}", code_id)
        .replace("{test_id}", "nope")
        .replace("{plan_id}", "nope")
        .replace("{change_id}", "nope")
        .replace("{name}", "nope")
        .replace("{service}", "app")
        .replace("{instance_id}", "nope")
}

/// Every route the OpenAPI document gives a role, walked with a token of
/// each role: the roles below it are refused with `role_required`, the ones
/// at or above it pass the guard. A token whose grant covers other configs
/// is refused on the config's routes. Bodies are ones every route refuses
/// after the guard (an unknown field), so nothing much is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_guarded_by_the_role_it_states() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let code_id = app.released("app", "return 1", json!([])).await;
    let mut tokens = Vec::new();
    for role in ROLES {
        tokens.push((role, app.make_token(&format!("t-{role}"), role, &["*"]).await));
    }
    let elsewhere = app.make_token("elsewhere", "admin", &["other-*"]).await;
    let (_, doc) = app.admin(Method::GET, "/api/v1/openapi.json", None).await;
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation.get("security").is_some();
            let Some(role) = operation.get("x-vane-role").and_then(Value::as_str) else {
                assert!(!secured, "{method} {path} takes a token but states no role");
                continue;
            };
            let needed = ROLES.iter().position(|r| *r == role).unwrap();
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = concrete(path, &code_id);
            let body =
                matches!(method, Method::POST | Method::PATCH | Method::DELETE).then(|| json!({"__probe": true}));
            for (i, (held, token)) in tokens.iter().enumerate() {
                let (status, answer) = app.as_token(token, method.clone(), &url, body.clone()).await;
                if i < needed {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{held} on {method} {path}: {answer}");
                    assert_eq!(answer["error"]["code"], "role_required", "{held} on {method} {path}");
                    assert!(
                        answer["error"]["message"].as_str().unwrap().contains(role),
                        "{held} on {method} {path}: {answer}"
                    );
                } else {
                    assert_ne!(status, StatusCode::UNAUTHORIZED, "{held} on {method} {path}: {answer}");
                    assert_ne!(
                        answer["error"]["code"], "role_required",
                        "{held} on {method} {path}: {answer}"
                    );
                }
            }
            if path.contains("{config_id}") || path.contains("{service}") {
                let (status, answer) = app.as_token(&elsewhere, method.clone(), &url, body.clone()).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "elsewhere on {method} {path}: {answer}");
            }
            walked += 1;
        }
    }
    assert!(walked >= 40, "only {walked} routes state a role");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_only_its_configs_and_never_a_secret() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.released("app-home", "return 1", json!([])).await;
    let banner = app.released("banner", "return 2", json!([])).await;
    let viewer = app.make_token("support", "viewer", &["app-*"]).await;
    let editor = app.make_token("dev", "editor", &["app-*"]).await;
    let (status, listed) = app.as_token(&viewer, Method::GET, "/api/v1/configs", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app-home"]);
    assert_eq!(listed[0]["secret"], "", "{listed}");
    let (_, one) = app
        .as_token(&viewer, Method::GET, "/api/v1/configs/app-home", None)
        .await;
    assert_eq!(one["secret"], "");
    let (status, _) = app.as_token(&viewer, Method::GET, "/api/v1/configs/banner", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An editor needs the secret to build apps: it sees it.
    let (_, one) = app
        .as_token(&editor, Method::GET, "/api/v1/configs/app-home", None)
        .await;
    assert_eq!(one["secret"].as_str().unwrap().len(), 64, "{one}");
    // Creating a config outside the grant is refused; inside, it works.
    let (status, answer) = app
        .as_token(
            &editor,
            Method::POST,
            "/api/v1/configs",
            Some(json!({"id": "banner-2"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("role_required"))
    );
    let (status, made) = app
        .as_token(&editor, Method::POST, "/api/v1/configs", Some(json!({"id": "app-new"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app-new/events", None).await;
    assert_eq!(events[0]["actor"], "token:dev", "{events}");
    let (_, me) = app.as_token(&viewer, Method::GET, "/api/v1/me", None).await;
    assert_eq!(
        me,
        json!({"who": "token:support", "grants": [{"role": "viewer", "configs": ["app-*"]}]})
    );
    // A report summary says who marked the version broken.
    let ops = app.make_token("ops", "publisher", &["*"]).await;
    let broken = format!("/api/v1/configs/banner/versions/{banner}/broken");
    let (status, _) = app.as_token(&ops, Method::POST, &broken, None).await;
    assert_eq!(status, StatusCode::OK);
    let summary = format!("/api/v1/configs/banner/versions/{banner}/reports/summary");
    let (_, health) = app.admin(Method::GET, &summary, None).await;
    assert_eq!(health["broken_by"], "token:ops", "{health}");
    app.stop().await;
}

async fn tokens_live_and_die(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_config("app").await;
    let token = app.make_token("ci", "editor", &["app"]).await;
    assert!(token.starts_with("vane_") && token.len() >= 5 + 32, "{token}");
    let (status, _) = app.as_token(&token, Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = app.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        !listed.to_string().contains(&token),
        "a listing shows a token's value: {listed}"
    );
    assert_eq!(listed[0]["created_by"], "token:tester");

    // Bad input: a clear 4xx naming the field, and nothing stored.
    let far = vane::domain::model::now_millis() + 3_600_000;
    for (body, status, names) in [
        (json!({"name": "x", "role": "owner", "configs": ["*"]}), 422, "role"),
        (json!({"name": "", "role": "viewer", "configs": ["*"]}), 422, "name"),
        (json!({"name": "a b", "role": "viewer", "configs": ["*"]}), 422, "name"),
        (json!({"name": "x", "role": "viewer", "configs": []}), 422, "configs"),
        (
            json!({"name": "x", "role": "viewer", "configs": ["a*b"]}),
            422,
            "configs",
        ),
        (
            json!({"name": "x", "role": "viewer", "configs": ["a", "a"]}),
            422,
            "configs",
        ),
        (
            json!({"name": "x", "role": "viewer", "configs": ["*"], "expires_at": 1}),
            422,
            "expires_at",
        ),
        (json!({"name": "ci", "role": "viewer", "configs": ["*"]}), 409, "ci"),
        (json!({"name": "CI", "role": "viewer", "configs": ["*"]}), 409, "ci"),
        (
            json!({"name": "Tester", "role": "viewer", "configs": ["*"]}),
            409,
            "tester",
        ),
        (json!({"name": "..", "role": "viewer", "configs": ["*"]}), 422, "name"),
        (
            json!({"name": "x", "role": "viewer", "configs": ["*"], "expires_at": 1.5}),
            400,
            "whole number",
        ),
        (
            json!({"name": "tester", "role": "viewer", "configs": ["*"]}),
            409,
            "tester",
        ),
        (
            json!({"name": "x", "role": "viewer", "configs": ["*"], "expires_at": far, "extra": 1}),
            400,
            "extra",
        ),
    ] {
        let (got, answer) = app.admin(Method::POST, "/api/v1/tokens", Some(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(names),
            "{body}: {answer}"
        );
    }
    let (_, listed) = app.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // Only an admin over every config manages tokens.
    let (status, _) = app
        .as_token(
            &token,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "y", "role": "admin", "configs": ["*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An expired token is refused, saying so.
    let soon = vane::domain::model::now_millis() + 1_000;
    let body = json!({"name": "brief", "role": "viewer", "configs": ["*"], "expires_at": soon});
    let (_, made) = app.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
    let brief = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["expires_at"], soon);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, answer) = app.as_token(&brief, Method::GET, "/api/v1/configs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("expired"),
        "{answer}"
    );

    // A deleted token is refused at once; a guessed one never worked.
    let (status, _) = app.admin(Method::DELETE, "/api/v1/tokens/ci", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.as_token(&token, Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.admin(Method::DELETE, "/api/v1/tokens/ci", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = app.admin(Method::DELETE, "/api/v1/tokens/tester", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auth.admin_tokens"),
        "{answer}"
    );
    let guessed = format!("vane_{}", "0".repeat(64));
    let (status, _) = app.as_token(&guessed, Method::GET, "/api/v1/configs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// A second version of `app` (`return 2`), publishers `alice` and `bob`,
/// and one approval required on `app`: the version and their tokens.
async fn two_publishers(app: &TestApp) -> (String, String, String) {
    let v2 = app
        .create_version("app", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    let alice = app.make_token("alice", "publisher", &["*"]).await;
    let bob = app.make_token("bob", "publisher", &["*"]).await;
    let body = json!({"approvals_required": 1});
    let (status, _) = app.admin(Method::PATCH, "/api/v1/configs/app", Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    (v2, alice, bob)
}

/// Asks for a change as `token`; the answer.
async fn ask(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.as_token(token, method, path, body).await
}

async fn four_eyes_apply_once(backend: Backend) {
    // Two nodes over one database (no Redis: they poll it for changes);
    // SQLite is one node's store, so there the two approvals race on one.
    let Some(mut nodes) = (match backend {
        Backend::Sqlite => TestApp::spawn(backend).await.map(|app| vec![app]),
        _ => TestApp::cluster_over_on(backend, 2, None, |_| {}).await,
    }) else {
        return;
    };
    let other = (nodes.len() > 1).then(|| nodes.pop().unwrap());
    let app = nodes.pop().unwrap();
    let second = other.as_ref().unwrap_or(&app);
    let (_, codes) = app.config_with("app", &[1]).await;
    let v2 = app
        .create_version("app", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    let alice = app.make_token("alice", "publisher", &["*"]).await;
    let bob = app.make_token("bob", "publisher", &["*"]).await;
    let carol = app.make_token("carol", "publisher", &["app"]).await;
    let viewer = app.make_token("vic", "viewer", &["*"]).await;
    // Only an admin sets approvals.
    let (status, _) = ask(
        &app,
        &alice,
        Method::PATCH,
        "/api/v1/configs/app",
        Some(json!({"approvals_required": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, config) = app
        .admin(
            Method::PATCH,
            "/api/v1/configs/app",
            Some(json!({"approvals_required": 2})),
        )
        .await;
    assert_eq!(
        (status, config["approvals_required"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, _) = app
        .admin(
            Method::PATCH,
            "/api/v1/configs/app",
            Some(json!({"approvals_required": 11})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A release is held: 202, nothing changed.
    let (status, held) = ask(
        &app,
        &alice,
        Method::POST,
        "/api/v1/configs/app/release",
        Some(json!({"code_id": v2})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let request = held["change_request"].clone();
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (request["state"].clone(), request["author"].clone()),
        (json!("open"), json!("token:alice"))
    );
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(config["release"]["code_id"], codes[0].as_str());

    // What it would do: the source diff and the tests run now.
    let (status, details) = ask(&app, &viewer, Method::GET, &format!("/api/v1/changes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    let diff = details["diff"]["source"].as_str().unwrap();
    assert!(diff.contains("-return 1") && diff.contains("+return 2"), "{diff}");
    assert_eq!(details["tests"]["failed"], 0, "{details}");

    // Four eyes: not the author, not twice, not a viewer.
    let approve = format!("/api/v1/changes/{id}/approve");
    let (status, answer) = ask(&app, &alice, Method::POST, &approve, None).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("four_eyes"))
    );
    let (status, _) = ask(&app, &viewer, Method::POST, &approve, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = ask(&app, &bob, Method::POST, &approve, None).await;
    assert_eq!(
        (status, answer["change_request"]["state"].clone()),
        (StatusCode::OK, json!("open")),
        "{answer}"
    );
    let (status, answer) = ask(&app, &bob, Method::POST, &approve, None).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("four_eyes"))
    );

    // The last approval applies it; two at once, on two nodes, apply it once.
    let dave = app.make_token("dave", "publisher", &["*"]).await;
    let (one, two) = tokio::join!(
        ask(&app, &carol, Method::POST, &approve, None),
        ask(second, &dave, Method::POST, &approve, None),
    );
    let statuses = [one.0, two.0];
    assert!(
        statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::CONFLICT),
        "{one:?} {two:?}"
    );
    let applied = if one.0 == StatusCode::OK { one.1 } else { two.1 };
    assert_eq!(applied["change_request"]["state"], "applied", "{applied}");
    assert_eq!(applied["config"]["release"]["code_id"], v2.as_str());
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    let releases: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "release")
        .collect();
    assert_eq!(releases.len(), 2, "applied once: {events}");
    assert_eq!(releases[0]["actor"], "token:alice");
    assert_eq!(releases[0]["detail"]["change_request"], id.as_str());
    assert_eq!(releases[0]["detail"]["approved_by"].as_array().unwrap().len(), 2);
    let (_, applied) = app.admin(Method::GET, "/api/v1/changes?state=applied", None).await;
    assert_eq!(applied.as_array().unwrap().len(), 1, "{applied}");

    // Reject needs a reason; cancel is the author's.
    let (_, held) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/rollback", None).await;
    let id = held["change_request"]["id"].as_str().unwrap().to_owned();
    let (status, _) = ask(&app, &bob, Method::POST, &format!("/api/v1/changes/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = ask(
        &app,
        &bob,
        Method::POST,
        &format!("/api/v1/changes/{id}/reject"),
        Some(json!({"reason": " "})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, rejected) = ask(
        &app,
        &bob,
        Method::POST,
        &format!("/api/v1/changes/{id}/reject"),
        Some(json!({"reason": "not now"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["change_request"]["state"], "rejected");
    let (status, _) = ask(
        &app,
        &carol,
        Method::POST,
        &format!("/api/v1/changes/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Break glass: an admin with a reason applies at once, recorded.
    let (status, _) = ask(
        &app,
        &alice,
        Method::POST,
        "/api/v1/configs/app/rollback",
        Some(json!({"break_glass": true, "reason": "fire"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a publisher cannot break glass");
    let (status, _) = app
        .admin(
            Method::POST,
            "/api/v1/configs/app/rollback",
            Some(json!({"break_glass": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, config) = app
        .admin(
            Method::POST,
            "/api/v1/configs/app/rollback",
            Some(json!({"break_glass": true, "reason": "fire"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["release"]["code_id"], codes[0].as_str());
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    assert_eq!(events[0]["kind"], "rollback");
    assert_eq!(events[0]["detail"]["break_glass"], true, "{}", events[0]);
    assert_eq!(events[0]["detail"]["reason"], "fire");

    // A plan start is held too; approved, it starts with its own event.
    app.admin(
        Method::PATCH,
        "/api/v1/configs/app",
        Some(json!({"approvals_required": 1})),
    )
    .await;
    let plan = json!({"code_id": v2, "steps": [{"percentage": 50, "bake_s": 60}]});
    let (status, held) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/plans", Some(plan)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["change_request"]["id"].as_str().unwrap().to_owned();
    let (status, applied) = ask(&app, &bob, Method::POST, &format!("/api/v1/changes/{id}/approve"), None).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["plan"]["code_id"], v2.as_str(), "{applied}");
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    assert!(
        events.as_array().unwrap().iter().any(|e| e["kind"] == "plan_started"),
        "{events}"
    );

    // Automatic moves need no approval: a break by reports still rolls back
    // (covered by the health tests on configs without approvals; here the
    // setting is on and the store's break path is the same).
    // The first node owns the database: stopped last.
    if let Some(other) = other {
        other.stop().await;
    }
    app.stop().await;
}

async fn a_stale_request_applies_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, codes) = app.config_with("app", &[1, 2]).await;
    let alice = app.make_token("alice", "publisher", &["*"]).await;
    let bob = app.make_token("bob", "publisher", &["*"]).await;
    app.admin(
        Method::PATCH,
        "/api/v1/configs/app",
        Some(json!({"approvals_required": 1})),
    )
    .await;
    let (status, held) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/rollback", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["change_request"]["id"].as_str().unwrap().to_owned();
    // The config moves (a status change, approved) before the rollback is.
    let (_, status_held) = ask(
        &app,
        &alice,
        Method::PATCH,
        "/api/v1/configs/app",
        Some(json!({"status": "inactive"})),
    )
    .await;
    let other = status_held["change_request"]["id"].as_str().unwrap().to_owned();
    let (status, _) = ask(
        &app,
        &bob,
        Method::POST,
        &format!("/api/v1/changes/{other}/approve"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, stale) = app
        .admin(Method::GET, "/api/v1/changes?state=stale&config_id=app", None)
        .await;
    assert_eq!(stale[0]["id"], id.as_str(), "{stale}");
    let (status, answer) = ask(&app, &bob, Method::POST, &format!("/api/v1/changes/{id}/approve"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("stale"),
        "{answer}"
    );
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(
        config["release"]["code_id"],
        codes[1].as_str(),
        "a stale rollback applied"
    );
    assert_eq!(config["status"], "inactive");
    let (status, answer) = app.admin(Method::GET, "/api/v1/changes?state=pending", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    app.stop().await;
}

/// Two nodes over one database: a token deleted on one is refused by the
/// other at once (tokens are looked up on every request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_deleted_on_one_node_is_refused_by_the_other() {
    let Some(nodes) = TestApp::cluster_over(2, None, |_| {}).await else {
        return;
    };
    let token = nodes[0].make_token("roamer", "viewer", &["*"]).await;
    let (status, _) = nodes[1].as_token(&token, Method::GET, "/api/v1/configs", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = nodes[0].admin(Method::DELETE, "/api/v1/tokens/roamer", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = nodes[1].as_token(&token, Method::GET, "/api/v1/configs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for node in nodes {
        node.stop().await;
    }
}

/// The gate runs again at the last approval: a test added after the request
/// was opened that fails holds the change back, and the request stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_approval_runs_the_test_gate_again() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.config_with("app", &[1]).await;
    let (v2, alice, bob) = two_publishers(&app).await;
    let (status, held) = ask(
        &app,
        &alice,
        Method::POST,
        "/api/v1/configs/app/release",
        Some(json!({"code_id": v2})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["change_request"]["id"].as_str().unwrap().to_owned();
    let tests = format!("/api/v1/configs/app/versions/{v2}/tests");
    let (status, _) = app
        .admin(Method::POST, &tests, Some(json!({"name": "wants 3", "expected": 3})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = ask(&app, &bob, Method::POST, &format!("/api/v1/changes/{id}/approve"), None).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("tests_failed")),
        "{answer}"
    );
    let (_, open) = app.admin(Method::GET, "/api/v1/changes?state=open", None).await;
    assert_eq!(open[0]["id"], id.as_str());
    assert_eq!(open[0]["approvals"], json!([]), "a refused approval is not recorded");
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_ne!(config["release"]["code_id"], v2.as_str());
    app.stop().await;
}

/// Automatic moves need no approval, on a config that requires one: the
/// steps of a plan whose start was approved, and a break by reports with
/// its rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_moves_need_no_approval() {
    use crate::common::networks::{Net, Route};
    let tweak = |s: &mut vane::settings::Settings| {
        s.reports.rule = "count".into();
        s.reports.break_threshold = 3;
    };
    let app = TestApp::spawn_with(Backend::Sqlite, tweak).await.unwrap();
    let (secret, codes) = app.config_with("app", &[1]).await;
    let (v2, alice, bob) = two_publishers(&app).await;
    let plan = json!({"code_id": v2, "steps": [{"percentage": 50, "bake_s": 1}], "force": true});
    let (status, held) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/plans", Some(plan)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["change_request"]["id"].as_str().unwrap().to_owned();
    let (status, _) = ask(&app, &bob, Method::POST, &format!("/api/v1/changes/{id}/approve"), None).await;
    assert_eq!(status, StatusCode::OK);
    // The plan's gray step and its release apply with no one approving them.
    let released = crate::common::eventually(Duration::from_secs(20), || async {
        let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
        config["release"]["code_id"] == v2.as_str()
    })
    .await;
    assert!(released, "the approved plan's steps did not apply");
    let (_, changes) = app.admin(Method::GET, "/api/v1/changes?state=open", None).await;
    assert_eq!(changes, json!([]), "a plan's step waited for approval");
    // A break by reports rolls the release back at once.
    let machine = Net::new(&app, 0);
    for _ in 0..3 {
        machine.fetch(Route::Original, "app", "phone").await;
        let (status, _) = machine.report(Route::Original, "app", &secret, &v2, "").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(config["release"]["code_id"], codes[0].as_str(), "{config}");
    let (_, changes) = app.admin(Method::GET, "/api/v1/changes?state=open", None).await;
    assert_eq!(changes, json!([]));
    app.stop().await;
}

/// What a first review found: a raised bar holds open requests; a change
/// already in force, or one whose tests fail, opens no request; a reason
/// goes with break glass only and is bounded; a held status change goes on
/// its own; rollback's optional body may be `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_open_only_for_changes_that_could_apply() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let (_, codes) = app.config_with("app", &[1]).await;
    let (v2, alice, bob) = two_publishers(&app).await;
    let carol = app.make_token("carol", "publisher", &["*"]).await;
    let release = |code: &str| Some(json!({ "code_id": code }));
    // In force already: answered as without approvals, no request.
    let (status, config) = ask(
        &app,
        &alice,
        Method::POST,
        "/api/v1/configs/app/release",
        release(&codes[0]),
    )
    .await;
    assert_eq!(
        (status, config["release"]["code_id"].clone()),
        (StatusCode::OK, json!(codes[0]))
    );
    let (status, _) = ask(
        &app,
        &alice,
        Method::DELETE,
        "/api/v1/configs/app/gray",
        Some(json!(null)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "no gray to remove, and a null body is no body");
    let (_, open) = app.admin(Method::GET, "/api/v1/changes", None).await;
    assert_eq!(open, json!([]));
    // Failing tests are refused when asked, as without approvals.
    let v3 = app
        .create_version("app", json!({"lang": "starlark", "source": "return 3"}))
        .await;
    let tests = format!("/api/v1/configs/app/versions/{v3}/tests");
    app.admin(Method::POST, &tests, Some(json!({"expected": 4}))).await;
    let (status, answer) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/release", release(&v3)).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("tests_failed"))
    );
    // A reason without break glass is refused, not dropped.
    let body = json!({"code_id": v2, "reason": "because"});
    let (status, answer) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/release", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    // A held status change goes alone.
    let body = json!({"status": "inactive", "description": "x"});
    let (status, answer) = ask(&app, &alice, Method::PATCH, "/api/v1/configs/app", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/app", None).await;
    assert_eq!(
        (config["description"].clone(), config["status"].clone()),
        (json!(""), json!("active"))
    );
    // A bar raised after a request opened holds it too.
    let (status, held) = ask(&app, &alice, Method::POST, "/api/v1/configs/app/release", release(&v2)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let approve = format!(
        "/api/v1/changes/{}/approve",
        held["change_request"]["id"].as_str().unwrap()
    );
    app.admin(
        Method::PATCH,
        "/api/v1/configs/app",
        Some(json!({"approvals_required": 2})),
    )
    .await;
    let (status, answer) = ask(&app, &bob, Method::POST, &approve, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["change_request"]["state"], "open",
        "one approval applied a change that needs two"
    );
    let (_, answer) = ask(&app, &carol, Method::POST, &approve, None).await;
    assert_eq!(answer["change_request"]["state"], "applied", "{answer}");
    // Reasons are sentences, not megabytes.
    let (_, held) = ask(
        &app,
        &alice,
        Method::POST,
        "/api/v1/configs/app/rollback",
        Some(json!(null)),
    )
    .await;
    let reject = format!(
        "/api/v1/changes/{}/reject",
        held["change_request"]["id"].as_str().unwrap()
    );
    let long = "x".repeat(1001);
    let (status, _) = ask(&app, &bob, Method::POST, &reject, Some(json!({ "reason": long }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = ask(&app, &bob, Method::POST, &reject, Some(json!({"reason": "no"}))).await;
    assert_eq!(status, StatusCode::OK);
    // A rollback body that is not an object is refused in plain words.
    let (status, answer) = ask(
        &app,
        &alice,
        Method::POST,
        "/api/v1/configs/app/rollback",
        Some(json!([])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["message"], "the body must be a JSON object");
    app.stop().await;
}
