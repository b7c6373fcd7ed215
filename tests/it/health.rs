//! Health signals end to end, on every backend: a report counts only from a
//! distinct network that was served the version, a version breaks on a share
//! of its served networks, a broken stable version rolls back by itself, a
//! rotated secret keeps working through its grace, and bad reports are
//! refused by name without losing what is stored.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vane::domain::gray::in_gray;

use crate::common;
use crate::common::networks::{Net, Route};
use crate::common::ws::{compat_socket, native_socket, subscribe, until_revision};
use crate::common::{Backend, TestApp};

backend_tests!(
    a_storm_from_one_source_breaks_nothing,
    a_share_of_the_served_networks_stops_gray,
    a_broken_stable_version_rolls_back_by_itself,
    a_rotated_secret_works_through_its_grace,
    bad_reports_are_refused_by_name,
);

fn version(n: i64) -> Value {
    json!({"lang": "starlark", "source": format!("return {n}")})
}

/// A native fetch as `device`: the code id served and the result.
async fn fetch_as(app: &TestApp, config_id: &str, device: &str) -> (StatusCode, Value) {
    let body = json!({"meta": {"platform": "ios", "device_id": device}, "cached": false});
    app.post_json(&format!("/api/v1/configs/{config_id}/evaluate"), body)
        .await
}

async fn report_as(app: &TestApp, config_id: &str, secret: &str, body: Value) -> (StatusCode, Value) {
    let request = app
        .client
        .post(app.url(&format!("/api/v1/configs/{config_id}/reports")))
        .header("Secret", secret)
        .json(&body);
    common::read(request.send().await.unwrap()).await
}

async fn client_report(app: &TestApp, config_id: &str, secret: &str, code_id: &str, device: &str) -> Value {
    let body = json!({"code_id": code_id, "device_id": device, "message": "NullPointerException"});
    let (status, receipt) = report_as(app, config_id, secret, body).await;
    assert!(status.is_success(), "{status} {receipt}");
    receipt
}

