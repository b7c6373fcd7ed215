//! A version is its content: the same upload to the same config is the
//! version it already is, and gets the same code id on every server.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Backend, TestApp};

backend_tests!(a_version_is_its_content);

async fn a_version_is_its_content(backend: Backend) {
    let Some(staging) = TestApp::spawn(backend).await else {
        return;
    };
    let upload = json!({"lang": "starlark", "source": "return {\"n\": 1}", "params": [{"name": "x", "type": "int"}]});
    staging.create_config("app").await;
    let path = "/api/v1/configs/app/versions";
    let (status, first) = staging.admin(Method::POST, path, Some(upload.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = staging.admin(Method::POST, path, Some(upload.clone())).await;
    assert_eq!(status, StatusCode::OK, "the same content uploaded again: {again}");
    assert_eq!(again["code_id"], first["code_id"]);
    let (_, events) = staging.admin(Method::GET, "/api/v1/configs/app/events", None).await;
    let uploads = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "uploaded")
        .count();
    assert_eq!(
        uploads, 1,
        "a second upload of the same content wrote an event: {events}"
    );
    let (_, versions) = staging.admin(Method::GET, path, None).await;
    assert_eq!(versions.as_array().unwrap().len(), 1);

    // Other rules, another config: other versions.
    let mut ruled = upload.clone();
    ruled["rules"] = json!([{"platform": "*", "rules": [[{"field": "version", "compare": ">=", "value": "2"}]]}]);
    let (status, other) = staging.admin(Method::POST, path, Some(ruled)).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(other["code_id"], first["code_id"]);
    staging.create_config("app2").await;
    let (status, elsewhere) = staging
        .admin(Method::POST, "/api/v1/configs/app2/versions", Some(upload.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(elsewhere["code_id"], first["code_id"]);

    // Another server, its own database: the same id for the same content.
    let Some(production) = TestApp::spawn(backend).await else {
        return;
    };
    production.create_config("app").await;
    let (status, there) = production.admin(Method::POST, path, Some(upload)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        there["code_id"], first["code_id"],
        "staging and production name the version alike"
    );
    production.stop().await;
    staging.stop().await;
}
