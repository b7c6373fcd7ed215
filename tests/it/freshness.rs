//! `cached: false` and outages: a fresh request reads only the config's
//! revision (one read shared by every request that arrived before it
//! started), reloads only when it moved, and never recompiles; memory keeps
//! answering while the store is down; nodes find each other's changes by
//! polling the store while Redis is down or absent.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vane::domain::change::Change;

use crate::common::faulty::Mode;
use crate::common::private_redis::PrivateRedis;
use crate::common::ws::{native_socket, subscribe, until_revision};
use crate::common::{Backend, TestApp, eventually};

/// Long enough that a waiting path would show as a failure, not a slow pass:
/// a blocked store blocks until the test releases it.
const NO_WAIT: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(10);

fn version(n: i64) -> Value {
    json!({"lang": "starlark", "source": format!("return {n}")})
}

async fn served(app: &TestApp, config_id: &str, cached: bool) -> (StatusCode, Value) {
    let request = app.fetch(config_id, json!({"cached": cached, "meta": {"device_id": "d1"}}));
    let (status, body) = tokio::time::timeout(NO_WAIT, request)
        .await
        .expect("answered without waiting");
    (status, body["data"]["result"].clone())
}

/// The native evaluate route: status, whether it said `Vane-Stale`, result.
async fn evaluated(app: &TestApp, config_id: &str, cached: bool) -> (StatusCode, bool, Value) {
    let url = app.url(&format!("/api/v1/configs/{config_id}/evaluate"));
    let request = app.client.post(url).json(&json!({"cached": cached})).send();
    let response = tokio::time::timeout(NO_WAIT, request)
        .await
        .expect("answered without waiting")
        .unwrap();
    let stale = response.headers().get("vane-stale").is_some_and(|v| v == "1");
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, stale, body["result"].clone())
}

fn no_poll(settings: &mut vane::settings::Settings) {
    // These tests change the store behind the node's back and look before
    // the node could find out by itself.
    settings.store.poll_ms = 3_600_000;
    settings.store.wait_ms = 300;
}

async fn fresh_requests_share_store_reads_and_never_recompile(backend: Backend) {
    // Slow reads, but within the wait: these answers are current, not stale.
    let slow_reads = |s: &mut vane::settings::Settings| {
        no_poll(s);
        s.store.wait_ms = 5000;
    };
    let Some((app, store)) = TestApp::spawn_faulty(backend, slow_reads).await else {
        return;
    };
    app.create_config("f").await;
    let v1 = app.create_version("f", version(1)).await;
    app.release("f", &v1).await;
    assert_eq!(served(&app, "f", true).await, (StatusCode::OK, json!("1")));
    let pool = app.state().pool.clone();

    // Every request arrives while the first read is under way, so all share
    // it or the one after it.
    store.delay_revision_reads(Duration::from_millis(600));
    let before = store.revision_reads();
    let fetches = join_all((0..40).map(|_| served(&app, "f", false))).await;
    assert!(
        fetches.iter().all(|f| *f == (StatusCode::OK, json!("1"))),
        "{fetches:?}"
    );
    let reads = store.revision_reads() - before;
    assert!(reads <= 2, "40 fresh requests made {reads} store reads");
    store.delay_revision_reads(Duration::ZERO);

    // A change behind the node's back: memory does not know, a fresh
    // request does, and from then on every request is served the change.
    let v2 = app.create_version("f", version(2)).await;
    let change = Change::Release {
        code_id: v2,
        forced: true,
    };
    store.inner().apply("f", change, "test").await.unwrap();
    assert_eq!(served(&app, "f", true).await, (StatusCode::OK, json!("1")));
    assert_eq!(served(&app, "f", false).await, (StatusCode::OK, json!("2")));
    assert_eq!(served(&app, "f", true).await, (StatusCode::OK, json!("2")));

    // Fresh requests never make a worker compile again: each of the two
    // versions is compiled at most once by each of the two workers.
    for _ in 0..40 {
        assert_eq!(served(&app, "f", false).await, (StatusCode::OK, json!("2")));
    }
    let compiled = pool.stats().compiled;
    assert!(compiled <= 4, "compiled {compiled} times for 2 versions on 2 workers");
    assert_eq!(app.state().cache.revision_reads(), store.revision_reads());
    app.stop().await;
}

