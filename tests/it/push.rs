//! Push end to end over real WebSockets: the original `/push/{id}` and
//! `/update/{id}`, the native `/api/v1/subscribe`, the subscribe/publish race,
//! reconnecting with a revision, slow-consumer coalescing, a blocked client
//! and a silent one.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, client_async};
use vane::domain::change::ChangeNotice;

use crate::common;
use crate::common::ws::{Socket, WAIT, compat_socket, native_socket, next_json, subscribe, until_revision, ws_url};
use crate::common::{Backend, TestApp, eventually};

backend_tests!(
    original_push_and_update_routes,
    native_subscribe_catch_up_and_updates,
    subscribing_races_publishing,
);

const UPDATE_SECRET: &str = "update-secret-0123456789abcdef";

async fn spawn(backend: Backend, tweak: impl FnOnce(&mut vane::settings::Settings)) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| {
        s.push.update_secret = UPDATE_SECRET.into();
        tweak(s);
    })
    .await
}

async fn revision(app: &TestApp, config_id: &str) -> i64 {
    let (_, config) = app
        .admin(Method::GET, &format!("/api/v1/configs/{config_id}"), None)
        .await;
    config["revision"].as_i64().unwrap()
}

/// A change that bumps the revision: toggles the status.
async fn change(app: &TestApp, config_id: &str, active: bool) {
    let status = if active { "active" } else { "inactive" };
    let (code, body) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/configs/{config_id}"),
            Some(json!({"status": status})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

async fn update(app: &TestApp, config_id: &str, secret: Option<&str>) -> (StatusCode, Value) {
    let mut request = app.client.post(app.url(&format!("/update/{config_id}")));
    if let Some(secret) = secret {
        request = request.header("Secret", secret);
    }
    common::read(request.send().await.unwrap()).await
}

async fn original_push_and_update_routes(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let config = app.create_config("app").await;
    let secret = config["secret"].as_str().unwrap();
    assert_eq!(
        compat_socket(&app, "app", None).await.err(),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(
        compat_socket(&app, "app", Some("wrong")).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        compat_socket(&app, "nope", Some(secret)).await.err(),
        Some(StatusCode::BAD_REQUEST)
    );

    let mut socket = compat_socket(&app, "app", Some(secret)).await.unwrap();
    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.subscribers("app").await == Ok(1) }).await);

    // A release is announced in the original frame shape.
    let code_id = app
        .create_version("app", json!({"lang": "starlark", "source": "return 1"}))
        .await;
    app.release("app", &code_id).await;
    let frame = next_json(&mut socket).await;
    assert_eq!(frame["config_id"], json!("app"));
    assert!(frame["update_time"].as_i64().unwrap() > 1_600_000_000, "{frame}");
    assert_eq!(frame.as_object().unwrap().len(), 2, "{frame}");

    // POST /update notifies without a change and counts this node's clients.
    assert_eq!(update(&app, "app", None).await.0, StatusCode::BAD_REQUEST);
    let (status, body) = update(&app, "app", Some("wrong")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.to_string().contains("wrong\""), "{body}");
    assert_eq!(
        update(&app, "nope", Some(UPDATE_SECRET)).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = update(&app, "app", Some(UPDATE_SECRET)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"data": {"client_num": 1}, "message": "success"}))
    );
    assert_eq!(next_json(&mut socket).await["config_id"], json!("app"));

    // Closing the socket unregisters it.
    socket.close(None).await.unwrap();
    assert!(eventually(WAIT, || async { push.subscribers("app").await == Ok(0) }).await);
    assert_eq!(
        update(&app, "app", Some(UPDATE_SECRET)).await.1["data"]["client_num"],
        json!(0)
    );
    app.stop().await;
}

