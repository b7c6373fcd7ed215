//! Configs as code, end to end through the `vane` binary: `test` offline,
//! `diff`, `apply` (twice, changing nothing the second time), `export` to a
//! second server, the test gate and approvals as a person meets them, and
//! malformed directories refused with their lines.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{BEARER, Backend, TestApp};

backend_tests!(
    a_directory_is_applied_once_and_promoted_unchanged,
    approvals_hold_what_apply_releases
);

/// Runs `vane <args>` against `app` with `token`; its exit code and output.
pub async fn vane(app: Option<&TestApp>, token: &str, args: &[&str]) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vane"));
    command.args(args).env("VANE_TOKEN", token).env_remove("VANE_SERVER");
    if let Some(app) = app {
        command.env("VANE_SERVER", app.url(""));
    }
    let out = command.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

pub fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const GREETING: &str = r#"
description = "Greeting shown on the home screen"
lang = "starlark"
source = "main.star"
params = [{ name = "version_code", type = "int" }]

[[tests]]
name = "new app gets valid"
meta = { platform = "iphone", version = 3, device_id = "d1" }
params = { version_code = 101 }
expected = "valid"

[[tests]]
name = "old app gets invalid"
params = { version_code = 99 }
expected = "invalid"
"#;

const GREETING_SOURCE: &str = "if p[\"version_code\"] > 100:\n    return \"valid\"\nreturn \"invalid\"\n";

const BANNER: &str = r#"
lang = "javascript"
source = "main.js"
release = "gray"
gray_percentage = 100

[[tests]]
name = "new banner"
expected = { text = "new" }

[stable]
source = "old.js"

[[stable.tests]]
name = "old banner"
expected = { text = "old" }
"#;

fn directory(dir: &Path) {
    write(dir, "greeting/config.toml", GREETING);
    write(dir, "greeting/main.star", GREETING_SOURCE);
    write(dir, "banner/config.toml", BANNER);
    write(dir, "banner/main.js", "return {text: \"new\"};\n");
    write(dir, "banner/old.js", "return {text: \"old\"};\n");
    write(dir, "README.md", "Not a config: plain files are skipped.\n");
}