async fn warm_fetches_are_answered_while_the_store_is_out(backend: Backend) {
    let Some((app, store)) = TestApp::spawn_faulty(backend, no_poll).await else {
        return;
    };
    app.create_config("warm").await;
    let v1 = app.create_version("warm", version(1)).await;
    app.release("warm", &v1).await;
    assert_eq!(served(&app, "warm", false).await, (StatusCode::OK, json!("1")));
    // Released but never fetched here: not in memory.
    app.create_config("cold").await;
    let cold = app.create_version("cold", version(7)).await;
    app.release("cold", &cold).await;

    for mode in [Mode::Fail, Mode::Block] {
        store.set_mode(mode);
        assert_eq!(
            served(&app, "warm", true).await,
            (StatusCode::OK, json!("1")),
            "{mode:?}"
        );
        // The original route's body is as always; the native one says so.
        let (status, body) = app.fetch("warm", json!({"cached": false})).await;
        assert_eq!((status, body["message"].clone()), (StatusCode::OK, json!("success")));
        assert_eq!(evaluated(&app, "warm", false).await, (StatusCode::OK, true, json!(1)));
        assert_eq!(evaluated(&app, "warm", true).await, (StatusCode::OK, false, json!(1)));
        // Only a config not in memory waits, and at most `store.wait_ms`.
        let request = app.client.post(app.url("/config/cold")).json(&json!({})).send();
        let response = tokio::time::timeout(NO_WAIT, request).await.expect("answered").unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
        assert!(response.headers().contains_key("retry-after"));
        let text = response.text().await.unwrap();
        assert!(
            text.contains("not in memory") || text.contains("store unavailable"),
            "{text}"
        );
        store.set_mode(Mode::Normal);
        // Stale until a read succeeds again: the first fetch after the store
        // came back asks for one.
        assert!(
            eventually(WAIT, || async {
                evaluated(&app, "warm", false).await == (StatusCode::OK, false, json!(1))
            })
            .await,
            "{mode:?}: still stale after the store came back"
        );
    }
    assert_eq!(served(&app, "cold", false).await, (StatusCode::OK, json!("7")));
    app.stop().await;
}

async fn bad_fetches_stay_client_errors(backend: Backend) {
    let Some((app, _store)) = TestApp::spawn_faulty(backend, no_poll).await else {
        return;
    };
    app.create_config("b").await;
    let v1 = app.create_version("b", version(1)).await;
    app.release("b", &v1).await;
    let long_id = "x".repeat(300);
    for (path, body) in [
        ("/config/nope", json!({"cached": false})),
        (&format!("/config/{long_id}") as &str, json!({"cached": false})),
        ("/config/b", json!({"cached": "no"})),
        ("/config/b", json!({"cached": false, "meta": 5})),
    ] {
        let (status, body) = app.post_json(path, body).await;
        assert!(status.is_client_error(), "{path}: {status} {body}");
    }
    app.stop().await;
}

backend_tests!(
    fresh_requests_share_store_reads_and_never_recompile,
    warm_fetches_are_answered_while_the_store_is_out,
    bad_fetches_stay_client_errors,
    a_hung_store_is_waited_on_once_not_by_every_fresh_fetch,
);

/// A publish on A reaches B's fetches and subscribers through the poll while
/// Redis is down, and through Redis again once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_publish_reaches_the_other_node_while_redis_is_down() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let Some(nodes) = TestApp::cluster_over(2, Some(redis.url()), |s| s.store.poll_ms = 200).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let secret = a.create_config("down").await["secret"].as_str().unwrap().to_owned();
    let v1 = a.create_version("down", version(1)).await;
    a.release("down", &v1).await;
    assert_eq!(served(b, "down", true).await, (StatusCode::OK, json!("1")));
    assert!(eventually(WAIT, || async { b.state().bus.stats().await.unwrap().connected }).await);
    let mut socket = native_socket(b).await;
    let revision = b.state().releases.config("down").await.unwrap().revision;
    subscribe(&mut socket, "down", &secret, Some(revision)).await;

    redis.stop();
    assert!(
        eventually(WAIT, || async { !b.state().bus.stats().await.unwrap().connected }).await,
        "B did not notice Redis going away"
    );
    let v2 = a.create_version("down", version(2)).await;
    a.release("down", &v2).await;
    let update = until_revision(&mut socket, "down", revision + 1).await;
    assert_eq!(update["revision"], json!(revision + 1));
    assert_eq!(served(b, "down", true).await, (StatusCode::OK, json!("2")));
    assert!(b.state().bus.stats().await.unwrap().polls >= 1);

    redis.resume().await;
    for node in [a, b] {
        assert!(eventually(WAIT, || async { node.state().bus.stats().await.unwrap().connected }).await);
    }
    let v3 = a.create_version("down", version(3)).await;
    a.release("down", &v3).await;
    until_revision(&mut socket, "down", revision + 2).await;
    assert_eq!(served(b, "down", true).await, (StatusCode::OK, json!("3")));
    drop(socket);
    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
}

