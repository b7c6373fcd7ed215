//! Single sign-on in a real browser against a real identity provider:
//! node-oidc-provider (`tests/console/idp.mjs`) started here under node,
//! `tests/console/sso.mjs` driving Debian's Chromium through it with
//! playwright-core (a viewer, then a publisher who releases; see the
//! script), and each session cookie replayed here after its sign-out.
//!
//! playwright-core and oidc-provider are found in `VANE_PLAYWRIGHT_DIR`,
//! else in `target/ci-node` (where `.ci/run` installs both); without them,
//! node or Chromium the test says it skipped, and `.ci/run` fails on that.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::json;
use vane::settings::{GroupGrant, Oidc};

use crate::common::{self, Backend, TestApp, free_port};
use crate::console::{playwright, run_browser, target};

const CLIENT_SECRET: &str = "vane-browser-test-client-secret";

/// The provider's process, killed when the test ends however it ends.
struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_through_a_real_provider_in_the_browser() {
    let dir = match playwright() {
        Ok(dir) if dir.join("node_modules/oidc-provider").exists() => dir,
        Ok(_) => {
            return common::skipped(
                "console SSO browser",
                "oidc-provider is not installed (npm install --prefix target/ci-node oidc-provider, or run .ci/run)",
            );
        }
        Err(why) => return common::skipped("console SSO browser", why),
    };
    let (idp_port, port) = (free_port(), free_port());
    let redirect = format!("http://127.0.0.1:{port}/auth/callback");
    let _provider = Provider(
        Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/idp.mjs"))
            .args([idp_port.to_string().as_str(), redirect.as_str(), CLIENT_SECRET])
            .env("VANE_PLAYWRIGHT_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs"),
    );
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let up = common::eventually(Duration::from_secs(20), || async {
        reqwest::get(&discovery).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "the provider did not start");
    let grant = |role: &str| {
        vec![GroupGrant {
            role: role.into(),
            configs: vec!["*".into()],
        }]
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
        s.auth.oidc = Some(Oidc {
            issuer,
            client_id: "vane".into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_url: redirect.clone(),
            scopes: ["openid", "email", "profile", "groups"].map(String::from).to_vec(),
            groups: [
                ("ops".to_owned(), grant("publisher")),
                ("support".to_owned(), grant("viewer")),
            ]
            .into(),
            ..Oidc::default()
        });
    })
    .await
    .expect("sqlite always runs");
    let (_, code_ids) = app.config_with("banner", &[1]).await;
    let next = app
        .create_version("banner", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    assert_ne!(code_ids[0], next);
    // A config that needs an approval, with a release asked for by a token
    // of someone else: the person signed in through the provider approves it.
    app.config_with("gated", &[1]).await;
    let gated = app
        .create_version("gated", json!({"lang": "starlark", "source": "return 2"}))
        .await;
    app.admin(
        reqwest::Method::PATCH,
        "/api/v1/configs/gated",
        Some(json!({"approvals_required": 1})),
    )
    .await;
    let alice = app.make_token("alice", "publisher", &["*"]).await;
    let body = Some(json!({ "code_id": gated }));
    let (status, held) = app
        .as_token(&alice, reqwest::Method::POST, "/api/v1/configs/gated/release", body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");

    let base = format!("http://127.0.0.1:{port}");
    let args = vec![base, "banner".to_owned(), next.clone()];
    let out = run_browser(dir, "sso.mjs", "sso", args).await;
    let shots = target().join("tmp");
    assert!(out.contains("message after release: Release: done"), "{out}");

    // Both people's cookies, replayed after their sign-out, are nobody's.
    let cookies: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("signed-out cookie: "))
        .collect();
    assert_eq!(cookies.len(), 2, "{out}");
    for cookie in cookies {
        let replay = app
            .client
            .get(app.url("/api/v1/me"))
            .header(COOKIE, format!("vane_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    }
    // The release is the publisher's, as the store has it.
    let (_, events) = app
        .admin(reqwest::Method::GET, "/api/v1/configs/banner/events", None)
        .await;
    assert_eq!(events[0]["kind"], "release", "{events}");
    assert_eq!(events[0]["actor"], "oidc:ops@example.com", "{events}");
    let (_, events) = app
        .admin(reqwest::Method::GET, "/api/v1/configs/gated/events", None)
        .await;
    assert_eq!(events[0]["kind"], "release", "{events}");
    assert_eq!(events[0]["actor"], "token:alice", "{events}");
    assert_eq!(
        events[0]["detail"]["approved_by"],
        json!(["oidc:ops@example.com"]),
        "{events}"
    );
    assert!(out.contains("message after approval: Approve: change request"), "{out}");
    for name in [
        "approved",
        "viewer-configs",
        "viewer-config",
        "viewer-signed-out",
        "events",
        "ops-signed-out",
    ] {
        let shot = shots.join(format!("sso-{name}.png"));
        assert!(shot.exists(), "no screenshot {}", shot.display());
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "console SSO screenshot: {}", shot.display());
    }
    app.stop().await;
}
