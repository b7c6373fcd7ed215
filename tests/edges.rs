//! The service's edges (issue 34): who the client is behind proxies, the
//! original routes switched off, bad paths, queries and lengths answered
//! in the JSON error shape at once.

mod common;

use common::raw_ws::RawSocket;
use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vane::settings::ClientToken;

const CAP: usize = 2;

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
    let _held = [socket(&app, "1.1.1.1").await.unwrap(), socket(&app, "2.2.2.2").await.unwrap()];
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
    let app = spawn(|s| s.server.trusted_proxies = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into(), "fd00::/8".into()]).await;
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
    assert!(url.starts_with("http://vane.example:8443/ofrep/v1/events?ticket="), "{url}");
    // A Host that is not a host name gets no stream address, not a broken one.
    assert_eq!(stream_url(&app, &[("Host", "a\"b")]).await, Value::Null);
    // Without forged headers, the address the client connected to.
    let url = stream_url(&app, &[]).await;
    assert!(url.as_str().unwrap().starts_with(&format!("http://{}/ofrep/", app.addr)), "{url}");
    app.stop().await;

    let app = spawn(|s| {
        with_token(s);
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    app.create_config("app-one").await;
    let url = stream_url(&app, &forged).await;
    assert!(url.as_str().unwrap().starts_with("https://evil.example/ofrep/v1/events?ticket="), "{url}");
    app.stop().await;
}
