//! Params travel as the text a fetch sent (issue 39): what that text can
//! hide is named with a 4xx before any worker reads it, and nothing a
//! client sends crashes a worker. Found by an attacker's pass: serde_json's
//! number key turned `p` into a number, a number past a float's range
//! panicked Starlark's allocation (a worker restart per request), and lone
//! surrogates or deep nesting surfaced as the worker's own errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp};

async fn crashed(app: &TestApp) -> Value {
    let (_, pool) = app.admin(Method::GET, "/api/v1/admin/pool", None).await;
    json!([pool["crashed"], pool["killed"], pool["restarted"]])
}

/// Fetches `params` (JSON text) on the native and the original route.
async fn both(app: &TestApp, config: &str, params: &str) -> [(StatusCode, Value); 2] {
    let body = |cached: &str| format!(r#"{{"meta":{{"device_id":"d1"}},"cached":{cached},"params":{params}}}"#);
    let native = app
        .post_raw(&format!("/api/v1/configs/{config}/evaluate"), body("false"))
        .await;
    let original = app.post_raw(&format!("/config/{config}"), body("true")).await;
    [native, original]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_text_is_read_as_a_value_would_be_and_crashes_no_worker() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite always runs");
    app.released("echo", "return p", json!([])).await;
    let schema = json!([{"name": "n", "type": "int"}, {"name": "r", "type": "string", "default": "eu"}]);
    app.released("typed", "return p", schema).await;
    let before = crashed(&app).await;

    let key = "$serde_json::private::Number";
    let deep = format!(r#"{{"d":{}{}}}"#, "[".repeat(130), "]".repeat(130));
    for (config, params, code, says) in [
        (
            "echo",
            format!(r#"{{"{key}":"5"}}"#),
            "invalid_params",
            "must be a JSON object",
        ),
        // serde_json itself cannot read this one (its number key, then more).
        (
            "typed",
            format!(r#"{{"{key}":"5","n":1}}"#),
            "invalid_params",
            "params: ",
        ),
        ("echo", r#"{"s":"\ud800"}"#.to_owned(), "invalid_params", "hex escape"),
        (
            "typed",
            r#"{"n":1,"s":"\ud800"}"#.to_owned(),
            "invalid_params",
            "hex escape",
        ),
        ("echo", deep.clone(), "invalid_params", "levels deep"),
        (
            "typed",
            r#"{"n":[[[1]]]}"#.to_owned(),
            "invalid_params",
            "must be of type int, got array",
        ),
        (
            "echo",
            r#"{"x":1e400}"#.to_owned(),
            "execution_error",
            "is out of range",
        ),
        (
            "echo",
            r#"{"x":{"y":-1e309}}"#.to_owned(),
            "execution_error",
            "out of range",
        ),
    ] {
        for (status, body) in both(&app, config, &params).await {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{config} {params}: {body}");
            let text = body.to_string();
            assert!(text.contains(says), "{config} {params}: {body}");
            if body.get("error").is_some() {
                assert_eq!(body["error"]["code"], json!(code), "{config} {params}: {body}");
            }
        }
    }
    assert_eq!(
        crashed(&app).await,
        before,
        "a client's params crashed or killed a worker"
    );

    // What reads: the worker sees what a JSON value holds (sorted keys, the
    // last of a repeated key, serde_json's number key read as its number,
    // integers past 64 bits as floats), the schema check saw the same, defaults appended.
    for (config, params, want) in [
        (
            "echo",
            r#"{ "b" : 2, "a":1, "a":3 }"#.to_owned(),
            json!({"a": 3, "b": 2}),
        ),
        (
            "echo",
            format!(r#"{{"x":{{"\u0024{}":"7"}}}}"#, &key[1..]),
            json!({"x": 7}),
        ),
        // A float, as starlark's own reading of a JSON number makes it.
        (
            "echo",
            r#"{"big":123456789012345678901234567890}"#.to_owned(),
            json!({"big": 1.2345678901234568e29}),
        ),
        ("typed", r#"{"n":"x","n":2}"#.to_owned(), json!({"n": 2, "r": "eu"})),
        ("typed", "{ }".to_owned(), Value::Null),
    ] {
        let [(status, native), (_, original)] = both(&app, config, &params).await;
        if want.is_null() {
            assert_eq!(native["error"]["message"], json!("missing parameter `n`"), "{native}");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{params}: {native}");
        assert_eq!(native["result"], want, "{params}");
        let result: Value = serde_json::from_str(original["data"]["result"].as_str().unwrap()).unwrap();
        assert_eq!(result, want, "{params}");
    }
    assert_eq!(crashed(&app).await, before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_id_past_256_bytes_is_refused_on_every_route() {
    // Every fetch hashes the device id for the gray bucket: a megabyte one
    // (the body limit allows it) cost a millisecond per request.
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite always runs");
    app.released("echo", "return 1", json!([])).await;
    for (len, ok) in [(256, true), (257, false), (1 << 19, false)] {
        let id = "d".repeat(len);
        let body = format!(r#"{{"meta":{{"device_id":"{id}"}},"params":{{}}}}"#);
        let ofrep = format!(r#"{{"context":{{"targetingKey":"{id}"}}}}"#);
        for (path, body) in [
            ("/config/echo".to_owned(), body.clone()),
            ("/api/v1/configs/echo/evaluate".to_owned(), body),
            ("/ofrep/v1/evaluate/flags/echo".to_owned(), ofrep),
        ] {
            let (status, answer) = app.post_raw(&path, body).await;
            if ok {
                assert_eq!(status, StatusCode::OK, "{path} {len}: {answer}");
                continue;
            }
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {len}: {answer}");
            let text = answer.to_string();
            assert!(text.contains("256 bytes"), "{path} {len}: {answer}");
        }
    }
    app.stop().await;
}
