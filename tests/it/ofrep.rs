//! The OpenFeature Remote Evaluation Protocol (OFREP) against its
//! specification, on every backend: single evaluation's shapes, reasons and
//! error codes for every kind of refusal; credentials; bulk evaluation
//! scoped by client tokens with its ETag and 304. The event stream is in
//! `ofrep_events.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vane::settings::{ClientToken, PausedJobs};

use crate::common;
use crate::common::faulty::Mode;
use crate::common::{Backend, TestApp};

backend_tests!(
    single_evaluation_answers_values_reasons_and_errors,
    credentials_are_checked_when_presented_or_required,
    bulk_evaluation_answers_a_tokens_configs_with_an_etag,
    bulk_evaluation_rides_out_a_store_outage,
);

const WEB_TOKEN: &str = "web-client-token-0123456789";
const OTHER_TOKEN: &str = "other-client-token-0123456789";

fn with_tokens(settings: &mut vane::settings::Settings) {
    settings.ofrep.client_tokens = vec![
        ClientToken {
            name: "web".into(),
            token: WEB_TOKEN.into(),
            configs: vec!["app-*".into()],
        },
        ClientToken {
            name: "other".into(),
            token: OTHER_TOKEN.into(),
            configs: vec!["elsewhere".into()],
        },
    ];
}

async fn evaluate(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    app.post_json(&format!("/ofrep/v1/evaluate/flags/{key}"), body).await
}

async fn upload(app: &TestApp, config: &str, version: Value) -> String {
    app.create_version(config, version).await
}

