//! OFREP's event stream (ADR 0008), on every backend: it says
//! `refetchEvaluation` when a config in the client token's scope changes, and
//! only then; it opens with the ticket, never the token; it gives its place
//! back when closed, and shutdown ends it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vane::settings::ClientToken;

use crate::common;
use crate::common::{Backend, TestApp};

backend_tests!(
    the_event_stream_says_refetch_for_changes_in_scope,
    a_reload_takes_new_tokens_and_ends_streams_of_removed_ones,
);

const WEB_TOKEN: &str = "web-client-token-0123456789";

fn with_token(settings: &mut vane::settings::Settings) {
    settings.ofrep.client_tokens = vec![ClientToken {
        name: "web".into(),
        token: WEB_TOKEN.into(),
        configs: vec!["app-*".into()],
    }];
}

/// Reads events from an SSE response until one arrives or `within` passes.
async fn next_event(response: &mut reqwest::Response, buffer: &mut String, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            // Keep-alive comments are not events.
            if event.lines().all(|l| l.starts_with(':')) {
                continue;
            }
            return Some(event);
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.ok()?.ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A bulk evaluation with the web token: its flags and its event stream.
async fn bulk(app: &TestApp) -> Value {
    let response = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(WEB_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

async fn the_event_stream_says_refetch_for_changes_in_scope(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_token).await else {
        return;
    };
    app.released("app-a", "return 1", json!([])).await;
    app.released("elsewhere", "return 1", json!([])).await;
    let body = bulk(&app).await;
    let url = body["eventStreams"][0]["url"].as_str().unwrap().to_owned();

    let refused = app
        .client
        .get(app.url("/ofrep/v1/events?ticket=wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let token_as_ticket = app
        .client
        .get(app.url(&format!("/ofrep/v1/events?ticket={WEB_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        token_as_ticket.status(),
        StatusCode::UNAUTHORIZED,
        "the stream takes the ticket, not the token"
    );

    let mut events = app.client.get(&url).send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    // Out of scope: nothing. Then in scope: one event, naming that change.
    let other = app
        .create_version("elsewhere", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    app.release("elsewhere", &other).await;
    let newer = app
        .create_version("app-a", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    app.release("app-a", &newer).await;
    let event = next_event(&mut events, &mut buffer, Duration::from_secs(10))
        .await
        .expect("an event");
    assert!(
        event.contains("id: app-a@3"),
        "the first event is for app-a's change: {event}"
    );
    let data = event.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["type"], "refetchEvaluation");
    assert!(data["lastModified"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(
        next_event(&mut events, &mut buffer, Duration::from_millis(300)).await,
        None
    );

    // The stream holds one of its address's places, and gives it back.
    assert_eq!(app.state().push.event_streams(), 1);
    drop(events);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            app.state().push.event_streams() == 0
        })
        .await,
        "a closed stream kept listening"
    );
    // Shutting down ends open streams, so shutdown does not wait on them.
    let mut events = app.client.get(&url).send().await.unwrap();
    let started = std::time::Instant::now();
    app.stop().await;
    tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await
    .expect("the stream never ended");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} on a stream",
        started.elapsed()
    );
}

async fn bulk_status(app: &TestApp, token: &str) -> StatusCode {
    let response = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    response.status()
}

async fn a_reload_takes_new_tokens_and_ends_streams_of_removed_ones(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_token).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vane.toml");
    app.app().set_settings_source(file.clone(), true);
    app.released("app-a", "return 1", json!([])).await;
    let body = bulk(&app).await;
    let url = body["eventStreams"][0]["url"].as_str().unwrap().to_owned();
    let mut events = app.client.get(&url).send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);

    // The web token is replaced by another one.
    let rotated = "web-client-token-rotated-0123";
    std::fs::write(
        &file,
        format!("[sandbox]\nworkers = 2\nmin_workers = 2\n[[ofrep.client_tokens]]\nname = \"web\"\ntoken = \"{rotated}\"\nconfigs = [\"app-*\"]\n"),
    )
    .unwrap();
    let (status, plan) = app.admin(Method::POST, "/api/v1/admin/reload", None).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let applied = plan["applied"].to_string();
    assert!(
        applied.contains("ofrep.client_tokens") && applied.contains("(hidden)"),
        "{plan}"
    );
    assert!(
        !applied.contains(rotated),
        "a token's value showed in the reload plan: {plan}"
    );
    assert_eq!(bulk_status(&app, WEB_TOKEN).await, StatusCode::UNAUTHORIZED);
    assert_eq!(bulk_status(&app, rotated).await, StatusCode::OK);

    // The old token's stream ends by itself.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the removed token's stream stayed open");
    app.stop().await;
}

/// Two nodes over PostgreSQL and Redis: a stream open on one hears a change
/// made on the other (the ChangeBus delivers it to that node's registry,
/// which passes it to the feed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_hears_a_change_made_on_another_node() {
    let Some(nodes) = TestApp::cluster(2, with_token).await else {
        return;
    };
    let (one, two) = (&nodes[0], &nodes[1]);
    one.released("app-a", "return 1", json!([])).await;
    let body = bulk(two).await;
    assert_eq!(body["flags"][0]["value"], 1, "{body}");
    let url = body["eventStreams"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        url.contains(&two.addr.to_string()),
        "the stream is on the node asked: {url}"
    );
    let mut events = two.client.get(&url).send().await.unwrap();
    let mut buffer = String::new();
    let newer = one
        .create_version("app-a", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    one.release("app-a", &newer).await;
    let event = next_event(&mut events, &mut buffer, Duration::from_secs(10))
        .await
        .expect("the other node's change reached the stream");
    assert!(
        event.contains("id: app-a@3") && event.contains("refetchEvaluation"),
        "{event}"
    );
    drop(events);
    for node in nodes {
        node.stop().await;
    }
}