async fn native_subscribe_catch_up_and_updates(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let a = app.create_config("a").await["secret"].as_str().unwrap().to_owned();
    let b = app.create_config("b").await["secret"].as_str().unwrap().to_owned();
    let mut socket = native_socket(&app).await;

    let refused = subscribe(&mut socket, "a", "wrong", None).await;
    assert_eq!(
        (refused["type"].clone(), refused["message"].clone()),
        (json!("error"), json!("wrong secret"))
    );
    let refused = subscribe(&mut socket, "nope", "x", None).await;
    assert_eq!(refused["type"], json!("error"));
    socket.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_json(&mut socket).await["type"], json!("error"));

    // Up to date: acknowledged, nothing to catch up on.
    let current = revision(&app, "a").await;
    let ack = subscribe(&mut socket, "a", &a, Some(current)).await;
    assert_eq!(
        ack,
        json!({"type": "subscribed", "config_id": "a", "revision": current})
    );
    // Behind: told at once.
    let ack = subscribe(&mut socket, "b", &b, Some(0)).await;
    assert_eq!(ack["type"], json!("subscribed"));
    let caught_up = until_revision(&mut socket, "b", 1).await;
    assert_eq!(caught_up["revision"], json!(revision(&app, "b").await));

    // Every change after, with its revision.
    change(&app, "a", false).await;
    let update = until_revision(&mut socket, "a", current + 1).await;
    assert_eq!(update["revision"], json!(current + 1));
    assert!(update["update_time"].is_i64());

    // Reconnecting with the revision it had: told at once of what it missed.
    socket.close(None).await.unwrap();
    change(&app, "a", true).await;
    change(&app, "a", false).await;
    let mut socket = native_socket(&app).await;
    subscribe(&mut socket, "b", &b, Some(revision(&app, "b").await)).await;
    subscribe(&mut socket, "a", &a, Some(current + 1)).await;
    let missed = until_revision(&mut socket, "a", current + 3).await;
    assert_eq!(missed["revision"], json!(current + 3));

    // Unsubscribed: no more updates for it (b's still come).
    let unsubscribe = json!({"type": "unsubscribe", "config_id": "a"});
    socket.send(Message::text(unsubscribe.to_string())).await.unwrap();
    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.subscribers("a").await == Ok(0) }).await);
    change(&app, "a", true).await;
    change(&app, "b", false).await;
    let next = until_revision(&mut socket, "b", 2).await;
    assert_eq!(next["config_id"], json!("b"));
    app.stop().await;
}

/// A change racing a subscription is never lost: the registration happens
/// before the revision is read, so the change arrives one way or the other.
async fn subscribing_races_publishing(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let secret = app.create_config("race").await["secret"].as_str().unwrap().to_owned();
    for round in 0..40 {
        let known = revision(&app, "race").await;
        let mut socket = native_socket(&app).await;
        let message = json!({"type": "subscribe", "config_id": "race", "secret": secret, "revision": known});
        let (sent, ()) = tokio::join!(
            socket.send(Message::text(message.to_string())),
            change(&app, "race", round % 2 == 1)
        );
        sent.unwrap();
        let got = until_revision(&mut socket, "race", known + 1).await;
        assert_eq!(got["revision"], json!(known + 1), "round {round}");
        socket.close(None).await.unwrap();
    }
    app.stop().await;
}

