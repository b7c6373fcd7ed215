//! The management half end to end: a config walked through versions, tests
//! that gate publishing, a forced release, a gray release, reports that break
//! it, a rollback, and the events that tell the story; then the compatible
//! report and test routes, and uploads that are refused.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vane::domain::gray::in_gray;

use crate::common;
use crate::common::{Backend, TestApp};

backend_tests!(a_config_lives_through_a_release_story, bad_uploads_name_the_rule);

const TESTS_SECRET: &str = "tests-secret-0123456789abcdef";
const THRESHOLD: u32 = 3;

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| {
        // The original's rule: this story keeps its absolute count.
        s.reports.rule = "count".into();
        s.reports.break_threshold = THRESHOLD;
        s.tests.secret = TESTS_SECRET.into();
    })
    .await
}

fn version_source(n: u32) -> Value {
    json!({"lang": "starlark", "source": format!("return {{'version': {n}, 'n': p['n']}}"),
           "params": [{"name": "n", "type": "int", "default": 0}]})
}

async fn add_test(app: &TestApp, code_id: &str, name: &str, expected: Value) -> String {
    let path = format!("/api/v1/configs/story/versions/{code_id}/tests");
    let body = json!({"name": name, "meta": {"platform": "ios"}, "params": {"n": 7}, "expected": expected});
    let (status, body) = app.admin(Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["test_id"].as_str().unwrap().to_owned()
}

/// Which version answered `device`.
async fn served(app: &TestApp, device: &str) -> (StatusCode, Value) {
    let body = json!({"meta": {"platform": "ios", "version": 1, "device_id": device}, "params": {}});
    let (status, body) = app.fetch("story", body).await;
    if status != StatusCode::OK {
        return (status, body);
    }
    let result: Value = serde_json::from_str(body["data"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["n"], json!(0), "the default of `n` was applied");
    (status, result["version"].clone())
}

async fn report(app: &TestApp, code_id: &str, secret: Option<&str>) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/report/story/{code_id}")))
        .json(&json!({"err_time": 1_700_000_000, "message": "NullPointerException"}));
    if let Some(secret) = secret {
        request = request.header("Secret", secret);
    }
    common::read(request.send().await.unwrap()).await
}

async fn a_config_lives_through_a_release_story(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let config = app.create_config("story").await;
    let secret = config["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64, "a random client secret per config");

    // v1, tested and released.
    let v1 = app.create_version("story", version_source(1)).await;
    add_test(&app, &v1, "v1 answers 1", json!({"version": 1, "n": 7})).await;
    app.release("story", &v1).await;

    // v2 has a failing test: publishing it is refused with the results.
    let v2 = app.create_version("story", version_source(2)).await;
    add_test(&app, &v2, "right", json!({"version": 2, "n": 7})).await;
    let wrong = add_test(&app, &v2, "wrong", json!({"version": 3, "n": 7})).await;
    let (status, run) = app
        .admin(
            Method::POST,
            &format!("/api/v1/configs/story/versions/{v2}/tests/run"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (run["passed"].clone(), run["failed"].clone()),
        (json!(1), json!(1)),
        "{run}"
    );
    let failing = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["passed"] == json!(false))
        .unwrap();
    assert_eq!(failing["test_id"], json!(wrong));
    assert_eq!(failing["actual"], json!({"version": 2, "n": 7}));
    assert_eq!(failing["expected"], json!({"version": 3, "n": 7}));
    for (path, body) in [
        ("/api/v1/configs/story/release", json!({"code_id": v2})),
        ("/api/v1/configs/story/gray", json!({"code_id": v2, "percentage": 10})),
    ] {
        let (status, body) = app.admin(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], json!("tests_failed"));
        assert_eq!(body["error"]["results"]["failed"], json!(1), "{body}");
    }
    assert_eq!(
        served(&app, "anyone").await.1,
        json!(1),
        "refused publishes changed nothing"
    );

    // Forced, it goes out.
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/configs/story/release",
            Some(json!({"code_id": v2, "force": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(served(&app, "anyone").await.1, json!(2));

    // v3 at 30%: exactly the devices the bucket formula selects get it.
    let v3 = app.create_version("story", version_source(3)).await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/configs/story/gray",
            Some(json!({"code_id": v3, "percentage": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices: Vec<String> = (0..120).map(|i| format!("device-{i}")).collect();
    let gray_devices: Vec<&String> = devices.iter().filter(|d| in_gray(d, &v3, 30)).collect();
    assert!((15..=60).contains(&gray_devices.len()), "{} of 120", gray_devices.len());
    for device in &devices {
        let expected = if in_gray(device, &v3, 30) { 3 } else { 2 };
        assert_eq!(served(&app, device).await.1, json!(expected), "{device}");
    }

    // Reports: a missing secret is 400, a wrong one 403, a version that is
    // not current 400; none of them count.
    assert_eq!(report(&app, &v3, None).await.0, StatusCode::BAD_REQUEST);
    let (status, body) = report(&app, &v3, Some("wrong-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.to_string().contains("wrong-secret"), "the secret is never echoed");
    assert_eq!(report(&app, &v1, Some(&secret)).await.0, StatusCode::BAD_REQUEST);
    for _ in 0..THRESHOLD {
        let (status, body) = report(&app, &v3, Some(&secret)).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"data": "", "message": "success"}))
        );
    }
    // Broken: the gray devices fall back to stable, and more reports are 403.
    for device in &gray_devices {
        assert_eq!(served(&app, device).await.1, json!(2), "{device}");
    }
    assert_eq!(report(&app, &v3, Some(&secret)).await.0, StatusCode::FORBIDDEN);
    let (_, reports) = app
        .admin(
            Method::GET,
            &format!("/api/v1/configs/story/versions/{v3}/reports"),
            None,
        )
        .await;
    assert_eq!(reports.as_array().unwrap().len(), THRESHOLD as usize);

    // Rollback: back to the stable version before v2.
    let (status, rolled) = app.admin(Method::POST, "/api/v1/configs/story/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["release"]["code_id"], json!(v1));
    assert_eq!(served(&app, "anyone").await.1, json!(1));
    let (status, refused) = app.admin(Method::POST, "/api/v1/configs/story/rollback", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        refused["error"]["message"],
        json!("config `story` has no earlier stable version to roll back to")
    );

    // The events tell the whole story, newest first.
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/story/events", None).await;
    let story: Vec<(String, String, bool)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["forced"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, bool)> = [
        ("rollback", "token:tester", false),
        ("broken", "reports", false),
        ("gray", "token:tester", false),
        ("uploaded", "token:tester", false),
        ("release", "token:tester", true),
        ("uploaded", "token:tester", false),
        ("release", "token:tester", false),
        ("uploaded", "token:tester", false),
        ("created", "token:tester", false),
    ]
    .into_iter()
    .map(|(k, a, f)| (k.to_owned(), a.to_owned(), f))
    .collect();
    assert_eq!(story, expected);
    let revisions: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    // An upload changes nothing clients see: it keeps the revision.
    assert_eq!(revisions, [6, 5, 4, 3, 3, 2, 2, 1, 1]);
    assert_eq!(events[0]["from"]["release"]["code_id"], json!(v2));
    assert_eq!(events[0]["to"]["release"]["code_id"], json!(v1));

    // The operator clears the mark; the gray devices get v3 again.
    let (status, _) = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/configs/story/versions/{v3}/broken"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served(&app, gray_devices[0]).await.1, json!(3));

    // The compatible test route, with its own secret and nested shape.
    let compat_test = |test_id: String, secret: Option<&'static str>| {
        let mut request = app.client.get(app.url(&format!("/test/{test_id}")));
        if let Some(secret) = secret {
            request = request.header("Secret", secret);
        }
        async move { common::read(request.send().await.unwrap()).await }
    };
    let (status, body) = compat_test(wrong.clone(), Some(TESTS_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], json!("success"));
    assert_eq!(body["data"]["data"]["succeed"], json!(false));
    assert!(body["data"]["data"]["duration"].as_u64().is_some());
    let inner = body["data"]["message"].as_str().unwrap();
    assert!(inner.starts_with("wrong output:\n"), "{inner}");
    assert!(inner.contains("\"version\":2"), "{inner}");
    let right = app
        .admin(Method::GET, &format!("/api/v1/configs/story/versions/{v2}/tests"), None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == json!("right"))
        .unwrap()["test_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = compat_test(right.clone(), Some(TESTS_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["data"]["data"]["succeed"].clone(), body["data"]["message"].clone()),
        (json!(true), json!("success"))
    );
    assert_eq!(compat_test(right.clone(), Some("nope")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(compat_test(right.clone(), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        compat_test("unknown".into(), Some(TESTS_SECRET)).await.0,
        StatusCode::BAD_REQUEST
    );

    // Deleting a test lets v2 through its gate.
    let (status, _) = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/configs/story/versions/{v2}/tests/{wrong}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/configs/story/release",
            Some(json!({"code_id": v2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

async fn bad_uploads_name_the_rule(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    app.create_config("story").await;
    let upload = |rules: Value, params: Value| json!({"lang": "starlark", "source": "return 1", "rules": rules, "params": params});
    for (body, needle) in [
        (
            upload(
                json!([{"platform": "ios", "rules": [[{"field": "colour", "compare": "=", "value": "1"}]]}]),
                json!([]),
            ),
            "rule 1 (ios), group 1, condition 1: unknown field `colour`",
        ),
        (
            upload(
                json!([{"platform": "ios", "rules": [[{"field": "version", "compare": "~", "value": "1"}]]}]),
                json!([]),
            ),
            "unknown operator `~`",
        ),
        (
            upload(
                json!([{"platform": "web", "rules": [[{"field": "version", "compare": ">", "value": "ten"}]]}]),
                json!([]),
            ),
            "rule 1 (web), group 1, condition 1: value \"ten\" is not an integer",
        ),
        (
            upload(
                json!([{"platform": "web", "rules": [[{"field": "version", "compare": ">", "value": "1", "x": 1}]]}]),
                json!([]),
            ),
            "unknown field `x`",
        ),
        (upload(json!([]), json!([{"name": "n", "type": "integer"}])), "entry 1"),
        (
            upload(json!([]), json!([{"name": "n", "type": "int", "default": "zero"}])),
            "default of `n`",
        ),
    ] {
        let (status, reply) = app
            .admin(Method::POST, "/api/v1/configs/story/versions", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message} should mention {needle}");
    }
    let (_, versions) = app.admin(Method::GET, "/api/v1/configs/story/versions", None).await;
    assert_eq!(versions, json!([]), "nothing was stored");
    app.stop().await;
}