async fn greeting(app: &TestApp, version_code: i64) -> Value {
    let body = json!({"meta": {"platform": "iphone", "version": 3, "device_id": "d1"}, "params": {"version_code": version_code}});
    let (status, answer) = app.fetch("greeting", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    serde_json::from_str(answer["data"]["result"].as_str().unwrap()).unwrap()
}

/// The configs' revisions, events and versions: what a second apply must not move.
async fn footprint(app: &TestApp, ids: &[&str]) -> Vec<(i64, usize, usize)> {
    let mut all = Vec::new();
    for id in ids {
        let (_, config) = app.admin(Method::GET, &format!("/api/v1/configs/{id}"), None).await;
        let (_, events) = app
            .admin(Method::GET, &format!("/api/v1/configs/{id}/events"), None)
            .await;
        let (_, versions) = app
            .admin(Method::GET, &format!("/api/v1/configs/{id}/versions"), None)
            .await;
        all.push((
            config["revision"].as_i64().unwrap(),
            events.as_array().unwrap().len(),
            versions.as_array().unwrap().len(),
        ));
    }
    all
}

async fn a_directory_is_applied_once_and_promoted_unchanged(backend: Backend) {
    let Some(staging) = TestApp::spawn(backend).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("configs");
    directory(&dir);
    let dir_arg = dir.to_str().unwrap();

    // Offline: no server named, the same engines; JUnit for CI.
    let junit = work.path().join("junit.xml");
    let (code, out) = vane(None, "", &["test", dir_arg, "--junit", junit.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 tests of 3 versions in 2 configs: 4 passed, 0 failed"),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"name="new app gets valid""#) && xml.contains(r#"failures="0""#),
        "{xml}"
    );

    // A config made by hand that the directory lacks.
    staging.released("legacy", "return 1", json!([])).await;

    let (code, out) = vane(Some(&staging), BEARER, &["diff", dir_arg]).await;
    assert_eq!(code, 2, "changes to make: {out}");
    assert!(
        out.contains("~ greeting: create the config") && out.contains("+return \"invalid\""),
        "{out}"
    );
    let (code, out) = vane(Some(&staging), BEARER, &["apply", dir_arg, "--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        staging.admin(Method::GET, "/api/v1/configs/greeting", None).await.0,
        StatusCode::NOT_FOUND
    );

    let (code, out) = vane(Some(&staging), BEARER, &["apply", dir_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 applied, 0 waiting for approval, 0 not applied"),
        "{out}"
    );
    assert_eq!(greeting(&staging, 101).await, json!("valid"));
    assert_eq!(greeting(&staging, 7).await, json!("invalid"));
    let (_, banner) = staging.admin(Method::GET, "/api/v1/configs/banner", None).await;
    assert_eq!(banner["gray"]["percentage"], 100, "{banner}");
    assert_ne!(banner["release"]["code_id"], banner["gray"]["code_id"], "{banner}");
    let (_, legacy) = staging.admin(Method::GET, "/api/v1/configs/legacy", None).await;
    assert_eq!(legacy["status"], "active", "left alone without --prune");

    // Applied again: nothing moves, not even an event.
    let before = footprint(&staging, &["greeting", "banner"]).await;
    let (code, out) = vane(Some(&staging), BEARER, &["apply", dir_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 applied, 0 waiting for approval, 0 not applied, 2 unchanged"),
        "{out}"
    );
    assert_eq!(footprint(&staging, &["greeting", "banner"]).await, before);
    let (code, out) = vane(Some(&staging), BEARER, &["diff", dir_arg]).await;
    assert_eq!(code, 0, "nothing to do: {out}");

    // A failing test: refused by name, nothing written.
    write(
        &dir,
        "greeting/main.star",
        &GREETING_SOURCE.replace("\"invalid\"", "\"nope\""),
    );
    let (code, out) = vane(Some(&staging), BEARER, &["test", dir_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("test `old app gets invalid`") && out.contains("actual:   \"nope\""),
        "{out}"
    );
    let (code, out) = vane(Some(&staging), BEARER, &["apply", dir_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("! greeting: NOT applied") && out.contains("old app gets invalid"),
        "{out}"
    );
    assert_eq!(
        footprint(&staging, &["greeting", "banner"]).await,
        before,
        "nothing half-applied"
    );

    // An edited source and its test: diff names it, apply releases it.
    write(
        &dir,
        "greeting/config.toml",
        &GREETING.replace("expected = \"invalid\"", "expected = \"nope\""),
    );
    let (code, out) = vane(Some(&staging), BEARER, &["diff", dir_arg]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("~ greeting: new version") && out.contains("+return \"nope\""),
        "{out}"
    );
    assert!(out.contains("= banner: unchanged"), "{out}");
    let (code, out) = vane(Some(&staging), BEARER, &["apply", dir_arg, "--prune"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(greeting(&staging, 7).await, json!("nope"));
    let (_, legacy) = staging.admin(Method::GET, "/api/v1/configs/legacy", None).await;
    assert_eq!(legacy["status"], "inactive", "--prune deactivates: {out}");
    assert_eq!(
        staging
            .admin(Method::GET, "/api/v1/configs/legacy/versions", None)
            .await
            .0,
        StatusCode::OK
    );

    // Promotion: export from staging, apply to an empty production.
    let exported = work.path().join("exported");
    let (code, out) = vane(Some(&staging), BEARER, &["export", exported.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    let Some(production) = TestApp::spawn(backend).await else {
        return;
    };
    let (code, out) = vane(Some(&production), BEARER, &["apply", exported.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    for id in ["greeting", "banner", "legacy"] {
        let path = format!("/api/v1/configs/{id}");
        let (_, there) = production.admin(Method::GET, &path, None).await;
        let (_, here) = staging.admin(Method::GET, &path, None).await;
        for key in ["release", "gray", "status", "description"] {
            assert_eq!(there[key], here[key], "{id} {key}: the same code ids and state");
        }
    }
    assert_eq!(greeting(&production, 7).await, json!("nope"));
    assert_eq!(greeting(&production, 101).await, json!("valid"));
    let (code, out) = vane(Some(&production), BEARER, &["diff", exported.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
}

async fn approvals_hold_what_apply_releases(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write(
        dir,
        "greeting/config.toml",
        &format!("approvals_required = 1\n{GREETING}"),
    );
    write(dir, "greeting/main.star", GREETING_SOURCE);
    let dir_arg = dir.to_str().unwrap();
    let (code, out) = vane(Some(&app), BEARER, &["apply", dir_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("waits for approval (change request"), "{out}");
    let (_, config) = app.admin(Method::GET, "/api/v1/configs/greeting", None).await;
    assert!(config["release"].is_null(), "held, not released: {config}");

    // Again: the same request waits; no second one is opened.
    let (code, out) = vane(Some(&app), BEARER, &["apply", dir_arg]).await;
    assert_eq!(code, 0, "{out}");
    let (_, open) = app
        .admin(Method::GET, "/api/v1/changes?config_id=greeting&state=open", None)
        .await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    let first = open[0]["id"].as_str().unwrap().to_owned();

    // The directory moves on before anyone approved: the superseded
    // request is cancelled, so no one can release what it no longer says.
    let edited = GREETING_SOURCE.replace("\"invalid\"", "\"old\"");
    write(dir, "greeting/main.star", &edited);
    write(
        dir,
        "greeting/config.toml",
        &format!("approvals_required = 1\n{GREETING}").replace("expected = \"invalid\"", "expected = \"old\""),
    );
    let (code, out) = vane(Some(&app), BEARER, &["apply", dir_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("cancel change request {first}")), "{out}");
    assert!(out.contains("1 waiting for approval"), "{out}");
    let (_, cancelled) = app.admin(Method::GET, &format!("/api/v1/changes/{first}"), None).await;
    assert_eq!(cancelled["change_request"]["state"], "cancelled", "{cancelled}");
    let (_, open) = app
        .admin(Method::GET, "/api/v1/changes?config_id=greeting&state=open", None)
        .await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");

    // Another person approves; then the directory and the server agree.
    let reviewer = app.make_token("reviewer", "publisher", &["*"]).await;
    let id = open[0]["id"].as_str().unwrap();
    let (status, approved) = app
        .as_token(&reviewer, Method::POST, &format!("/api/v1/changes/{id}/approve"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(greeting(&app, 7).await, json!("old"));
    let (code, out) = vane(Some(&app), BEARER, &["diff", dir_arg]).await;
    assert_eq!(code, 0, "{out}");

    // A token that may not release writes nothing, not even the upload.
    let editor = app.make_token("editor", "editor", &["*"]).await;
    write(dir, "fresh/config.toml", GREETING);
    write(dir, "fresh/main.star", GREETING_SOURCE);
    let (code, out) = vane(Some(&app), &editor, &["apply", dir_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("needs role publisher over `fresh`"), "{out}");
    assert_eq!(
        app.admin(Method::GET, "/api/v1/configs/fresh", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn malformed_directories_are_refused_by_file_and_line() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let cases: &[(&str, &str, &str)] = &[
        (
            "missing/config.toml",
            "source = \"main.star\"\n",
            "missing/config.toml:1: source",
        ),
        (
            "unknown/config.toml",
            "source = \"main.star\"\ncolour = \"red\"\n",
            "unknown/config.toml:2: unknown field `colour`",
        ),
        (
            "types/config.toml",
            "source = \"main.star\"\n\n[[tests]]\nname = \"t\"\nmeta = { version = \"three\" }\nexpected = 1\n",
            "types/config.toml:5: invalid type: string \"three\", expected i64",
        ),
        (
            "Not An Id/config.toml",
            "source = \"main.star\"\n",
            "Not An Id: the folder's name is the config id",
        ),
        (
            "gray/config.toml",
            "source = \"main.star\"\nrelease = \"gray\"\ngray_percentage = 101\n",
            "gray/config.toml:3: gray_percentage must be 0 to 100",
        ),
        (
            "schema/config.toml",
            "source = \"main.star\"\nparams = [{ name = \"x\", type = \"colour\" }]\n",
            "schema/config.toml:2: params:",
        ),
    ];
    for (file, text, _) in cases {
        write(dir, file, text);
    }
    for folder in ["unknown", "types", "Not An Id", "gray", "schema"] {
        write(dir, &format!("{folder}/main.star"), "return 1\n");
    }
    write(dir, "good/config.toml", "source = \"main.star\"\n");
    write(dir, "good/main.star", "return 1\n");
    let dir_arg = dir.to_str().unwrap();
    for command in ["test", "apply"] {
        let (code, out) = vane(Some(&app), BEARER, &[command, dir_arg]).await;
        assert_eq!(code, 2, "{command}: {out}");
        for (_, _, expected) in cases {
            assert!(out.contains(expected), "{command} does not say `{expected}`:\n{out}");
        }
    }
    let (code, out) = vane(Some(&app), BEARER, &["diff", dir_arg]).await;
    assert_eq!(code, 1, "diff: an error, not changes: {out}");
    let (_, configs) = app.admin(Method::GET, "/api/v1/configs", None).await;
    assert_eq!(configs, json!([]), "nothing applied, not even the good config");

    // A source that does not compile fails `vane test` with its reason,
    // and `apply` writes nothing for it, not even the config.
    let broken = tempfile::tempdir().unwrap();
    write(broken.path(), "bad/config.toml", "source = \"main.star\"\n");
    write(broken.path(), "bad/main.star", "return (\n");
    let (code, out) = vane(None, "", &["test", broken.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL bad/main.star: does not compile"), "{out}");
    let (code, out) = vane(Some(&app), BEARER, &["apply", broken.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad/main.star does not compile, nothing was written"),
        "{out}"
    );
    assert_eq!(
        app.admin(Method::GET, "/api/v1/configs/bad", None).await.0,
        StatusCode::NOT_FOUND
    );

    // `--prune` with an empty directory would deactivate everything.
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = vane(
        Some(&app),
        BEARER,
        &["apply", empty.path().to_str().unwrap(), "--prune"],
    )
    .await;
    assert_eq!(code, 2, "{out}");

    // Something that is not a Vane server is an error, not an empty one.
    let (code, out) = vane(None, BEARER, &["diff", dir_arg, "--server", "http://127.0.0.1:9"]).await;
    assert_eq!(code, 1, "{out}");
    let (code, out) = vane(None, BEARER, &["diff", "--no-such-flag", dir_arg]).await;
    assert_eq!(code, 1, "a usage error is not `changes`: {out}");
}

/// `examples/configs-as-code`: every `run: vane ...` line of its workflow,
/// in order, as the CI system would run it, against a server of the test's.
#[tokio::test]
async fn the_example_workflow_runs_as_written() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs-as-code");
    let work = tempfile::tempdir().unwrap();
    let copy = std::process::Command::new("cp")
        .arg("-r")
        .arg(example.join("configs"))
        .arg(work.path())
        .status()
        .unwrap();
    assert!(copy.success());
    let workflow = std::fs::read_to_string(example.join(".github/workflows/configs.yml")).unwrap();
    let commands: Vec<&str> = workflow
        .lines()
        .filter_map(|l| l.trim().strip_prefix("run: "))
        .filter(|c| c.starts_with("vane "))
        .collect();
    let verbs: Vec<&str> = commands.iter().map(|c| c.split(' ').nth(1).unwrap()).collect();
    assert_eq!(verbs, ["test", "diff", "apply", "diff", "apply"], "{commands:?}");
    let bin = Path::new(env!("CARGO_BIN_EXE_vane")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for command in commands {
        let out = tokio::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("VANE_SERVER", app.url(""))
            .env("VANE_TOKEN", BEARER)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{command}`: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(work.path().join("junit.xml").exists());
    assert_eq!(greeting(&app, 101).await, json!("valid"));
    let (_, banner) = app.admin(Method::GET, "/api/v1/configs/banner", None).await;
    assert_eq!(banner["gray"]["percentage"], 10, "{banner}");
}