async fn summary(app: &TestApp, config_id: &str, code_id: &str) -> Value {
    let path = format!("/api/v1/configs/{config_id}/versions/{code_id}/reports/summary");
    let (status, body) = app.admin(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn listed(app: &TestApp, config_id: &str, code_id: &str) -> Vec<Value> {
    let path = format!("/api/v1/configs/{config_id}/versions/{code_id}/reports?limit=1000");
    let (status, body) = app.admin(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

async fn a_storm_from_one_source_breaks_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (secret, code_ids) = app.config_with("storm", &[1]).await;
    let v1 = &code_ids[0];
    assert_eq!(fetch_as(&app, "storm", "attacker").await.0, StatusCode::OK);
    // One machine, however many device ids it claims, is one network.
    for round in 0..20 {
        let reports = (0..50).map(|i| {
            let body =
                json!({"code_id": v1, "device_id": format!("attacker-{i}"), "message": format!("boom {round}-{i}")});
            report_as(&app, "storm", &secret, body)
        });
        for (status, receipt) in join_all(reports).await {
            assert!(status.is_success(), "{status} {receipt}");
        }
    }
    // The original's route, from the same address, 200 times more.
    for _ in 0..200 {
        let request = app
            .client
            .post(app.url(&format!("/report/storm/{v1}")))
            .header("Secret", &secret)
            .json(&json!({"err_time": 1_700_000_000, "message": "boom"}));
        assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    }
    let health = summary(&app, "storm", v1).await;
    assert_eq!(health["broken"], json!(false), "{health}");
    assert_eq!(health["counted_sources"], json!(1), "{health}");
    // Stored: the one that counted and a few repeats of its network, on
    // either route. Not 1,200.
    let stored = listed(&app, "storm", v1).await;
    assert!(stored.len() <= 10, "{} reports stored", stored.len());
    assert!(
        stored.iter().all(|r| r["source"] == json!("network:127.0.0.0/24")),
        "{stored:?}"
    );
    assert_eq!(fetch_as(&app, "storm", "someone").await.1["result"], json!(1));
    app.stop().await;
}

async fn a_share_of_the_served_networks_stops_gray(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.reports.break_ratio = 0.4).await else {
        return;
    };
    let (secret, code_ids) = app.config_with("gray", &[1]).await;
    let v2 = app.create_version("gray", version(2)).await;
    let body = json!({"code_id": v2, "percentage": 50});
    let (status, body) = app.admin(Method::POST, "/api/v1/configs/gray/gray", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (grays, stables): (Vec<String>, Vec<String>) = (0..200)
        .map(|i| format!("device-{i}"))
        .partition(|d| in_gray(d, &v2, 50));
    // 40 networks fetch as gray devices (1 to 40), 40 as stable ones (41 to
    // 80); each network's device sees its own side of the split.
    let gray_nets = Net::many(&app, 1, 40);
    let stable_nets = Net::many(&app, 41, 40);
    for (net, device) in gray_nets.iter().zip(&grays) {
        let (_, served) = net.fetch(Route::Native, "gray", device).await;
        assert_eq!(served.unwrap().0, v2);
    }
    for (net, device) in stable_nets.iter().zip(&stables) {
        let (_, served) = net.fetch(Route::Native, "gray", device).await;
        assert_eq!(served.unwrap().0, code_ids[0]);
    }
    // Networks served the stable version, and networks never served at all,
    // report against gray, as gray devices even: none of it counts.
    let never = Net::many(&app, 200, 2);
    for net in stable_nets[..30].iter().chain(&never) {
        let (_, receipt) = net.report(Route::Native, "gray", &secret, &v2, &grays[0]).await;
        assert_eq!(receipt["reason"], json!("not_served"), "{receipt}");
    }
    // 15 of 40 is short of 40%; kinds that are not the version's fault
    // never count, whoever sends them.
    for (net, device) in gray_nets[..15].iter().zip(&grays) {
        let (_, receipt) = net.report(Route::Native, "gray", &secret, &v2, device).await;
        assert_eq!(
            (receipt["counted"].clone(), receipt["broke"].clone()),
            (json!(true), json!(false)),
            "{receipt}"
        );
    }
    let body = json!({"code_id": v2, "device_id": grays[15], "kind": "render", "message": "undefined value"});
    let request = gray_nets[15]
        .client
        .post(app.url("/api/v1/configs/gray/reports"))
        .header("Secret", &secret)
        .json(&body);
    assert_eq!(
        common::read(request.send().await.unwrap()).await.1["reason"],
        json!("kind")
    );
    let health = summary(&app, "gray", &v2).await;
    assert_eq!(
        (
            health["served_networks"].clone(),
            health["counted_sources"].clone(),
            health["broken"].clone()
        ),
        (json!(40), json!(15), json!(false)),
        "{health}"
    );
    assert_eq!(
        health["served_devices"], health["served_networks"],
        "the old name stays"
    );
    // The 16th distinct served network breaks it, on the original route
    // too: gray stops for everyone.
    let (status, _) = gray_nets[15].report(Route::Original, "gray", &secret, &v2, "").await;
    assert_eq!(status, StatusCode::OK);
    let health = summary(&app, "gray", &v2).await;
    assert_eq!(
        (&health["broken"], &health["broken_by"]),
        (&json!(true), &json!("reports")),
        "{health}"
    );
    for (net, device) in gray_nets.iter().zip(&grays) {
        let (_, served) = net.fetch(Route::Native, "gray", device).await;
        assert_eq!(served.unwrap().0, code_ids[0]);
    }
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/gray/events", None).await;
    let broken = &events[0];
    assert_eq!(
        (broken["kind"].clone(), broken["actor"].clone()),
        (json!("broken"), json!("reports"))
    );
    let evidence = &broken["detail"]["evidence"];
    assert_eq!(
        (evidence["counted_sources"].clone(), evidence["served_networks"].clone()),
        (json!(16), json!(40)),
        "{broken}"
    );
    assert_eq!(evidence["window_s"], json!(600));
    let health = summary(&app, "gray", &v2).await;
    let ignored: i64 = health["window"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["counted"] == json!(false))
        .map(|c| c["reports"].as_i64().unwrap())
        .sum();
    assert_eq!(ignored, 33, "{health}");
    app.stop().await;
}

async fn a_broken_stable_version_rolls_back_by_itself(backend: Backend) {
    let tweak = |s: &mut vane::settings::Settings| {
        s.reports.min_sources = 4;
        s.reports.break_ratio = 0.5;
    };
    let Some(app) = TestApp::spawn_with(backend, tweak).await else {
        return;
    };
    let (secret, code_ids) = app.config_with("stable", &[1, 2]).await;
    let (v1, v2) = (&code_ids[0], &code_ids[1]);
    let mut socket = native_socket(&app).await;
    let reply = subscribe(&mut socket, "stable", &secret, None).await;
    assert_eq!(reply["type"], json!("subscribed"), "{reply}");
    let phones = Net::many(&app, 1, 8);
    for (i, net) in phones.iter().enumerate() {
        let (_, served) = net.fetch(Route::Native, "stable", &format!("phone-{i}")).await;
        assert_eq!(served.unwrap().1, json!(2));
    }
    let mut last = Value::Null;
    for (i, net) in phones[..4].iter().enumerate() {
        last = net
            .report(Route::Native, "stable", &secret, v2, &format!("phone-{i}"))
            .await
            .1;
    }
    assert_eq!(last["broke"], json!(true), "4 of 8 is half: {last}");
    assert_eq!(last["rolled_back_to"], json!(v1));
    let config = app.admin(Method::GET, "/api/v1/configs/stable", None).await.1;
    until_revision(&mut socket, "stable", config["revision"].as_i64().unwrap()).await;
    assert_eq!(config["release"]["code_id"], json!(v1));
    assert_eq!(fetch_as(&app, "stable", "phone-0").await.1["result"], json!(1));
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/stable/events", None).await;
    let kinds: Vec<(Value, Value)> = events.as_array().unwrap()[..2]
        .iter()
        .map(|e| (e["kind"].clone(), e["actor"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("rollback"), json!("reports")),
            (json!("broken"), json!("reports"))
        ]
    );
    assert_eq!(events[0]["detail"]["broken"], json!(v2));
    assert_eq!(events[0]["detail"]["evidence"]["counted_sources"], json!(4));
    // With nothing healthy left, see `forgery.rs`: still served.
    app.stop().await;
}

async fn a_rotated_secret_works_through_its_grace(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.auth.secret_grace_s = 2).await else {
        return;
    };
    let (old, code_ids) = app.config_with("rotating", &[1]).await;
    fetch_as(&app, "rotating", "phone").await;
    let (status, rotated) = app
        .admin(Method::POST, "/api/v1/configs/rotating/secret/rotate", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let report = |secret: String| {
        let body = json!({"code_id": code_ids[0], "device_id": "phone", "kind": "render", "message": "x"});
        let app = &app;
        async move { report_as(app, "rotating", &secret, body).await.0 }
    };
    assert!(
        report(old.clone()).await.is_success(),
        "the old secret works in its grace"
    );
    assert!(report(new.clone()).await.is_success());
    let mut socket = native_socket(&app).await;
    assert_eq!(
        subscribe(&mut socket, "rotating", &old, None).await["type"],
        json!("subscribed")
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(report(old.clone()).await, StatusCode::FORBIDDEN);
    assert!(report(new.clone()).await.is_success());
    // The socket opened with the old secret was closed when its grace ended.
    // Closed, not kept: close_code panics on a socket still open.
    let closed = common::ws::close_code(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(closed, Some(1008));
    assert_eq!(
        compat_socket(&app, "rotating", Some(&old)).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert!(compat_socket(&app, "rotating", Some(&new)).await.is_ok());
    let (_, events) = app.admin(Method::GET, "/api/v1/configs/rotating/events", None).await;
    assert_eq!(events[0]["kind"], json!("secret_rotated"));
    let logged = events[0].to_string();
    assert!(!logged.contains(&old) && !logged.contains(&new), "{logged}");
    app.stop().await;
}

async fn bad_reports_are_refused_by_name(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (secret, code_ids) = app.config_with("strict", &[1]).await;
    let v1 = &code_ids[0];
    fetch_as(&app, "strict", "phone").await;
    client_report(&app, "strict", &secret, v1, "phone").await;
    let before = listed(&app, "strict", v1).await;
    assert_eq!(before.len(), 1);
    let huge = "x".repeat(100_000);
    // A wrong shape is 400; well-formed values Vane will not keep (NUL, a
    // message over 8192 bytes, which the schema cannot state) are 422.
    let (bad, unkept) = (StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY);
    let cases = [
        (
            json!({"code_id": v1, "device_id": "phone", "kind": "crash", "message": "m"}),
            "kind",
            bad,
        ),
        (json!({"code_id": v1, "message": "m"}), "device_id", bad),
        (
            json!({"code_id": v1, "device_id": "", "message": "m"}),
            "device_id",
            bad,
        ),
        (
            json!({"code_id": v1, "device_id": "ph\u{0}one", "message": "m"}),
            "device_id",
            unkept,
        ),
        (
            json!({"code_id": v1, "device_id": "phone", "message": huge}),
            "message",
            unkept,
        ),
        (
            json!({"code_id": v1, "device_id": "phone", "message": "a\u{0}b"}),
            "message",
            unkept,
        ),
        (
            json!({"code_id": v1, "device_id": "phone", "message": "m", "extra": 1}),
            "extra",
            bad,
        ),
    ];
    for (body, field, expected) in cases {
        let (status, reply) = report_as(&app, "strict", &secret, body).await;
        assert_eq!(status, expected, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "`{field}` named in: {message}");
    }
    let compat = app
        .client
        .post(app.url(&format!("/report/strict/{v1}")))
        .header("Secret", &secret)
        .json(&json!({"err_time": 1, "message": "a\u{0}b"}));
    let (status, reply) = common::read(compat.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["message"].as_str().unwrap().contains("message"), "{reply}");
    // A body past the server's limit is refused before it is read (and the
    // connection closed: a client of its own, so no other request reuses it).
    // Only the head is sent: a client still writing its body when the
    // answer and the close came would meet a broken pipe, not the answer.
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/configs/strict/reports HTTP/1.1\r\nHost: x\r\nSecret: {secret}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::io::AsyncReadExt::read(&mut socket, &mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        listed(&app, "strict", v1).await,
        before,
        "nothing stored was lost or added"
    );
    app.stop().await;
}