/// A socket whose client reads nothing, with a small receive buffer so the
/// server's writes block soon.
async fn stalled_socket(app: &TestApp) -> Socket {
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(app.addr).await.unwrap();
    let (socket, _) = client_async(ws_url(app, "/api/v1/subscribe"), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    socket
}

fn notice(config_id: &str, revision: i64) -> ChangeNotice {
    ChangeNotice {
        config_id: config_id.into(),
        revision,
        update_time: revision,
        manual: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_client_gets_the_newest_revision_not_every_one() {
    let app = spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let secret = app.create_config("busy").await["secret"].as_str().unwrap().to_owned();
    let mut socket = stalled_socket(&app).await;
    subscribe(&mut socket, "busy", &secret, Some(revision(&app, "busy").await)).await;
    // Far more than the socket buffers hold, while the client reads nothing.
    let push = app.state().push.clone();
    let last = 20_000;
    for r in 2..=last {
        push.notify(notice("busy", r)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut frames = 0;
    loop {
        let update = next_json(&mut socket).await;
        frames += 1;
        if update["revision"] == json!(last) {
            break;
        }
    }
    assert!(
        frames < last / 2,
        "{frames} frames for {last} notices: nothing was coalesced"
    );
    assert_eq!(
        push.subscribers("busy").await,
        Ok(1),
        "a client that reads in time stays"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_whose_socket_stays_blocked_is_dropped() {
    let app = spawn(Backend::Sqlite, |s| s.push.write_timeout_ms = 300).await.unwrap();
    let mut socket = stalled_socket(&app).await;
    // Many configs with long ids, so each write is a large batch and the
    // socket's buffers (megabytes on loopback) fill in well under a second.
    let mut ids = Vec::new();
    for i in 0..100 {
        let id = format!("{i:03}-{}", "x".repeat(120));
        let secret = app.create_config(&id).await["secret"].as_str().unwrap().to_owned();
        subscribe(&mut socket, &id, &secret, Some(1)).await;
        ids.push(id);
    }
    let push = app.state().push.clone();
    let flood = push.clone();
    let writer = tokio::spawn(async move {
        for r in 2..100_000 {
            for id in &ids {
                if flood.notify(notice(id, r)).is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert!(
        eventually(WAIT, || async { push.stats().await.is_ok_and(|s| s.connections == 0) }).await,
        "a blocked client was kept"
    );
    writer.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_peer_is_dropped_and_a_live_one_kept() {
    let app = spawn(Backend::Sqlite, |s| {
        s.push.ping_interval_ms = 100;
        s.push.pong_timeout_ms = 200;
    })
    .await
    .unwrap();
    let config = app.create_config("ping").await;
    let secret = config["secret"].as_str().unwrap();
    let silent = compat_socket(&app, "ping", Some(secret)).await.unwrap();
    let mut live = compat_socket(&app, "ping", Some(secret)).await.unwrap();
    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.subscribers("ping").await == Ok(2) }).await);
    // The live client reads (and so answers pings) for a second; the silent
    // one never reads, so it never answers.
    let reader = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + Duration::from_millis(1200);
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until, live.next()).await {}
        live
    });
    let mut live = reader.await.unwrap();
    assert_eq!(push.subscribers("ping").await, Ok(1), "only the live client is left");
    drop(silent);
    let (status, _) = update(&app, "ping", Some(UPDATE_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next_json(&mut live).await["config_id"], json!("ping"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_change_is_announced_with_its_revision() {
    let app = spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let secret = app.create_config("all").await["secret"].as_str().unwrap().to_owned();
    let mut socket = native_socket(&app).await;
    let mut expected = revision(&app, "all").await;
    subscribe(&mut socket, "all", &secret, Some(expected)).await;
    let source = |n: i64| json!({"lang": "starlark", "source": format!("return {n}")});
    let v1 = app.create_version("all", source(1)).await;
    let v2 = app.create_version("all", source(2)).await;
    let steps: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/configs/all/release".into(),
            Some(json!({"code_id": v1})),
        ),
        (
            Method::POST,
            "/api/v1/configs/all/release".into(),
            Some(json!({"code_id": v2})),
        ),
        (
            Method::POST,
            "/api/v1/configs/all/gray".into(),
            Some(json!({"code_id": v1, "percentage": 5})),
        ),
        (Method::DELETE, "/api/v1/configs/all/gray".into(), None),
        (Method::POST, "/api/v1/configs/all/rollback".into(), None),
        (
            Method::PATCH,
            "/api/v1/configs/all".into(),
            Some(json!({"status": "inactive"})),
        ),
        (Method::POST, format!("/api/v1/configs/all/versions/{v2}/broken"), None),
        (
            Method::DELETE,
            format!("/api/v1/configs/all/versions/{v2}/broken"),
            None,
        ),
    ];
    for (method, path, body) in steps {
        let (status, reply) = app.admin(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {reply}");
        expected += 1;
        let update = until_revision(&mut socket, "all", expected).await;
        assert_eq!(update["revision"], json!(expected), "{method} {path}");
    }
    app.stop().await;
}

/// Short heartbeats, so that idling past three of them takes a second.
fn quick_pings(s: &mut vane::settings::Settings) {
    s.push.ping_interval_ms = 300;
    s.push.pong_timeout_ms = 200;
}

/// Three ping intervals and then some.
const IDLE: Duration = Duration::from_millis(1300);

/// A tokio-tungstenite client that keeps reading (and so answers pings, as
/// the library does) idles past three ping intervals on each protocol and
/// still hears the next change.
#[tokio::test(flavor = "multi_thread")]
async fn subscribers_that_answer_pings_stay_connected() {
    let app = spawn(Backend::Sqlite, quick_pings).await.unwrap();
    let secret = app.create_config("idle").await["secret"].as_str().unwrap().to_owned();
    let compat = compat_socket(&app, "idle", Some(&secret)).await.unwrap();
    let mut native = native_socket(&app).await;
    assert_eq!(
        subscribe(&mut native, "idle", &secret, None).await["type"],
        json!("subscribed")
    );
    let start = revision(&app, "idle").await;
    until_revision(&mut native, "idle", start).await;
    // Both read for the whole idle time: only pings arrive, and the library
    // answers each.
    let (compat, native) = tokio::join!(idle(compat), idle(native));
    let (mut compat, mut native) = (compat, native);
    let push = app.state().push.clone();
    assert_eq!(
        push.subscribers("idle").await,
        Ok(2),
        "a subscriber that answers pings was dropped"
    );
    change(&app, "idle", false).await;
    assert_eq!(next_json(&mut compat).await["config_id"], json!("idle"));
    until_revision(&mut native, "idle", start + 1).await;
    app.stop().await;
}

/// Reads for `IDLE`, failing on anything but control frames.
async fn idle(mut socket: Socket) -> Socket {
    let until = tokio::time::Instant::now() + IDLE;
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(until, socket.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("idle socket got {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings in {IDLE:?}");
    socket
}

/// The same with a client written by hand from RFC 6455 that answers each
/// ping with a pong and sends nothing else; a second raw client that never
/// answers is dropped beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_raw_client_that_answers_pings_stays_and_a_silent_one_goes() {
    use crate::common::raw_ws::{RawSocket, Seen};
    let app = spawn(Backend::Sqlite, quick_pings).await.unwrap();
    let secret = app.create_config("raw").await["secret"].as_str().unwrap().to_owned();
    let path = "/push/raw";
    let mut compat = RawSocket::open(app.addr, path, &[("Secret", &secret)]).await.unwrap();
    let mut silent = RawSocket::open(app.addr, path, &[("Secret", &secret)]).await.unwrap();
    let mut native = RawSocket::open(app.addr, "/api/v1/subscribe", &[]).await.unwrap();
    let message = json!({"type": "subscribe", "config_id": "raw", "secret": secret});
    native.send_text(&message.to_string()).await;
    let until = tokio::time::Instant::now() + IDLE;
    let mut native_seen = Vec::new();
    while tokio::time::Instant::now() < until {
        let slice = Duration::from_millis(50);
        assert!(
            compat.next(slice).await.is_none(),
            "the original client was told something while idle"
        );
        if let Some(seen) = native.next(slice).await {
            native_seen.push(seen);
        }
    }
    assert!(
        compat.pings >= 3 && native.pings >= 3,
        "pings: {} and {}",
        compat.pings,
        native.pings
    );
    assert!(
        matches!(native_seen.first(), Some(Seen::Text(t)) if t.contains("subscribed")),
        "{native_seen:?}"
    );
    assert!(
        native_seen.iter().all(|s| matches!(s, Seen::Text(_))),
        "the native client was closed: {native_seen:?}"
    );
    // The silent one never read, so never answered: it was dropped.
    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.subscribers("raw").await == Ok(2) }).await);
    change(&app, "raw", false).await;
    match compat.next(WAIT).await {
        Some(Seen::Text(text)) => assert!(text.contains("\"config_id\":\"raw\""), "{text}"),
        other => panic!("the original client heard {other:?}"),
    }
    loop {
        match native.next(WAIT).await {
            Some(Seen::Text(text)) if text.contains("\"update\"") => break,
            Some(Seen::Text(_)) => {}
            other => panic!("the native client heard {other:?}"),
        }
    }
    // What the silent client finds when it finally reads: the socket is gone.
    let mut seen = Vec::new();
    while let Some(frame) = silent.next(Duration::from_millis(500)).await {
        let closed = matches!(frame, Seen::Closed(_));
        seen.push(frame);
        if closed {
            break;
        }
    }
    assert!(
        matches!(seen.last(), Some(Seen::Closed(Some(1008)))),
        "the silent client was not told it was dropped (1008): {seen:?}"
    );
    app.stop().await;
}

/// A wave of original-protocol clients from one address, more than it may
/// hold: the refused ones are told the cap and when to come back, and are
/// slow to give up; the admitted ones idle past three ping intervals and
/// every one of them still hears the publish. A place given back is taken
/// by a refused client on its retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_wave_past_the_address_cap_keeps_every_admitted_client() {
    use crate::common::raw_ws::{RawSocket, Seen};
    const CAP: usize = 20;
    let app = spawn(Backend::Sqlite, |s| {
        quick_pings(s);
        s.push.max_sockets_per_address = CAP;
    })
    .await
    .unwrap();
    let secret = app.create_config("wave").await["secret"].as_str().unwrap().to_owned();
    let headers = [("Secret", secret.as_str())];
    let attempts =
        futures_util::future::join_all((0..CAP + 10).map(|_| RawSocket::open(app.addr, "/push/wave", &headers))).await;
    let (admitted, refused): (Vec<_>, Vec<_>) = attempts.into_iter().partition(Result::is_ok);
    assert_eq!((admitted.len(), refused.len()), (CAP, 10));
    for refusal in &refused {
        let text = refusal.as_ref().err().unwrap();
        assert!(text.starts_with("HTTP/1.1 429"), "{text}");
        let retry: u64 = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no Retry-After: {text}"));
        assert!((5..15).contains(&retry), "Retry-After: {retry}");
        assert!(text.contains(&format!("already holds {CAP} push sockets")), "{text}");
        assert!(text.contains("push.max_sockets_per_address"), "{text}");
    }
    // The admitted clients idle (answering pings) past three intervals while
    // the refused ones hang about; then the publish reaches every one.
    let mut admitted: Vec<RawSocket> = admitted.into_iter().map(Result::unwrap).collect();
    let idled = futures_util::future::join_all(admitted.iter_mut().map(|socket| socket.next(IDLE))).await;
    assert!(
        idled.iter().all(Option::is_none),
        "told something while idle: {idled:?}"
    );
    assert!(admitted.iter().all(|s| s.pings >= 3));
    let (status, _) = update(&app, "wave", Some(UPDATE_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    let heard = futures_util::future::join_all(admitted.iter_mut().map(|socket| socket.next(WAIT))).await;
    let told = heard
        .iter()
        .filter(|h| matches!(h, Some(Seen::Text(t)) if t.contains("\"config_id\":\"wave\"")))
        .count();
    assert_eq!(told, CAP, "{heard:?}");
    // One leaves; a refused client's retry takes its place.
    drop(admitted.pop());
    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.open_sockets() == CAP - 1 }).await);
    RawSocket::open(app.addr, "/push/wave", &headers)
        .await
        .expect("a retry after a place was given back");
    app.stop().await;
}