async fn single_evaluation_answers_values_reasons_and_errors(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sandbox.paused_jobs = PausedJobs::Shed).await else {
        return;
    };
    // One config per type OpenFeature knows.
    let flag = app.released("flag", "return True", json!([])).await;
    app.released("text", "return 'hello'", json!([])).await;
    app.released("number", "return 2.5", json!([])).await;
    let object = app
        .released(
            "object",
            "return {'city': p['city'], 'n': len(p['city'])}",
            json!([{"name": "city", "type": "string"}]),
        )
        .await;
    let (status, body) = evaluate(&app, "flag", json!({"context": {"targetingKey": "d1"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"key": "flag", "value": true, "reason": "STATIC", "variant": flag, "metadata": {"revision": 2}})
    );
    assert_eq!(evaluate(&app, "text", json!({})).await.1["value"], "hello");
    assert_eq!(evaluate(&app, "number", json!({})).await.1["value"], 2.5);
    let (status, body) = evaluate(&app, "object", json!({"context": {"city": "Oslo"}})).await;
    assert_eq!(
        (status, &body["value"]),
        (StatusCode::OK, &json!({"city": "Oslo", "n": 4}))
    );
    assert_eq!(body["variant"], object.as_str());

    // Rules that apply and pass: TARGETING_MATCH; that refuse: INVALID_CONTEXT.
    app.create_config("ruled").await;
    let ruled = upload(
        &app,
        "ruled",
        json!({"lang": "starlark", "source": "return 'new'",
               "rules": [{"platform": "ios", "rules": [[{"field": "version", "compare": ">=", "value": 3}]]}]}),
    )
    .await;
    app.release("ruled", &ruled).await;
    let ios = |version: Value| json!({"context": {"platform": "ios", "version": version}});
    let (status, body) = evaluate(&app, "ruled", ios(json!(5))).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("TARGETING_MATCH")),
        "{body}"
    );
    assert_eq!(
        evaluate(&app, "ruled", ios(json!(5.0))).await.0,
        StatusCode::OK,
        "a float with no fraction is an integer"
    );
    let (status, body) = evaluate(&app, "ruled", ios(json!(2))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorCode"], "INVALID_CONTEXT");
    assert!(body["errorDetails"].as_str().unwrap().contains("rules"), "{body}");
    let (_, body) = evaluate(&app, "ruled", json!({"context": {"platform": "android"}})).await;
    assert_eq!(body["reason"], "STATIC", "no rule applies to android");

    // The parameter schema, the context's own shape and the body.
    let (status, body) = evaluate(&app, "object", json!({"context": {"city": 7}})).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CONTEXT"))
    );
    assert_eq!(body["key"], "object");
    assert!(body["errorDetails"].as_str().unwrap().contains("`city`"), "{body}");
    let (_, body) = evaluate(&app, "object", json!({"context": {}})).await;
    assert!(
        body["errorDetails"].as_str().unwrap().contains("city"),
        "a missing parameter is named: {body}"
    );
    let (status, body) = evaluate(&app, "flag", json!({"context": {"targetingKey": 12}})).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CONTEXT"))
    );
    assert!(body["errorDetails"].as_str().unwrap().contains("targetingKey"));
    assert_eq!(
        evaluate(&app, "flag", json!({"context": [1]})).await.1["errorCode"],
        "INVALID_CONTEXT"
    );
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/ofrep/v1/evaluate/flags/flag"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, body) = common::read(raw("{not json").await.unwrap()).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("PARSE_ERROR"))
    );
    assert_eq!(body["key"], "flag");
    let (status, body) = common::read(raw("").await.unwrap()).await;
    assert_eq!(
        (status, &body["value"]),
        (StatusCode::OK, &json!(true)),
        "no body is an empty context"
    );

    // Unknown, off, unreleased, broken, failing.
    let (status, body) = evaluate(&app, "nothing-here", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"key": "nothing-here", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "config `nothing-here` does not exist"})
    );
    let (status, _) = app
        .admin(
            Method::PATCH,
            "/api/v1/configs/text",
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = evaluate(&app, "text", json!({})).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("DISABLED")),
        "{body}"
    );
    assert!(body.get("value").is_none(), "the caller's default stands: {body}");
    app.create_config("unreleased").await;
    let (_, body) = evaluate(&app, "unreleased", json!({})).await;
    assert_eq!(body["reason"], "DEFAULT");
    assert!(body.get("value").is_none());
    let (status, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/configs/flag/versions/{flag}/broken"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = evaluate(&app, "flag", json!({})).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("GENERAL")),
        "{body}"
    );
    assert!(body["errorDetails"].as_str().unwrap().contains("broken"));
    app.released("failing", "return 1 // 0", json!([])).await;
    let (_, body) = evaluate(&app, "failing", json!({})).await;
    assert_eq!(body["errorCode"], "GENERAL");
    assert!(body["errorDetails"].as_str().unwrap().contains("failing"), "{body}");

    // Gray: SPLIT, the same bucket as the original route, and no bucket
    // without a targeting key.
    let gray = upload(&app, "number", json!({"lang": "starlark", "source": "return 7"})).await;
    let (status, _) = app
        .admin(
            Method::POST,
            "/api/v1/configs/number/gray",
            Some(json!({"code_id": gray, "percentage": 50})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut sides = std::collections::HashSet::new();
    for i in 0..40 {
        let device = format!("device-{i}");
        let (_, ours) = evaluate(&app, "number", json!({"context": {"targetingKey": device}})).await;
        let (_, original) = app.fetch("number", json!({"meta": {"device_id": device}})).await;
        assert_eq!(ours["reason"], "SPLIT");
        assert_eq!(ours["variant"], original["data"]["code_id"], "{device}");
        sides.insert(ours["variant"].as_str().unwrap().to_owned());
    }
    assert_eq!(sides.len(), 2, "forty devices all landed on one side of a 50 % gray");
    let (status, body) = evaluate(&app, "number", json!({"context": {"city": "x"}})).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("TARGETING_KEY_MISSING"))
    );

    // Shed: 503 with Retry-After.
    app.state().pool.pause();
    let response = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/object"))
        .json(&json!({"context": {"city": "Rome"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    app.state().pool.resume();
    app.stop().await;
}

async fn credentials_are_checked_when_presented_or_required(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_tokens).await else {
        return;
    };
    let secret = app.create_config("app-x").await["secret"].as_str().unwrap().to_owned();
    let code = upload(&app, "app-x", json!({"lang": "starlark", "source": "return 1"})).await;
    app.release("app-x", &code).await;
    let ask = |header: &'static str, value: String| {
        app.client
            .post(app.url("/ofrep/v1/evaluate/flags/app-x"))
            .header(header, value)
            .json(&json!({}))
            .send()
    };
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(ask("authorization", format!("Bearer {secret}")).await.unwrap()),
        StatusCode::OK
    );
    assert_eq!(status(ask("x-api-key", secret.clone()).await.unwrap()), StatusCode::OK);
    assert_eq!(
        status(ask("x-api-key", WEB_TOKEN.into()).await.unwrap()),
        StatusCode::OK
    );
    let forbidden = ask("authorization", format!("Bearer {OTHER_TOKEN}")).await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN, "a token scoped elsewhere");
    assert!(forbidden.text().await.unwrap().is_empty(), "401 and 403 carry no body");
    let wrong = ask("authorization", "Bearer wrong-secret".into()).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().is_empty());
    app.stop().await;

    let Some(app) = TestApp::spawn_with(backend, |s| {
        with_tokens(s);
        s.ofrep.require_credentials = true;
    })
    .await
    else {
        return;
    };
    let secret = app.create_config("app-y").await["secret"].as_str().unwrap().to_owned();
    let (status, _) = evaluate(&app, "app-y", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "credentials required and none given");
    let response = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/app-y"))
        .bearer_auth(&secret)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!((status, &body["reason"]), (StatusCode::OK, &json!("DEFAULT")));
    // Without good credentials, an unknown config is no different from a known one.
    for key in ["app-y", "no-such-config"] {
        let response = app
            .client
            .post(app.url(&format!("/ofrep/v1/evaluate/flags/{key}")))
            .bearer_auth("a-guess")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{key}");
    }
    let scoped_elsewhere = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/no-such-config"))
        .bearer_auth(OTHER_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(scoped_elsewhere.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn bulk(app: &TestApp, token: Option<&str>, context: Value, etag: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .json(&json!({"context": context}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    request.send().await.unwrap()
}

async fn bulk_evaluation_answers_a_tokens_configs_with_an_etag(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_tokens).await else {
        return;
    };
    let banner = app.released("app-banner", "return {'text': 'hi'}", json!([])).await;
    app.released("app-limit", "return p['n'] * 2", json!([{"name": "n", "type": "int"}]))
        .await;
    app.released("elsewhere", "return 0", json!([])).await;
    app.create_config("app-off").await;
    app.admin(
        Method::PATCH,
        "/api/v1/configs/app-off",
        Some(json!({"status": "inactive"})),
    )
    .await;

    assert_eq!(
        bulk(&app, None, json!({}), None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bulk(&app, Some("wrong"), json!({}), None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let context = json!({"targetingKey": "d1", "n": 21});
    let response = bulk(&app, Some(WEB_TOKEN), context.clone(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body: Value = response.json().await.unwrap();
    let flags = body["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        ["app-banner", "app-limit", "app-off"],
        "only the token's configs, in order"
    );
    assert_eq!(
        flags[0],
        json!({"key": "app-banner", "value": {"text": "hi"}, "reason": "STATIC", "variant": banner, "metadata": {"revision": 2}})
    );
    assert_eq!(flags[1]["value"], 42);
    assert_eq!(flags[2]["reason"], "DISABLED");
    let stream = &body["eventStreams"][0];
    assert_eq!(stream["type"], "sse");
    assert!(
        stream["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://{}/ofrep/v1/events?ticket=", app.addr))
    );
    assert_eq!(stream["inactivityDelaySec"], 120);

    // Unchanged: 304 with the same tag, any of several, or weak.
    let again = bulk(&app, Some(WEB_TOKEN), context.clone(), Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    let listed = format!("\"other\", W/{etag}");
    assert_eq!(
        bulk(&app, Some(WEB_TOKEN), context.clone(), Some(&listed))
            .await
            .status(),
        StatusCode::NOT_MODIFIED
    );
    // Another context, or a change to a config in scope: a new tag.
    let other = bulk(
        &app,
        Some(WEB_TOKEN),
        json!({"targetingKey": "d1", "n": 1}),
        Some(&etag),
    )
    .await;
    assert_eq!(other.status(), StatusCode::OK);
    let updated = upload(
        &app,
        "app-banner",
        json!({"lang": "starlark", "source": "return {'text': 'bye'}"}),
    )
    .await;
    app.release("app-banner", &updated).await;
    let changed = bulk(&app, Some(WEB_TOKEN), context.clone(), Some(&etag)).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["flags"][0]["value"], json!({"text": "bye"}));

    // A flag's own failure stays in its entry; the rest answer.
    let (_, body) = read_bulk(bulk(&app, Some(WEB_TOKEN), json!({"targetingKey": "d1"}), None).await).await;
    assert_eq!(body["flags"][0]["value"], json!({"text": "bye"}));
    assert_eq!(body["flags"][1]["errorCode"], "INVALID_CONTEXT", "{body}");
    let (status, body) = read_bulk(bulk(&app, Some(WEB_TOKEN), json!("text"), None).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorCode"], "INVALID_CONTEXT");
    assert!(body.get("key").is_none(), "a bulk failure names no flag: {body}");
    app.stop().await;

    // A token that reads more configs than allowed is refused, saying so.
    let Some(app) = TestApp::spawn_with(backend, |s| {
        with_tokens(s);
        s.ofrep.max_bulk_flags = 1;
    })
    .await
    else {
        return;
    };
    app.released("app-a", "return 1", json!([])).await;
    app.released("app-b", "return 2", json!([])).await;
    let (status, body) = read_bulk(bulk(&app, Some(WEB_TOKEN), json!({}), None).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errorDetails"].as_str().unwrap().contains("ofrep.max_bulk_flags"),
        "{body}"
    );
    app.stop().await;
}

async fn read_bulk(response: reqwest::Response) -> (StatusCode, Value) {
    common::read(response).await
}

async fn bulk_evaluation_rides_out_a_store_outage(backend: Backend) {
    let tweak = |s: &mut vane::settings::Settings| {
        with_tokens(s);
        s.ofrep.catalog_max_age_ms = 10;
        s.store.wait_ms = 300;
    };
    let Some((app, store)) = TestApp::spawn_faulty(backend, tweak).await else {
        return;
    };
    app.released("app-a", "return 'a'", json!([])).await;
    let (status, before) = read_bulk(bulk(&app, Some(WEB_TOKEN), json!({}), None).await).await;
    assert_eq!(status, StatusCode::OK);
    // The list is past its age, and the store fails or hangs: the last list
    // and memory's entries answer.
    for mode in [Mode::Fail, Mode::Block] {
        store.set_mode(mode);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let (status, during) = read_bulk(bulk(&app, Some(WEB_TOKEN), json!({}), None).await).await;
        assert_eq!((status, &during), (StatusCode::OK, &before), "{mode:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{mode:?} took {:?}",
            started.elapsed()
        );
    }
    store.set_mode(Mode::Normal);
    app.stop().await;

    // With no list read yet, it is a 503 to retry, not an empty answer.
    let Some((app, store)) = TestApp::spawn_faulty(backend, tweak).await else {
        return;
    };
    store.set_mode(Mode::Fail);
    let response = bulk(&app, Some(WEB_TOKEN), json!({}), None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    store.set_mode(Mode::Normal);
    app.stop().await;
}
