//! `vane import` from the Go service's MySQL tables, and proof that its
//! clients see no difference: the original's tables are built in MariaDB with
//! realistic rows, imported by the real command into each Vane backend, and
//! the original's routes then answer as the original did for that data.
//! The expected answers are written down here from the original's
//! documented behaviour: rules per platform, the gray formula
//! `fnv1a_32(device_id + gray_code_id) % 100 < percentage`, the parameter
//! check, 403 for an inactive config and for a broken version with nothing
//! to fall back to.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::ws::compat_socket;
use crate::common::{Backend, TestApp, TestDatabase, execute_on, mysql_url, store_url};

backend_tests!(an_imported_service_answers_its_clients_as_before);

/// The original's schema, as its gorm models made it.
const SCHEMA: &str = "
CREATE TABLE config (
    config_id     VARCHAR(128) PRIMARY KEY,
    code_release  VARCHAR(64),
    code_unittest VARCHAR(64),
    code_gray     VARCHAR(64),
    percentage    INT NOT NULL DEFAULT 0,
    status        VARCHAR(16) NOT NULL DEFAULT 'valid',
    secret        VARCHAR(64) NOT NULL
);
CREATE TABLE code (
    id        INT AUTO_INCREMENT PRIMARY KEY,
    code_id   VARCHAR(64) NOT NULL UNIQUE,
    lang      VARCHAR(16) NOT NULL,
    rules     TEXT,
    params    TEXT,
    code      TEXT NOT NULL,
    is_broken TINYINT(1) NOT NULL DEFAULT 0,
    err_count INT NOT NULL DEFAULT 0
);
CREATE TABLE unittest (
    test_id VARCHAR(64) PRIMARY KEY,
    input   TEXT,
    output  TEXT,
    code_id VARCHAR(64)
);
CREATE TABLE error_report (
    id       INT AUTO_INCREMENT PRIMARY KEY,
    `time`   BIGINT NOT NULL,
    message  TEXT NOT NULL,
    code_ref INT NOT NULL
);";

const IPHONE_10_UP: &str = r#"[{"platform":"iphone","rules":[[{"field":"version","compare":">=","value":"10"}]]}]"#;
const REGION: &str = r#"[{"name":"region","type":"string"}]"#;

/// The rows: both languages, rules, a gray release, a broken version, an
/// inactive config, test cases, reports, and rows Vane must refuse.
fn rows() -> String {
    let code =
        |id: i64, code_id: &str, lang: &str, rules: &str, params: &str, source: &str, broken: i64, errors: i64| {
            let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
            format!(
                "INSERT INTO code VALUES ({id}, {}, {}, {}, {}, {}, {broken}, {errors});",
                q(code_id),
                q(lang),
                q(rules),
                q(params),
                q(source)
            )
        };
    [
        "INSERT INTO config VALUES ('banner', 'banner-2', 'banner-2', 'banner-3', 30, 'valid', 'sec-banner-0123456789');",
        "INSERT INTO config VALUES ('theme', 'theme-1', NULL, NULL, 0, 'valid', 'sec-theme-0123456789');",
        "INSERT INTO config VALUES ('old-flag', 'old-1', NULL, NULL, 0, 'invalid', 'sec-old-0123456789');",
        "INSERT INTO config VALUES ('feed', 'feed-2', NULL, NULL, 0, 'valid', 'sec-feed-0123456789');",
        "INSERT INTO config VALUES ('json-cfg', 'enc-1', NULL, '', 0, 'valid', 'sec-json-0123456789');",
        "INSERT INTO config VALUES ('bad id!', 'bad-1', NULL, NULL, 0, 'valid', 'sec-bad-0123456789');",
        "INSERT INTO config VALUES ('typo', 'typo-1', NULL, NULL, 0, 'valid', 'sec-typo-0123456789');",
        "INSERT INTO config VALUES ('rules-x', 'rx-1', NULL, NULL, 0, 'valid', 'sec-rx-0123456789');",
        &code(1, "banner-1", "starlark", IPHONE_10_UP, REGION, "return {\"v\": 1}", 0, 0),
        &code(2, "banner-2", "starlark", IPHONE_10_UP, REGION, "return {\"region\": p[\"region\"], \"v\": 2}", 0, 0),
        &code(3, "banner-3", "starlark", IPHONE_10_UP, REGION, "return {\"region\": p[\"region\"], \"v\": 3}", 0, 0),
        &code(
            4,
            "theme-1",
            "javascript",
            "[]",
            r#"[{"name":"size","type":"int"}]"#,
            "return {color: \"blue\", size: p.size * 2}",
            0,
            0,
        ),
        &code(5, "old-1", "starlark", "", "", "return 1", 0, 0),
        &code(6, "feed-2", "starlark", "[]", "[]", "return \"feed\"", 1, 12),
        &code(7, "bad-1", "starlark", "[]", "[]", "return 0", 0, 0),
        &code(8, "typo-1", "starlark", "[]", "[]", "return {", 0, 0),
        &code(
            9,
            "rx-1",
            "starlark",
            r#"[{"platform":"iphone","rules":[[{"field":"version","compare":"~","value":"1"}]]}]"#,
            "[]",
            "return 1",
            0,
            0,
        ),
        &code(
            10,
            "enc-1",
            "starlark",
            "[]",
            r#"[{"name":"name","type":"string"}]"#,
            "return encode({\"b\": [1, 2], \"a\": p[\"name\"]})",
            0,
            0,
        ),
        r#"INSERT INTO unittest VALUES ('t-pass', '{"region":"eu"}', '{"region":"eu","v":2}', 'banner-2');"#,
        r#"INSERT INTO unittest VALUES ('t-fail', '{"region":"us"}', '{"region":"eu","v":2}', 'banner-2');"#,
        r#"INSERT INTO unittest VALUES ('t-orphan', '{}', '{"v":1}', 'banner-1');"#,
        "INSERT INTO error_report VALUES (1, 1700000000, 'NPE in feed', 6);",
        "INSERT INTO error_report VALUES (2, 1700000100, 'again', 6);",
        "INSERT INTO error_report VALUES (3, 1700000200, 'lost', 99);",
    ]
    .join("\n")
}

