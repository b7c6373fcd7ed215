//! Several nodes over one PostgreSQL (or MySQL) database and one Redis, in
//! one test process: a change published on A reaches subscribers on B and B's fetches;
//! B catches up by itself after losing its Redis subscription; a node keeps
//! serving when Redis or the store is down; devices served on A that report
//! on B break a version as on one node.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::networks::{Net, Route};
use crate::common::private_redis::PrivateRedis;
use crate::common::ws::{native_socket, subscribe, until_revision};
use crate::common::{Backend, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn version(n: i64) -> Value {
    json!({"lang": "starlark", "source": format!("return {n}")})
}

async fn served(app: &TestApp, config_id: &str, cached: bool) -> (StatusCode, Value) {
    let (status, body) = app.fetch(config_id, json!({"cached": cached})).await;
    (status, body["data"]["result"].clone())
}

/// The `Vane-Stale` header of a native `cached: false` fetch.
async fn stale_header(app: &TestApp, config_id: &str) -> Option<String> {
    let url = app.url(&format!("/api/v1/configs/{config_id}/evaluate"));
    let response = app
        .client
        .post(url)
        .json(&json!({"cached": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stale = response.headers().get("vane-stale");
    stale.map(|v| v.to_str().unwrap().to_owned())
}

async fn stop_all(nodes: Vec<TestApp>) {
    // The first node owns the database; it goes last.
    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_on_one_node_reaches_the_other() {
    a_change_reaches_the_other_node(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_on_one_node_reaches_the_other_over_mysql() {
    a_change_reaches_the_other_node(Backend::MySql).await
}

async fn a_change_reaches_the_other_node(backend: Backend) {
    let Some(nodes) = TestApp::cluster_on(backend, 2, |_| {}).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let secret = a.create_config("shared").await["secret"].as_str().unwrap().to_owned();
    let v1 = a.create_version("shared", version(1)).await;
    a.release("shared", &v1).await;
    // B loads it (store, then Redis for the next node to ask).
    assert_eq!(served(b, "shared", true).await, (StatusCode::OK, json!("1")));

    let mut socket = native_socket(b).await;
    let revision = b.state().releases.config("shared").await.unwrap().revision;
    subscribe(&mut socket, "shared", &secret, Some(revision)).await;
    let v2 = a.create_version("shared", version(2)).await;
    a.release("shared", &v2).await;
    let update = until_revision(&mut socket, "shared", revision + 1).await;
    assert_eq!(update["revision"], json!(revision + 1));
    // After the notice B answers with the new version, from memory.
    assert_eq!(served(b, "shared", true).await, (StatusCode::OK, json!("2")));

    let bus = b.state().bus.clone();
    let stats = bus.stats().await.unwrap();
    assert!(stats.connected && stats.received >= 1, "{stats:?}");
    drop(socket);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_lost_its_subscription_catches_up_by_itself() {
    // It cuts every pub/sub connection on its Redis server, which would
    // disturb any other test on that server: it has one of its own.
    let Some(server) = PrivateRedis::start().await else {
        return;
    };
    let Some(nodes) = TestApp::cluster_over(2, Some(server.url()), |_| {}).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let secret = a.create_config("gap").await["secret"].as_str().unwrap().to_owned();
    let v1 = a.create_version("gap", version(1)).await;
    a.release("gap", &v1).await;
    assert_eq!(served(b, "gap", true).await, (StatusCode::OK, json!("1")));
    let mut socket = native_socket(b).await;
    let revision = b.state().releases.config("gap").await.unwrap().revision;
    subscribe(&mut socket, "gap", &secret, Some(revision)).await;
    let bus = b.state().bus.clone();
    assert!(eventually(WAIT, || async { bus.stats().await.is_ok_and(|s| s.connected) }).await);

    // Cut every pub/sub connection (both nodes'), and publish at once, while
    // B is still waiting out its reconnect backoff: the notice is lost. The
    // version is uploaded first (its compile check takes a worker), so on a
    // loaded machine only the release falls between the cut and B's return.
    let v2 = a.create_version("gap", version(2)).await;
    let redis = redis::Client::open(server.url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(killed >= 2, "killed {killed} subscriptions");
    a.release("gap", &v2).await;

    // B reconnects, compares revisions with the store, and catches up.
    let update = until_revision(&mut socket, "gap", revision + 1).await;
    assert_eq!(update["revision"], json!(revision + 1));
    assert_eq!(served(b, "gap", true).await, (StatusCode::OK, json!("2")));
    let stats = bus.stats().await.unwrap();
    assert!(stats.reconnects >= 1 && stats.caught_up >= 1, "{stats:?}");
    drop(socket);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_requests_go_on() {
    // Nothing listens on port 1: every Redis call fails at once.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.redis.url = "redis://127.0.0.1:1".into())
        .await
        .unwrap();
    app.create_config("calm").await;
    let v1 = app.create_version("calm", version(1)).await;
    app.release("calm", &v1).await;
    for cached in [true, false, true] {
        assert_eq!(served(&app, "calm", cached).await, (StatusCode::OK, json!("1")));
    }
    let v2 = app.create_version("calm", version(2)).await;
    app.release("calm", &v2).await;
    assert_eq!(served(&app, "calm", true).await, (StatusCode::OK, json!("2")));
    let (status, ready) = app.admin(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    app.stop().await;
}

/// Needs PostgreSQL: the test takes the database away from under the node.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_store_down_known_configs_are_still_served() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    app.create_config("kept").await;
    let v1 = app.create_version("kept", version(1)).await;
    app.release("kept", &v1).await;
    assert_eq!(served(&app, "kept", true).await, (StatusCode::OK, json!("1")));

    let database = app.database_name().unwrap();
    app.admin_sql(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"))
        .await;
    app.admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .await;

    // Memory answers without waiting on the store; even `cached: false` gets
    // the last known state rather than an error, and the native route says
    // it is stale.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        assert_eq!(served(&app, "kept", true).await, (StatusCode::OK, json!("1")));
        assert_eq!(served(&app, "kept", false).await, (StatusCode::OK, json!("1")));
        // Generous: a fetch that waited on the store would take its 5 s
        // connection timeout.
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }
    assert_eq!(stale_header(&app, "kept").await, Some("1".to_owned()));
    let (status, ready) = app.admin(Method::GET, "/readyz", None).await;
    assert_eq!(
        (status, ready["status"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("degraded"))
    );

    app.admin_sql(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await;
    assert!(
        eventually(WAIT, || async {
            app.admin(Method::GET, "/readyz", None).await.0 == StatusCode::OK
        })
        .await,
        "the node did not recover with the store"
    );
    assert!(
        eventually(WAIT, || async { stale_header(&app, "kept").await.is_none() }).await,
        "fresh fetches still stale after the store came back"
    );
    app.stop().await;
}

/// Networks fetch on A and report on B at once: B waits for A's next share
/// of its served record, so the reports count and the version breaks (and
/// rolls back) as it would on one node; strangers still count for nothing.
#[tokio::test(flavor = "multi_thread")]
async fn networks_served_on_one_node_and_reporting_on_another_break_the_version() {
    let Some(nodes) = TestApp::cluster(2, |s| {
        s.reports.min_sources = 4;
        s.reports.break_ratio = 0.5;
        s.reports.share_ms = 200;
    })
    .await
    else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let secret = a.create_config("health").await["secret"].as_str().unwrap().to_owned();
    let v1 = a.create_version("health", version(1)).await;
    a.release("health", &v1).await;
    let v2 = a.create_version("health", version(2)).await;
    a.release("health", &v2).await;
    // Phones in networks 127.0.1.0/24 to 127.0.8.0/24 fetch on A and
    // report on B; strangers from networks never served report on B.
    let on_a = Net::many(a, 1, 8);
    let on_b = Net::many(b, 1, 8);
    for (i, net) in on_a.iter().enumerate() {
        let (_, served) = net.fetch(Route::Native, "health", &format!("phone-{i}")).await;
        assert_eq!(served.unwrap().1, json!(2));
    }
    for net in Net::many(b, 100, 6) {
        let receipt = net.report(Route::Native, "health", &secret, &v2, "phone-0").await.1;
        assert_eq!(receipt["reason"], json!("not_served"), "{receipt}");
    }
    let mut last = Value::Null;
    for (i, net) in on_b[..4].iter().enumerate() {
        last = net
            .report(Route::Native, "health", &secret, &v2, &format!("phone-{i}"))
            .await
            .1;
        assert_eq!(last["counted"], json!(true), "{last}");
    }
    assert_eq!(
        (last["broke"].clone(), last["rolled_back_to"].clone()),
        (json!(true), json!(v1))
    );
    let path = format!("/api/v1/configs/health/versions/{v2}/reports/summary");
    let health = b.admin(Method::GET, &path, None).await.1;
    assert_eq!(health["served_networks"], json!(8), "B sees A's networks: {health}");
    assert!(eventually(WAIT, || async { fetch(a, "phone-0".into()).await == json!(1) }).await);
    stop_all(nodes).await;
}

async fn fetch(node: &TestApp, device: String) -> Value {
    let body = json!({"meta": {"device_id": device}, "cached": false});
    node.post_json("/api/v1/configs/health/evaluate", body).await.1["result"].clone()
}