/// Nodes that share a store without Redis see each other's changes by
/// polling it.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_without_redis_see_each_others_changes_by_polling() {
    let Some(nodes) = TestApp::cluster_over(2, None, |s| s.store.poll_ms = 200).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let secret = a.create_config("poll").await["secret"].as_str().unwrap().to_owned();
    let v1 = a.create_version("poll", version(1)).await;
    a.release("poll", &v1).await;
    assert_eq!(served(b, "poll", true).await, (StatusCode::OK, json!("1")));
    let mut socket = native_socket(b).await;
    let revision = b.state().releases.config("poll").await.unwrap().revision;
    subscribe(&mut socket, "poll", &secret, Some(revision)).await;
    let v2 = a.create_version("poll", version(2)).await;
    a.release("poll", &v2).await;
    until_revision(&mut socket, "poll", revision + 1).await;
    assert_eq!(served(b, "poll", true).await, (StatusCode::OK, json!("2")));
    drop(socket);
    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
}

/// A store that stops answering (a partition): the fresh fetch that finds
/// out waits `store.wait_ms` once; every fresh fetch after it answers from
/// memory at once, marked stale, until a read succeeds again, and then a
/// change made meanwhile is served.
async fn a_hung_store_is_waited_on_once_not_by_every_fresh_fetch(backend: Backend) {
    let Some((app, store)) = TestApp::spawn_faulty(backend, |s| {
        no_poll(s);
        s.store.wait_ms = 2000;
    })
    .await
    else {
        return;
    };
    app.create_config("part").await;
    let v1 = app.create_version("part", version(1)).await;
    app.release("part", &v1).await;
    assert_eq!(evaluated(&app, "part", false).await, (StatusCode::OK, false, json!(1)));
    let v2 = app.create_version("part", version(2)).await;
    store.set_mode(Mode::Block);
    assert_eq!(evaluated(&app, "part", false).await, (StatusCode::OK, true, json!(1)));
    // Twenty fresh fetches, one after another as a single client sends them:
    // had each waited for its own read, they would take forty seconds.
    let unanswered = || async {
        let metrics = app.scrape().await;
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("vane_fresh_fetches_total{outcome=\"stale_store_unanswered\"} ")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    let counted_before = unanswered().await;
    let start = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(evaluated(&app, "part", false).await, (StatusCode::OK, true, json!(1)));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "20 fresh fetches took {took:?} on a hung store"
    );
    // Each is counted as answered from memory for an unanswered store
    // (other tests in this process only add to the counter).
    let counted = unanswered().await - counted_before;
    assert!(counted >= 20.0, "stale_store_unanswered rose by {counted}");
    let (_, stats) = app.admin(reqwest::Method::GET, "/api/v1/stats", None).await;
    assert_eq!(stats["plans_unread"], json!(true), "the stats hid the hung store");
    // A change behind the node's back while it is cut off, then the store
    // answers again: the next successful read brings it.
    let change = Change::Release {
        code_id: v2,
        forced: true,
    };
    store.inner().apply("part", change, "test").await.unwrap();
    store.set_mode(Mode::Normal);
    assert!(
        eventually(WAIT, || async {
            evaluated(&app, "part", false).await == (StatusCode::OK, false, json!(2))
        })
        .await,
        "the change made while the node was cut off was not served once the store answered"
    );
    let (_, stats) = app.admin(reqwest::Method::GET, "/api/v1/stats", None).await;
    assert_eq!(stats["plans_unread"], json!(false), "{stats}");
    app.stop().await;
}
