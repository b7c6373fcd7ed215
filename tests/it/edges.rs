//! The service's edges (issue 34): who the client is behind proxies, the
//! original routes switched off, bad paths, queries and lengths answered
//! in the JSON error shape at once.

use reqwest::StatusCode;
use serde_json::{Value, json};
use vane::settings::ClientToken;

use crate::common;
use crate::common::raw_ws::RawSocket;
use crate::common::{Backend, TestApp};

const CAP: usize = 2;

backend_tests!(every_previous_secret_keeps_its_own_grace);

async fn spawn(tweak: impl FnOnce(&mut vane::settings::Settings)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.client_address_header = "X-Forwarded-For".into();
        s.push.max_sockets_per_address = CAP;
        tweak(s);
    })
    .await
    .unwrap()
}

/// Opens a native socket claiming `forwarded`: the refusal's text, if refused.
async fn socket(app: &TestApp, forwarded: &str) -> Result<RawSocket, String> {
    RawSocket::open(app.addr, "/api/v1/subscribe", &[("X-Forwarded-For", forwarded)]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_address_from_an_untrusted_peer_is_ignored() {
    // The header is set but no proxy is trusted: 127.0.0.1 is every
    // client, however many addresses it claims.
    let app = spawn(|_| {}).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        match socket(&app, &format!("198.51.100.{i}")).await {
            Ok(s) => held.push(s),
            Err(text) => {
                assert!(text.starts_with("HTTP/1.1 429"), "{text}");
                assert!(text.contains("127.0.0.1 already holds 2 push sockets"), "{text}");
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (CAP, 40 - CAP));
    app.stop().await;

    // Trusted, but only 10.0.0.0/8: the peer (127.0.0.1) is still not one.
    let app = spawn(|s| s.server.trusted_proxies = vec!["10.0.0.0/8".into()]).await;
    let _held = [
        socket(&app, "1.1.1.1").await.unwrap(),
        socket(&app, "2.2.2.2").await.unwrap(),
    ];
    let text = socket(&app, "3.3.3.3").await.err().unwrap();
    assert!(text.contains("127.0.0.1 already holds"), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn through_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
    let app = spawn(|s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    // The left-most entry is whatever the client sent; the proxy appended
    // the address it saw.
    let _a = socket(&app, "6.6.6.6, 203.0.113.1").await.unwrap();
    let _b = socket(&app, "7.7.7.7, 203.0.113.1").await.unwrap();
    let text = socket(&app, "8.8.8.8, 203.0.113.1").await.err().unwrap();
    assert!(text.contains("203.0.113.1 already holds 2 push sockets"), "{text}");
    // Another client through the same proxy is its own address.
    let _c = socket(&app, "203.0.113.2").await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn through_a_chain_of_trusted_proxies_the_client_is_before_the_first() {
    let app =
        spawn(|s| s.server.trusted_proxies = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into(), "fd00::/8".into()]).await;
    let chain = "9.9.9.9, 203.0.113.7, 10.1.2.3, fd00::5";
    let _a = socket(&app, chain).await.unwrap();
    let _b = socket(&app, "203.0.113.7, 10.9.9.9").await.unwrap();
    let text = socket(&app, "5.5.5.5, 203.0.113.7, 10.0.0.1").await.err().unwrap();
    assert!(text.contains("203.0.113.7 already holds"), "{text}");
    // Only proxies: the one farthest from Vane is the client.
    let _c = socket(&app, "10.0.0.8, 10.0.0.9").await.unwrap();
    app.stop().await;
}

const WEB_TOKEN: &str = "web-client-token-0123456789";

fn with_token(s: &mut vane::settings::Settings) {
    s.ofrep.client_tokens = vec![ClientToken {
        name: "web".into(),
        token: WEB_TOKEN.into(),
        configs: vec!["app-*".into()],
    }];
}

async fn stream_url(app: &TestApp, headers: &[(&str, &str)]) -> Value {
    let mut request = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(WEB_TOKEN)
        .json(&json!({"context": {}}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["eventStreams"][0]["url"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_address_takes_forwarded_parts_only_from_a_trusted_proxy() {
    let forged = [
        ("Host", "vane.example:8443"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    let app = spawn(with_token).await;
    app.create_config("app-one").await;
    let url = stream_url(&app, &forged).await;
    let url = url.as_str().unwrap();
    assert!(
        url.starts_with("http://vane.example:8443/ofrep/v1/events?ticket="),
        "{url}"
    );
    // A Host that is not a host name gets no stream address, not a broken one.
    assert_eq!(stream_url(&app, &[("Host", "a\"b")]).await, Value::Null);
    // Without forged headers, the address the client connected to.
    let url = stream_url(&app, &[]).await;
    assert!(
        url.as_str()
            .unwrap()
            .starts_with(&format!("http://{}/ofrep/", app.addr)),
        "{url}"
    );
    app.stop().await;

    let app = spawn(|s| {
        with_token(s);
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    app.create_config("app-one").await;
    let url = stream_url(&app, &forged).await;
    assert!(
        url.as_str()
            .unwrap()
            .starts_with("https://evil.example/ofrep/v1/events?ticket="),
        "{url}"
    );
    app.stop().await;
}

fn meta() -> Value {
    json!({"meta": {"version": 1, "platform": "ios", "device_id": "d1"}, "params": {}})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_routes_can_be_switched_off() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.original_routes = false)
        .await
        .unwrap();
    app.released("app", "return 1", json!([])).await;
    let gone = [
        ("POST", "/config/app"),
        ("GET", "/push/app"),
        ("POST", "/update/app"),
        ("POST", "/report/app/c1"),
        ("GET", "/test/t1"),
    ];
    for (method, path) in gone {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url(path))
            .json(&meta())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::GONE, "{path}");
        let body: Value = response.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("server.original_routes"), "{path}: {body}");
        assert_eq!(body["error"]["code"], "original_routes_off");
    }
    // The native routes answer as ever.
    let (status, body) = app.post_json("/api/v1/configs/app/evaluate", meta()).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(1)), "{body}");
    app.stop().await;

    // On by default: the original fetch answers.
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.released("app", "return 1", json!([])).await;
    let (status, body) = app.fetch("app", meta()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_id_must_be_a_clean_path_segment() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    for id in [".", ".."] {
        let (status, body) = app
            .admin(reqwest::Method::POST, "/api/v1/configs", Some(json!({"id": id})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{id}: {body}");
        assert_eq!(body["error"]["code"], "invalid_config_id");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("clean path segment"),
            "{body}"
        );
    }
    let (status, body) = app
        .admin(reqwest::Method::POST, "/api/v1/configs", Some(json!({"id": "a b"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for id in ["...", ".hidden", "app.v2"] {
        app.create_config(id).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_may_start_at_most_a_year_ahead() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.create_config("app").await;
    let code_id = app
        .create_version("app", json!({"lang": "starlark", "source": "return 1"}))
        .await;
    let now = vane::domain::model::now_millis();
    for far in [now + 400 * 86_400_000, 253_402_300_800_000, 9_223_372_036_854_775_000] {
        let plan = json!({"code_id": code_id, "steps": [{"percentage": 100, "bake_s": 1}], "start_at": far});
        let (status, body) = app
            .admin(reqwest::Method::POST, "/api/v1/configs/app/plans", Some(plan))
            .await;
        assert!(status.is_client_error(), "{far}: {status} {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("start_at") && message.contains("a year ahead"),
            "{message}"
        );
    }
    let soon = json!({"code_id": code_id, "steps": [{"percentage": 100, "bake_s": 1}], "start_at": now + 3_600_000});
    let (status, body) = app
        .admin(reqwest::Method::POST, "/api/v1/configs/app/plans", Some(soon))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_paths_and_queries_answer_in_json() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let code_id = app.released("app", "return 1", json!([])).await;
    let (status, body) = app.admin(reqwest::Method::GET, "/api/v1/configs/%FF", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_path", "{body}");
    let reports = format!("/api/v1/configs/app/versions/{code_id}/reports");
    let (status, body) = app
        .admin(reqwest::Method::GET, &format!("{reports}?limit=many"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
    let (status, body) = app
        .admin(reqwest::Method::GET, &format!("{reports}?limit=5"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The original routes keep their envelope.
    let (status, body) = app.fetch("%FF", meta()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].is_string() && body["data"].is_null(), "{body}");
    let (status, body) = app.fetch("app", meta()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_length_over_the_limit_is_refused_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.released("app", "return 1", json!([])).await;
    for path in [
        "/api/v1/configs/app/evaluate",
        "/config/app",
        "/ofrep/v1/evaluate/flags/app",
    ] {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{{");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let read = tokio::time::timeout(std::time::Duration::from_secs(3), stream.read(&mut answer))
            .await
            .expect("no answer within 3 s")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("server.max_body_bytes"), "{path}: {answer}");
    }
    // A chunked body declares no length: it is refused once it passes the
    // limit, and the answer names the setting too.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /api/v1/configs/app/evaluate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "x".repeat(64 << 10));
    for _ in 0..40 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "chunked: {answer}");
    assert!(answer.contains("server.max_body_bytes"), "chunked: {answer}");
    let (status, body) = app.post_json("/api/v1/configs/app/evaluate", meta()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_404_carries_the_console_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    for (path, status) in [("/console/nope.js", 404), ("/console/app.js", 200)] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
    app.stop().await;
}

/// What ends `socket`: the close frame's code, or `None` if it ended
/// without one; `Err` if still open after `wait`.
async fn closed_with(socket: &mut common::ws::Socket, wait: std::time::Duration) -> Result<Option<u16>, ()> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(wait, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .map_err(|_| ())
}

/// Two rotations within the grace: the original and the second secret each
/// work until their own grace ends, then 403; a socket opened with a
/// secret is closed with 1008 when that secret's grace ends, and one opened
/// with the current secret stays.
async fn every_previous_secret_keeps_its_own_grace(backend: Backend) {
    use crate::common::ws::{compat_socket, native_socket, subscribe};
    use std::time::{Duration, Instant};
    const GRACE: Duration = Duration::from_secs(4);
    let Some(app) = TestApp::spawn_with(backend, |s| s.auth.secret_grace_s = GRACE.as_secs()).await else {
        return;
    };
    let original = app.create_config("app").await["secret"].as_str().unwrap().to_owned();
    let mut opened_with_original = compat_socket(&app, "app", Some(&original)).await.unwrap();
    let rotate = || async {
        let (status, body) = app
            .admin(reqwest::Method::POST, "/api/v1/configs/app/secret/rotate", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (Instant::now(), body)
    };
    let (first_at, first) = rotate().await;
    let second = first["secret"].as_str().unwrap().to_owned();
    tokio::time::sleep(GRACE / 2).await;
    let (second_at, third) = rotate().await;
    let third = third["secret"].as_str().unwrap().to_owned();
    let previous = &app.admin(reqwest::Method::GET, "/api/v1/configs/app", None).await.1["previous_secrets"];
    assert_eq!(previous.as_array().map(Vec::len), Some(2), "{previous}");

    // All three work while both graces run.
    for secret in [&original, &second, &third] {
        assert!(compat_socket(&app, "app", Some(secret)).await.is_ok());
    }
    let mut opened_with_second = native_socket(&app).await;
    assert_eq!(
        subscribe(&mut opened_with_second, "app", &second, None).await["type"],
        "subscribed"
    );
    let mut opened_with_third = compat_socket(&app, "app", Some(&third)).await.unwrap();

    // The original's grace ends: its socket is closed with 1008, the
    // others are not, and it is refused while the second still works.
    let left = (first_at + GRACE).saturating_duration_since(Instant::now());
    let code = closed_with(&mut opened_with_original, left + Duration::from_secs(3)).await;
    assert_eq!(code, Ok(Some(1008)));
    assert!(first_at.elapsed() >= GRACE - Duration::from_millis(100));
    assert_eq!(
        compat_socket(&app, "app", Some(&original)).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert!(compat_socket(&app, "app", Some(&second)).await.is_ok());

    // Then the second's.
    let left = (second_at + GRACE).saturating_duration_since(Instant::now());
    let code = closed_with(&mut opened_with_second, left + Duration::from_secs(3)).await;
    assert_eq!(code, Ok(Some(1008)));
    assert_eq!(
        compat_socket(&app, "app", Some(&second)).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    // The current secret's socket and secret are untouched.
    assert_eq!(
        closed_with(&mut opened_with_third, Duration::from_millis(300)).await,
        Err(())
    );
    assert!(compat_socket(&app, "app", Some(&third)).await.is_ok());
    app.stop().await;
}

/// No route, or a route asked with the wrong method: JSON in the route
/// family's shape (axum's own answers are empty), and a route still answers.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn(|_| {}).await;
    let (status, body) = app.admin(reqwest::Method::GET, "/api/v1/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], json!("not_found"), "{body}");
    let response = app
        .client
        .delete(app.url("/api/v1/configs"))
        .bearer_auth(common::BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        response
            .headers()
            .get("allow")
            .is_some_and(|a| a.to_str().unwrap().contains("POST"))
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("method_not_allowed"), "{body}");
    // The original route keeps its own envelope.
    let response = app.client.get(app.url("/config/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("does not take GET"),
        "{body}"
    );
    let (status, _) = app.admin(reqwest::Method::GET, "/api/v1/configs", None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// A report list's `limit` out of its range is refused by name, not
/// quietly clamped; one in range still lists.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_list_limit_out_of_range_is_refused() {
    let app = spawn(|_| {}).await;
    let (_, code_ids) = app.config_with("listed", &[1]).await;
    let path = |limit: &str| format!("/api/v1/configs/listed/versions/{}/reports?limit={limit}", code_ids[0]);
    for bad in ["0", "-1", "1001"] {
        let (status, body) = app.admin(reqwest::Method::GET, &path(bad), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad}: {body}");
        assert_eq!(body["error"]["code"], json!("invalid_query"), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("between 1 and 1000"),
            "{body}"
        );
    }
    let (status, body) = app.admin(reqwest::Method::GET, &path("1000"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}
