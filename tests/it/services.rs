//! The service registry: leases that renew and expire, bad registrations
//! refused by field, grants over service names, pushes coalesced on the
//! native socket, and two nodes (with Redis, and with none) that agree
//! within a second.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::ws::{Socket, next_json, ws_url};
use crate::common::{BEARER, Backend, TestApp, eventually};

backend_tests!(leases_renew_change_and_expire);

fn instance(port: i64, ttl_s: i64) -> Value {
    json!({"address": "10.0.0.1", "port": port, "meta": {"zone": "a"}, "ttl_s": ttl_s})
}

async fn put(app: &TestApp, token: &str, service: &str, id: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/api/v1/services/{service}/instances/{id}");
    app.as_token(token, Method::PUT, &path, Some(body)).await
}

async fn members(app: &TestApp, service: &str) -> Value {
    let (status, body) = app
        .admin(Method::GET, &format!("/api/v1/services/{service}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn ids(members: &Value) -> Vec<String> {
    members["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn leases_renew_change_and_expire(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, first) = put(&app, BEARER, "api", "b", instance(8080, 30)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["service"], "api");
    put(&app, BEARER, "api", "a", instance(8081, 30)).await;
    let listed = members(&app, "api").await;
    assert_eq!(ids(&listed), ["a", "b"], "sorted by id: {listed}");
    assert_eq!(listed["instances"][1]["meta"], json!({"zone": "a"}));

    // A renewal is no change: same revision, same registration time.
    let (_, renewed) = put(&app, BEARER, "api", "a", instance(8081, 30)).await;
    assert_eq!(renewed["revision"], listed["revision"]);
    assert!(renewed["expires_at"].as_i64() >= listed["instances"][0]["expires_at"].as_i64());
    assert_eq!(
        members(&app, "api").await["instances"][0]["registered_at"],
        listed["instances"][0]["registered_at"]
    );
    // A new port is.
    let (_, moved) = put(&app, BEARER, "api", "a", instance(9000, 30)).await;
    assert_ne!(moved["revision"], listed["revision"]);

    let (_, services) = app.admin(Method::GET, "/api/v1/services", None).await;
    assert_eq!(services, json!([{"service": "api", "instances": 2}]));

    // Gone at once on DELETE; a second DELETE finds nothing.
    let path = "/api/v1/services/api/instances/b";
    assert_eq!(app.admin(Method::DELETE, path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(ids(&members(&app, "api").await), ["a"]);
    assert_eq!(app.admin(Method::DELETE, path, None).await.0, StatusCode::NOT_FOUND);

    // Not renewed: gone within a second of its lease.
    put(&app, BEARER, "short", "x", instance(80, 1)).await;
    let registered = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            ids(&members(&app, "short").await).is_empty()
        })
        .await,
        "an unrenewed instance stayed"
    );
    assert!(
        registered.elapsed() < Duration::from_millis(2_600),
        "{:?}",
        registered.elapsed()
    );
    // Renewed: stays past its ttl.
    put(&app, BEARER, "kept", "x", instance(80, 1)).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        put(&app, BEARER, "kept", "x", instance(80, 1)).await;
    }
    assert_eq!(ids(&members(&app, "kept").await), ["x"]);
}

#[tokio::test]
async fn bad_registrations_are_refused_by_field() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let some: serde_json::Map<String, Value> = (0..100).map(|i| (i.to_string(), json!("v"))).collect();
    let many: serde_json::Map<String, Value> = (0..10_000).map(|i| (i.to_string(), json!("v"))).collect();
    let cases = [
        (instance(0, 10), "port"),
        (instance(70000, 10), "port"),
        (instance(80, 0), "ttl_s"),
        (instance(80, 3601), "ttl_s"),
        (json!({"address": "", "port": 80, "ttl_s": 10}), "address"),
        (
            json!({"address": "10.0.0.1", "port": 80, "ttl_s": 10, "meta": some}),
            "meta",
        ),
        // 10,000 keys do not fit the body a registration may send.
        (
            json!({"address": "10.0.0.1", "port": 80, "ttl_s": 10, "meta": many}),
            "body",
        ),
        (
            json!({"address": "10.0.0.1", "port": 80, "ttl_s": 10, "meta": {"k": "x".repeat(70_000)}}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = put(&app, BEARER, "api", "a", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{field}: {answer}");
    }
    let (status, answer) = put(&app, BEARER, "bad name", "a", instance(80, 10)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().starts_with("service:"),
        "{answer}"
    );
    assert_eq!(
        members(&app, "api").await["instances"],
        json!([]),
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn grants_cover_service_names_and_secrets_grant_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let agent = app.make_token("agent", "registrar", &["api-*"]).await;
    let reader = app.make_token("reader", "viewer", &["api-*"]).await;
    assert_eq!(
        put(&app, &agent, "api-web", "a", instance(80, 10)).await.0,
        StatusCode::OK
    );
    let (status, refused) = put(&app, &agent, "billing", "a", instance(80, 10)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["code"], "role_required");
    let (status, _) = put(&app, &reader, "api-web", "b", instance(80, 10)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer reads, never registers");
    let (status, read) = app
        .as_token(&reader, Method::GET, "/api/v1/services/api-web", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let (status, _) = app
        .as_token(&reader, Method::GET, "/api/v1/services/billing", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    put(&app, BEARER, "billing", "z", instance(80, 10)).await;
    let (_, listed) = app.as_token(&reader, Method::GET, "/api/v1/services", None).await;
    assert_eq!(
        listed,
        json!([{"service": "api-web", "instances": 1}]),
        "lists show what the grant covers"
    );
    // A config's secret is no token here.
    let secret = app.create_config("api-web").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = put(&app, &secret, "api-web", "c", instance(80, 10)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn token_socket(app: &TestApp, token: Option<&str>) -> Socket {
    let mut request = ws_url(app, "/api/v1/subscribe").into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn follow(socket: &mut Socket, service: &str, revision: Option<i64>) -> Value {
    let message = json!({"type": "subscribe", "service": service, "revision": revision});
    socket.send(Message::text(message.to_string())).await.unwrap();
    next_json(socket).await
}

/// Every frame that arrives within `window`, answering pings on the way.
async fn frames_within(socket: &mut Socket, window: Duration) -> Vec<Value> {
    let until = tokio::time::Instant::now() + window;
    let mut frames = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, socket.next()).await {
        if let Message::Text(text) = frame {
            frames.push(serde_json::from_str(&text).unwrap());
        }
    }
    frames
}

#[tokio::test]
async fn subscribers_get_members_at_once_and_bursts_coalesced() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    put(&app, BEARER, "api", "a", instance(80, 60)).await;
    let mut socket = token_socket(&app, Some(BEARER)).await;
    let subscribed = follow(&mut socket, "api", None).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let first = next_json(&mut socket).await;
    assert_eq!(
        (first["type"].as_str(), ids(&first)),
        (Some("service"), vec!["a".to_owned()]),
        "{first}"
    );
    let revision = first["revision"].as_i64().unwrap();

    // 100 registrations at once: a handful of messages, the last complete.
    let names: Vec<String> = (0..100).map(|i| format!("n{i:03}")).collect();
    futures_util::future::join_all(names.iter().map(|n| put(&app, BEARER, "api", n, instance(80, 60)))).await;
    let frames = frames_within(&mut socket, Duration::from_millis(1500)).await;
    assert!(
        !frames.is_empty() && frames.len() <= 10,
        "{} messages for a burst of 100",
        frames.len()
    );
    assert_eq!(frames.last().unwrap()["instances"].as_array().unwrap().len(), 101);

    // Resuming with the revision in hand: nothing, until something moves.
    let mut again = token_socket(&app, Some(BEARER)).await;
    let now = frames.last().unwrap()["revision"].as_i64().unwrap();
    assert_ne!(now, revision);
    assert_eq!(follow(&mut again, "api", Some(now)).await["type"], "subscribed");
    assert!(frames_within(&mut again, Duration::from_millis(600)).await.is_empty());
    app.admin(Method::DELETE, "/api/v1/services/api/instances/a", None)
        .await;
    let moved = next_json(&mut again).await;
    assert_eq!(moved["instances"].as_array().unwrap().len(), 100, "{moved}");

    // No token, or one that does not cover the service: refused by name.
    let mut anonymous = token_socket(&app, None).await;
    let refused = follow(&mut anonymous, "api", None).await;
    assert_eq!(refused["type"], "error", "{refused}");
    let other = app.make_token("other", "viewer", &["web-*"]).await;
    let mut narrow = token_socket(&app, Some(&other)).await;
    let refused = follow(&mut narrow, "api", None).await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("`viewer` role over service `api`"),
        "{refused}"
    );
}

/// Two nodes on one database: what one registers, the other lists and
/// pushes within a second, and an expiry on one is seen on the other.
async fn two_nodes_agree(nodes: Vec<TestApp>) {
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut socket = token_socket(b, Some(BEARER)).await;
    follow(&mut socket, "api", None).await;
    let empty = next_json(&mut socket).await;
    assert_eq!(empty["instances"], json!([]), "{empty}");
    let registered = Instant::now();
    put(a, BEARER, "api", "a", instance(80, 1)).await;
    let pushed = next_json(&mut socket).await;
    assert_eq!(ids(&pushed), ["a"], "{pushed}");
    assert!(
        registered.elapsed() < Duration::from_millis(1500),
        "{:?}",
        registered.elapsed()
    );
    assert_eq!(ids(&members(b, "api").await), ["a"]);
    // Not renewed on A: gone on B too, within ttl + about a second.
    let gone = next_json(&mut socket).await;
    assert_eq!(gone["instances"], json!([]), "{gone}");
    assert!(
        registered.elapsed() < Duration::from_millis(3000),
        "{:?}",
        registered.elapsed()
    );
    // A heartbeat on B of A's instance moves the lease to B; it stays while B renews.
    put(a, BEARER, "api", "m", instance(81, 2)).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        put(b, BEARER, "api", "m", instance(81, 2)).await;
    }
    assert_eq!(ids(&members(a, "api").await), ["m"], "A expired a lease B holds");
    // A lease that moves to B and straight back to A, while A's own first
    // lease is still running: A must take it back in the store, or B ends
    // it when its lease runs out though the agent renews with A.
    put(a, BEARER, "api", "r", instance(82, 2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(b, BEARER, "api", "r", instance(82, 2)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..8 {
        put(a, BEARER, "api", "r", instance(82, 2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let listed = ids(&members(b, "api").await);
        assert!(
            listed.contains(&"r".to_owned()),
            "B ended a lease A took back: {listed:?}"
        );
    }
    // (`m`, no longer renewed, has run out meanwhile.)
    assert_eq!(ids(&members(b, "api").await), ["r"], "B ended a lease A took back");
    assert_eq!(ids(&members(a, "api").await), ["r"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_agree_over_postgres_and_redis() {
    let Some(nodes) = TestApp::cluster(2, |_| {}).await else {
        crate::common::skipped("registry cluster", "set VANE_TEST_DATABASE_URL and VANE_TEST_REDIS_URL");
        return;
    };
    two_nodes_agree(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_agree_over_postgres_without_redis() {
    // The registry's nodes meet in the store alone, so Redis down is this.
    let Some(nodes) = TestApp::cluster_over(2, None, |_| {}).await else {
        crate::common::skipped("registry cluster", "set VANE_TEST_DATABASE_URL");
        return;
    };
    two_nodes_agree(nodes).await;
}

#[tokio::test]
async fn bodies_name_their_fields_and_nul_is_refused_as_everywhere() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let cases = [
        (
            json!({"address": "a", "port": "80", "ttl_s": 5}),
            "port: must be a whole number",
        ),
        (
            json!({"address": "a", "port": 80, "ttl_s": 1.5}),
            "ttl_s: must be a whole number",
        ),
        (json!({"port": 80, "ttl_s": 5}), "address: is required"),
        (
            json!({"address": "a", "port": 80, "ttl_s": 5, "zone": "x"}),
            "body: unknown field `zone`",
        ),
        (json!([1, 2]), "body: must be a JSON object"),
    ];
    for (body, said) in cases {
        let (status, answer) = put(&app, BEARER, "api", "a", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().starts_with(said),
            "{said}: {answer}"
        );
    }
    let (status, answer) = put(
        &app,
        BEARER,
        "api",
        "a",
        json!({"address": "a\u{0}b", "port": 80, "ttl_s": 5}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("nul_character"))
    );
    // Whole numbers may be written as floats, as everywhere in the API.
    let (status, answer) = put(
        &app,
        BEARER,
        "api",
        "a",
        json!({"address": "a", "port": 80.0, "ttl_s": 5.0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["revision"].as_i64().unwrap() < 1 << 53,
        "JavaScript reads it whole: {answer}"
    );
}

#[tokio::test]
async fn a_deleted_token_stops_reading_and_a_burst_of_subscribes_is_answered() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let temp = app.make_token("temp", "viewer", &["*"]).await;
    let mut socket = token_socket(&app, Some(&temp)).await;
    assert_eq!(follow(&mut socket, "rev", None).await["type"], "subscribed");
    assert_eq!(next_json(&mut socket).await["type"], "service");
    // A bad name is refused on the socket as on the routes.
    assert_eq!(follow(&mut socket, "../x", None).await["type"], "error");

    // 200 subscribes at once: every one answered, the socket kept.
    let mut busy = token_socket(&app, Some(BEARER)).await;
    for i in 0..200 {
        let message = json!({"type": "subscribe", "service": format!("s{i}")});
        busy.send(Message::text(message.to_string())).await.unwrap();
    }
    let frames = frames_within(&mut busy, Duration::from_secs(3)).await;
    let subscribed = frames.iter().filter(|f| f["type"] == "subscribed").count();
    assert_eq!(subscribed, 200, "{} frames", frames.len());

    // The token goes: its socket hears nothing more and is closed.
    assert_eq!(
        app.admin(Method::DELETE, "/api/v1/tokens/temp", None).await.0,
        StatusCode::NO_CONTENT
    );
    put(&app, BEARER, "rev", "a", instance(80, 30)).await;
    let closed = crate::common::ws::close_code(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(closed, Some(1008), "a deleted token kept its socket");
}

/// A node that stops takes its leases with it: the others drop its
/// instances once it no longer says it is alive (3 s), and the agents'
/// next heartbeat, to a node that is up, lists them again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_s_instances_go_and_come_back_with_the_next_heartbeat() {
    let Some(mut nodes) = TestApp::cluster_over(2, None, |_| {}).await else {
        crate::common::skipped("registry cluster", "set VANE_TEST_DATABASE_URL");
        return;
    };
    // The second node: the first owns the test database.
    let gone = nodes.pop().unwrap();
    let up = &nodes[0];
    put(&gone, BEARER, "api", "a", instance(80, 60)).await;
    assert!(
        eventually(Duration::from_secs(2), || async {
            ids(&members(up, "api").await) == ["a"]
        })
        .await
    );
    gone.stop().await;
    let stopped = Instant::now();
    assert!(
        eventually(Duration::from_secs(6), || async {
            ids(&members(up, "api").await).is_empty()
        })
        .await,
        "a stopped node's instance stayed"
    );
    assert!(
        stopped.elapsed() < Duration::from_millis(4_500),
        "{:?}",
        stopped.elapsed()
    );
    put(up, BEARER, "api", "a", instance(80, 60)).await;
    assert_eq!(
        ids(&members(up, "api").await),
        ["a"],
        "one heartbeat to a live node lists it again"
    );
}