/// Runs `vane import` as an operator would; its exit code and output.
fn import(from: &str, settings: &std::path::Path, dry_run: bool) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vane"));
    command.args(["import", "--from", from, "--config"]).arg(settings);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().expect("vane import runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

fn fnv1a_32(text: &str) -> u32 {
    text.bytes()
        .fold(0x811c_9dc5, |h: u32, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

async fn an_imported_service_answers_its_clients_as_before(backend: Backend) {
    let Some(server) = mysql_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((url, db)) = store_url(backend, dir.path()).await else {
        return;
    };
    let original = TestDatabase::create(&server).await;
    execute_on(&original.url, &format!("{SCHEMA}\n{}", rows())).await;
    let settings = dir.path().join("vane.toml");
    std::fs::write(&settings, format!("[store]\nurl = \"{url}\"\n")).unwrap();

    // The summary, and every row left out with its reason.
    let (code, dry) = import(&original.url, &settings, true);
    assert_eq!(code, 3, "{dry}");
    assert!(
        dry.contains("config: 8 rows read; configs: 7 would be created"),
        "{dry}"
    );
    assert!(dry.contains("dry run: nothing was written"), "{dry}");
    let (code, first) = import(&original.url, &settings, false);
    assert_eq!(code, 3, "{first}");
    for line in [
        "config: 8 rows read; configs: 7 created, 0 updated, 0 unchanged; 3 refused",
        "code: 10 rows read; versions: 6 created, 0 updated, 0 unchanged; 4 refused",
        "unittest: 3 rows read; test cases: 2 created, 0 updated, 0 unchanged; 1 refused",
        "error_report: 3 rows read; reports: 2 created, 0 updated, 0 unchanged; 1 refused",
        "config config_id `bad id!`: config id `bad id!` may contain only letters",
        "config config_id `typo`: its release version `typo-1` was not imported",
        "code id 1 (code_id `banner-1`): no config points at it",
        "code id 7 (code_id `bad-1`): its config `bad id!` was left out",
        "code id 8 (code_id `typo-1`): the source does not compile",
        "code id 9 (code_id `rx-1`): rules: ",
        "unittest test_id `t-orphan`: its version `banner-1` was not imported",
        "error_report id 3: its version (code.id 99) was not imported",
    ] {
        assert!(first.contains(line), "no `{line}` in:\n{first}");
    }
    // A second run changes nothing.
    let (code, second) = import(&original.url, &settings, false);
    assert_eq!(code, 3, "{second}");
    for line in [
        "configs: 0 created, 0 updated, 7 unchanged",
        "versions: 0 created, 0 updated, 6 unchanged",
        "test cases: 0 created, 0 updated, 2 unchanged",
        "reports: 0 created, 0 updated, 2 unchanged",
    ] {
        assert!(second.contains(line), "no `{line}` in:\n{second}");
    }

    let app = TestApp::spawn_on(url, db, dir).await;
    clients_see_no_difference(&app).await;
    operators_see_what_was_imported(&app).await;

    // A config whose secret Vane changed is not the original's any more:
    // a later import leaves it, and what it holds, as they are.
    let (status, _) = app
        .admin(Method::POST, "/api/v1/configs/theme/secret/rotate", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (code, third) = import(&original.url, &settings, false);
    assert_eq!(code, 3, "{third}");
    for line in [
        "config config_id `theme`: Vane has a config by this id with another secret",
        "code code_id `theme-1`: its config `theme` is left as it is",
        "configs: 0 created, 0 updated, 6 unchanged",
    ] {
        assert!(third.contains(line), "no `{line}` in:\n{third}");
    }
    app.stop().await;
    original.drop_database().await;
}

async fn clients_see_no_difference(app: &TestApp) {
    let ask = |platform: &str, version: i64, device: &str, params: Value| json!({"meta": {"platform": platform, "version": version, "device_id": device}, "params": params, "cached": false});
    // The gray formula picks the same devices as the original did.
    let mut grays = 0;
    for i in 0..40 {
        let device = format!("device-{i}");
        let (status, body) = app
            .fetch("banner", ask("iphone", 12, &device, json!({"region": "eu"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let gray = fnv1a_32(&format!("{device}banner-3")) % 100 < 30;
        grays += usize::from(gray);
        let (code_id, v) = if gray { ("banner-3", 3) } else { ("banner-2", 2) };
        assert_eq!(body["data"]["code_id"], code_id, "{device}");
        let result: Value = serde_json::from_str(body["data"]["result"].as_str().unwrap()).unwrap();
        assert_eq!(result, json!({"region": "eu", "v": v}));
    }
    assert!((3..=25).contains(&grays), "{grays} of 40 in gray");
    // Rules: iphone needs version 10; a platform with no entry is served.
    let (status, body) = app
        .fetch("banner", ask("iphone", 9, "d", json!({"region": "eu"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .fetch("banner", ask("android", 1, "d", json!({"region": "eu"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The parameter check names what is missing.
    let (status, body) = app.fetch("banner", ask("android", 1, "d", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("region"), "{body}");
    // JavaScript, and the original's predeclared json functions.
    let (status, body) = app.fetch("theme", ask("web", 1, "d", json!({"size": 3}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["result"], r#"{"color":"blue","size":6}"#);
    let (_, body) = app.fetch("json-cfg", ask("web", 1, "d", json!({"name": "x"}))).await;
    assert_eq!(body["data"]["result"], r#""{\"a\":\"x\",\"b\":[1,2]}""#);
    // Inactive, and broken with nothing to fall back to: 403.
    let (status, body) = app.fetch("old-flag", ask("web", 1, "d", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app.fetch("feed", ask("web", 1, "d", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A config whose release could not come has nothing to serve.
    let (status, body) = app.fetch("typo", ask("web", 1, "d", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Push and reports take the secrets the apps hold.
    assert!(
        compat_socket(app, "banner", Some("sec-banner-0123456789"))
            .await
            .is_ok()
    );
    assert_eq!(
        compat_socket(app, "banner", Some("sec-theme-0123456789")).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    let report = |code_id: &str| {
        app.client
            .post(app.url(&format!("/report/banner/{code_id}")))
            .header("Secret", "sec-banner-0123456789")
            .json(&json!({"err_time": 1_700_000_500, "message": "could not parse"}))
            .send()
    };
    let response = report("banner-2").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"data": "", "message": "success"})
    );
    assert_eq!(report("banner-1").await.unwrap().status(), StatusCode::BAD_REQUEST);

    // The original's test cases run by their own ids.
    let run = |test_id: &str| {
        app.client
            .get(app.url(&format!("/test/{test_id}")))
            .header("Secret", "tests-secret-0123456789abcdef")
            .send()
    };
    let passed: Value = run("t-pass").await.unwrap().json().await.unwrap();
    assert_eq!(passed["data"]["data"]["succeed"], true, "{passed}");
    assert_eq!(passed["data"]["message"], "success");
    let failed: Value = run("t-fail").await.unwrap().json().await.unwrap();
    assert_eq!(failed["data"]["data"]["succeed"], false, "{failed}");
    assert!(
        failed["data"]["message"].as_str().unwrap().starts_with("wrong output:"),
        "{failed}"
    );
}

async fn operators_see_what_was_imported(app: &TestApp) {
    let (_, banner) = app.admin(Method::GET, "/api/v1/configs/banner", None).await;
    assert_eq!(banner["secret"], "sec-banner-0123456789");
    assert_eq!(banner["status"], "active");
    assert_eq!(banner["release"], json!({"code_id": "banner-2"}));
    assert_eq!(banner["gray"], json!({"code_id": "banner-3", "percentage": 30}));
    let (_, old) = app.admin(Method::GET, "/api/v1/configs/old-flag", None).await;
    assert_eq!(old["status"], "inactive");
    let (_, feed) = app
        .admin(Method::GET, "/api/v1/configs/feed/versions/feed-2", None)
        .await;
    assert_eq!(
        (feed["broken"].clone(), feed["error_count"].clone()),
        (json!(true), json!(12))
    );
    let (_, reports) = app
        .admin(Method::GET, "/api/v1/configs/feed/versions/feed-2/reports", None)
        .await;
    let messages: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["again", "NPE in feed"]);
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/banner/events", None).await;
    assert!(
        events.as_array().unwrap().iter().all(|e| e["actor"] == "import"),
        "{events}"
    );
}
