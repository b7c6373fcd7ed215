//! Conformance with a real OpenFeature SDK: the Python SDK and its OFREP
//! provider (`openfeature-sdk`, `openfeature-provider-ofrep` from PyPI) read
//! Vane through `tests/ofrep/sdk_conformance.py`. `.ci/run` installs them into
//! its virtual environment and fails if this test was skipped.
//!
//! The Python is `VANE_TEST_OFREP_PYTHON`, else the CI environment's under
//! `target/ci-venv`; without one that imports the provider, it says it skipped.

use std::path::PathBuf;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common;
use crate::common::{Backend, TestApp};

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("VANE_TEST_OFREP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("ci-venv/bin/python")
        });
    let imports = Command::new(&candidate)
        .args(["-c", "import openfeature.contrib.provider.ofrep, requests"])
        .output()
        .is_ok_and(|out| out.status.success());
    imports.then_some(candidate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_openfeature_sdk_reads_vane() {
    let Some(python) = python() else {
        common::skipped(
            "OpenFeature SDK",
            "no Python with openfeature-provider-ofrep (set VANE_TEST_OFREP_PYTHON, or run .ci/run)",
        );
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite always runs");
    let mut codes = serde_json::Map::new();
    for (id, source, params) in [
        ("sdk-flag", "return True", json!([])),
        ("sdk-text", "return 'hello'", json!([])),
        ("sdk-number", "return 2.5", json!([])),
        ("sdk-int", "return 42", json!([])),
        (
            "sdk-object",
            "return {'city': p['city'], 'n': len(p['city'])}",
            json!([{"name": "city", "type": "string"}]),
        ),
        ("sdk-gray", "return 1", json!([])),
        ("sdk-off", "return 'on'", json!([])),
        ("sdk-failing", "return 1 // 0", json!([])),
    ] {
        codes.insert(id.into(), app.released(id, source, params).await.into());
    }
    app.create_config("sdk-ruled").await;
    let ruled = app
        .create_version(
            "sdk-ruled",
            json!({"lang": "starlark", "source": "return 'new'",
                   "rules": [{"platform": "ios", "rules": [[{"field": "version", "compare": ">=", "value": 3}]]}]}),
        )
        .await;
    app.release("sdk-ruled", &ruled).await;
    let gray = app
        .create_version("sdk-gray", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    let (status, _) = app
        .admin(
            Method::POST,
            "/api/v1/configs/sdk-gray/gray",
            Some(json!({"code_id": gray, "percentage": 50})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .admin(
            Method::PATCH,
            "/api/v1/configs/sdk-off",
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let setup = json!({"base": format!("http://{}", app.addr), "codes": codes});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ofrep/sdk_conformance.py");
    let run = tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(setup.to_string()).output())
        .await
        .unwrap()
        .expect("python runs");
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the SDK run failed:\n{out}\n{err}");
    assert!(out.contains("conformance: every check passed"), "{out}");
    app.stop().await;
}
