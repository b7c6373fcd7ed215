//! What one client's connection may hold: a trickled head, a stalled body
//! and an idle keep-alive are closed at their limits; at the connection cap
//! clients are refused fast rather than left hanging, and served again once
//! a place frees; push sockets that follow nothing, go silent or crowd in
//! from one address are dropped or refused. Every hit is counted.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common;
use crate::common::ws::{WAIT, native_socket, ws_url};
use crate::common::{Backend, TestApp, eventually};

async fn spawn(tweak: impl FnOnce(&mut vane::settings::Settings)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, tweak).await.unwrap()
}

async fn raw(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.app().addr).await.unwrap()
}

/// Reads until the server closes the connection; what it sent, and when.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Instant)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((String::from_utf8_lossy(&seen).into_owned(), Instant::now())),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// The counter `vane_connections_closed_total{reason}` or
/// `vane_push_dropped_clients_total{reason}`, as scraped now. The recorder
/// is the process's, shared with every other test's server: a test compares
/// what it did with a count it took before. Its connection closes once
/// answered, so it takes no place and meets no idle limit.
async fn counted(app: &TestApp, family: &str, reason: &str) -> f64 {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let response = client
        .get(app.url("/metrics"))
        .bearer_auth(common::BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let prefix = format!("{family}{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const CLOSED: &str = "vane_connections_closed_total";
const DROPPED: &str = "vane_push_dropped_clients_total";

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_head_and_an_idle_keep_alive_are_closed() {
    let app = spawn(|s| {
        s.server.header_timeout_ms = 300;
        s.server.idle_timeout_ms = 600;
    })
    .await;
    let (headers, idles) = (
        counted(&app, CLOSED, "header_timeout").await,
        counted(&app, CLOSED, "idle_timeout").await,
    );
    // Half a head, then nothing: closed at the header limit, not served.
    let mut slow = raw(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (said, _) = until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("a trickled head was kept");
    assert!(!said.contains("200 OK"), "{said}");
    // A connection that sends nothing at all is closed the same way.
    let mut mute = raw(&app).await;
    assert!(
        until_closed(&mut mute, Duration::from_secs(5)).await.is_some(),
        "a mute connection was kept"
    );

    // A served request, then silence: closed at the idle limit.
    let mut idle = raw(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        until_closed(&mut idle, Duration::from_secs(5)).await.is_some(),
        "an idle keep-alive was kept"
    );

    assert!(counted(&app, CLOSED, "header_timeout").await >= headers + 2.0);
    assert!(counted(&app, CLOSED, "idle_timeout").await >= idles + 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408() {
    let app = spawn(|s| s.server.body_timeout_ms = 300).await;
    app.create_config("slow").await;
    let before = counted(&app, CLOSED, "body_timeout").await;
    let mut stream = raw(&app).await;
    let head = "POST /api/v1/configs/slow/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"params\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (said, _) = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("a stalled body was kept");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("body_timeout"), "{said}");
    assert!(counted(&app, CLOSED, "body_timeout").await >= before + 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_clients_are_refused_fast_and_served_once_a_place_frees() {
    let app = spawn(|s| {
        s.server.max_connections = 3;
        s.server.header_timeout_ms = 1500;
    })
    .await;
    // Two hogs that send nothing; the third place is left for others.
    let mut hogs = vec![raw(&app).await, raw(&app).await];
    // Give the server time to admit them before the next one arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The last place serves a normal client: this one reads the count so far.
    let before = counted(&app, CLOSED, "max_connections").await;

    hogs.push(raw(&app).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut refused = raw(&app).await;
    let (said, _) = until_closed(&mut refused, Duration::from_secs(5))
        .await
        .expect("a refused client hung");
    assert!(
        said.starts_with("HTTP/1.1 503") && said.contains("Retry-After"),
        "{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusal took {:?}",
        started.elapsed()
    );

    // The hogs pass their header limit and free their places.
    for hog in &mut hogs {
        assert!(until_closed(hog, Duration::from_secs(5)).await.is_some());
    }
    let response = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(counted(&app, CLOSED, "max_connections").await >= before + 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_that_follows_nothing_is_closed_and_one_address_cannot_take_them_all() {
    let app = spawn(|s| {
        s.push.subscribe_deadline_ms = 300;
        s.push.max_sockets_per_address = 2;
    })
    .await;
    let (unsubscribed, crowded) = (
        counted(&app, DROPPED, "no_subscription").await,
        counted(&app, DROPPED, "per_address").await,
    );
    let mut idle = native_socket(&app).await;
    // Closed, not kept: close_code panics on a socket still open.
    let closed = common::ws::close_code(&mut idle, WAIT).await;
    assert_eq!(closed, Some(1008));
    assert!(counted(&app, DROPPED, "no_subscription").await >= unsubscribed + 1.0);

    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.open_sockets() == 0 }).await);
    let _first = native_socket(&app).await;
    let _second = native_socket(&app).await;
    let third = tokio_tungstenite::connect_async(ws_url(&app, "/api/v1/subscribe")).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("a third socket from one address was not refused: {other:?}"),
    }
    assert_eq!(push.open_sockets(), 2);
    assert!(counted(&app, DROPPED, "per_address").await >= crowded + 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_socket_is_dropped_at_ping_interval_plus_pong_timeout() {
    let app = spawn(|s| {
        s.push.ping_interval_ms = 1000;
        s.push.pong_timeout_ms = 100;
    })
    .await;
    let secret = app.create_config("quiet").await["secret"].as_str().unwrap().to_owned();
    let before = counted(&app, DROPPED, "silent").await;
    // Never read: tungstenite answers pings only while it is read.
    let silent = common::ws::compat_socket(&app, "quiet", Some(&secret)).await.unwrap();
    let opened = Instant::now();
    let push = app.state().push.clone();
    assert!(eventually(WAIT, || async { push.open_sockets() == 1 }).await);
    assert!(
        eventually(WAIT, || async { push.open_sockets() == 0 }).await,
        "a silent socket was kept"
    );
    // Before, it went at the second ping (2 s); now one ping and its pong
    // timeout (1.1 s) plus scheduling.
    assert!(
        opened.elapsed() < Duration::from_millis(1900),
        "dropped after {:?}",
        opened.elapsed()
    );
    assert!(counted(&app, DROPPED, "silent").await >= before + 1.0);
    drop(silent);
    app.stop().await;
}
