//! Rollout plans on two nodes over one PostgreSQL (or MySQL) database: each step is
//! applied exactly once however many schedulers wake for it, and when a
//! node stops mid-plan the other applies the rest.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// A config at v1 with v2 uploaded on `node`; returns v2.
async fn prepared(node: &TestApp) -> String {
    node.create_config("app").await;
    let v1 = node
        .create_version("app", json!({"lang": "starlark", "source": "return 1"}))
        .await;
    node.release("app", &v1).await;
    node.create_version("app", json!({"lang": "starlark", "source": "return 2"}))
        .await
}

async fn plan_state(node: &TestApp, id: &str) -> Value {
    node.admin(Method::GET, &format!("/api/v1/configs/app/plans/{id}"), None)
        .await
        .1
}

/// The steps the rollout events name, oldest first.
async fn steps_applied(node: &TestApp) -> Vec<i64> {
    let (_, events) = node.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    let mut steps: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "rollout")
        .map(|e| e["detail"]["step"].as_i64().unwrap())
        .collect();
    steps.reverse();
    steps
}

async fn start(node: &TestApp, code_id: &str, steps: Value) -> String {
    let body = json!({"code_id": code_id, "steps": steps});
    let (status, created) = node.admin(Method::POST, "/api/v1/configs/app/plans", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_steps_apply_once_across_nodes() {
    steps_apply_once(Backend::Postgres).await
}

/// `FOR UPDATE SKIP LOCKED` on MySQL/MariaDB claims each step once too.
#[tokio::test(flavor = "multi_thread")]
async fn rollout_steps_apply_once_across_nodes_over_mysql() {
    steps_apply_once(Backend::MySql).await
}

async fn steps_apply_once(backend: Backend) {
    let Some(nodes) = TestApp::cluster_over_on(backend, 2, None, |_| {}).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let v2 = prepared(a).await;
    let steps =
        json!([{"percentage": 10, "bake_s": 1}, {"percentage": 50, "bake_s": 1}, {"percentage": 100, "bake_s": 1}]);
    let id = start(b, &v2, steps).await;
    let done = || async { plan_state(a, &id).await["state"] == "completed" };
    assert!(eventually(WAIT, done).await, "{}", plan_state(a, &id).await);
    assert_eq!(steps_applied(a).await, [1, 2, 3]);
    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_plans_finish_when_their_node_stops() {
    let Some(mut nodes) = TestApp::cluster_over(2, None, |_| {}).await else {
        return;
    };
    let v2 = prepared(&nodes[0]).await;
    // Made on B, whose scheduler wakes for it at once and applies step 1.
    let steps =
        json!([{"percentage": 10, "bake_s": 2}, {"percentage": 50, "bake_s": 1}, {"percentage": 100, "bake_s": 1}]);
    let id = start(&nodes[1], &v2, steps).await;
    let a = &nodes[0];
    assert!(eventually(WAIT, || async { plan_state(a, &id).await["applied"] == 1 }).await);
    nodes.pop().unwrap().stop().await;
    let a = &nodes[0];
    let done = || async { plan_state(a, &id).await["state"] == "completed" };
    assert!(eventually(WAIT, done).await, "{}", plan_state(a, &id).await);
    assert_eq!(steps_applied(a).await, [1, 2, 3]);
    nodes.pop().unwrap().stop().await;
}
