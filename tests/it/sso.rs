//! Single sign-on end to end against an identity provider the test runs
//! in-process (discovery, keys, an authorization endpoint that signs in
//! whoever the test names, a token endpoint that checks PKCE and signs ID
//! tokens with openidconnect): sessions, CSRF, sign-out, expiry and group
//! mapping, on every backend. `console_sso.rs` runs a real provider
//! (node-oidc-provider) in Chromium.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EndUserEmail, IdToken, IdTokenClaims, IssuerUrl, JsonWebKeyId, Nonce, PrivateSigningKey, StandardClaims,
    SubjectIdentifier,
};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sha2::Digest;
use vane::domain::access::{Grant, Role, Session};
use vane::service::sso::OtherClaims;
use vane::settings::{GroupGrant, Oidc, Settings};

use crate::common::{Backend, TestApp, free_port};

backend_tests!(sign_in_sessions_csrf_and_sign_out);

/// A test-only RSA key (made with `openssl genrsa -traditional 2048`): it
/// signs nothing but these tests' ID tokens.
const KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAqpjRYFbL8C6hq1oz4N/Us0NnzDhwS/ZY2Fxr6DWEAjZ5YoVZ
9tIpPLMAWpLXTc93fYDdiDoy4USI2kGYtjPn4QZkshmuRZ2N55bjoXK1za41XL9f
vWSCDFh0YPkFy2k6G1/4jv+GLCR7zU0JVaiNo5/wMtnbg35eYv7ZNsyK1UH9KfMj
1bVX1wRPqHIUKF1YXDtjOKenN/Z7RLHeVN98r2BBs8rjKjvrH8vT+6H62W6OEsbD
ZwcpEG31bDTpwn6kXx/RW75jM42QDE1e/zURCDh0n72VyMqp9su8KHueFPa0sCdr
XWP7d3P7jSQ3V+voybqIXuxNj6xRrv+JRxytRQIDAQABAoIBAB7cUTgDy5Wx4dYd
Fbhu1UvufCbx6MKdGFpfcbfKgoxh7Vh4thsTzpjn6r73xFITn1KJTsn3eT/OBZGx
/x2qyx4maW3cfm2igEquPZR1q1S/WHDkP74DohD4qWjnc3hmGzhbhpvbtppiqTCs
6Gzh9mlso+eXCIJDiHCRGJs0qkLEhwqt+GzktM2761pvbNBcXh0NTSEAUkz5Rex7
UUwYw8QEKgG5HAbvq6meXM5dZwxbVI2+Vc1ZTiHS20igt6OLrv8AnscgJI6GDH+l
bjM/kLBIymXWVj01B3OX+rH7KD6GVzbwprV7FsfejHvUMf4DnS8nncuqqK1/9cZD
vKhCXjsCgYEA2cbirMOFvZhhhnNoRpS7NvhiyyNJY6o3l8opHN/CrzWqbAeropR1
lULzxwnF/m/kUjsGcy0pt66yoCCvSJmWSnkQ/ecSV4S/bKxNJZCcA6PevM6L69K/
ZbdFsU/In5ZaOIjC62WtW4I8o8XZkvz1urS+kOjE2rdIBH/fcrPAGRsCgYEAyIoN
BMqJTs9ApzCjVlI74u7YJcMAXpUK6QMICBzetAAAOSfGHs0gAq3H22/lLQNn8gj8
iUhRxwoxS5xYjDKg4xaIUKCKaPkrow1i4HwyKU39savMz31JxqMPRc7YUvxFntvw
ACHTJN2pWSF2KA84fSltOZBAKmKmrG1xij2SGR8CgYBQwFOa9iEoTVGUVkTLLylA
V9fiNSJoZ1yX1ylpgHsjFsYrqqh075GuGBZmrnQRRZIm/6YDnTKD3q5ze8sjI3g8
AypOy5jchOeqNzWgAUAohWH5Jqlxd0LrR4r7FXdx3YF0xxlnydr/PIqZu6pSu6Ou
aIjlGLqt0xpMONI1KPvJEwKBgHQx8Ssmg3qjgY2eE/YPPd3WkG0I2Oz0pNawR/YT
bEKVgYucbSIprnN+579QzVRQlejapiCRQ7j1QezSkUfiifAqfR9idfAu98bJGdKC
g7oFE4rfxZMvwBCVKGNFX3ht7ZUHUL9y2dmRie84ATNi5lM3Lq9c0qD8eiCMZW45
EK73AoGAW3AZ7fBf36mtSmF6mbLg84ce35dPAfReoRXI6X3arLyYVMsJrE5+9WTr
ZGSAWTZ/O3MoYgc4CyUpZDhl3KvOU9VferBVNCx5pBhzuWMQwjRQ3TG3t92mOjy2
h5LmQCGiA8MyG4V9vaEzwovbEHpbseVA8mrjN8mRJqV0dbHnJfQ=
-----END RSA PRIVATE KEY-----
";

const CLIENT_ID: &str = "vane";
const CLIENT_SECRET: &str = "vane-test-client-secret";

/// Who the provider knows, and their groups.
fn groups_of(user: &str) -> Vec<&'static str> {
    match user {
        "ops@example.com" => vec!["ops", "unmapped"],
        "viewer@example.com" => vec!["support"],
        _ => vec!["sales"],
    }
}

struct Granted {
    user: String,
    nonce: String,
    challenge: String,
}

#[derive(Clone)]
struct Provider {
    issuer: String,
    codes: Arc<Mutex<HashMap<String, Granted>>>,
}

async fn discovery(State(p): State<Provider>) -> Json<Value> {
    Json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "jwks_uri": format!("{}/jwks", p.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

fn key() -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(KEY, Some(JsonWebKeyId::new("test".into()))).unwrap()
}

async fn jwks() -> Json<CoreJsonWebKeySet> {
    Json(CoreJsonWebKeySet::new(vec![key().as_verification_key()]))
}

/// Signs in `user` at once (the test names them) and sends them back.
async fn authorize(State(p): State<Provider>, Query(q): Query<HashMap<String, String>>) -> Redirect {
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(scopes.contains(&"openid") && scopes.contains(&"email"), "{scopes:?}");
    let code = vane::secrets::random_token();
    p.codes.lock().unwrap().insert(
        code.clone(),
        Granted {
            user: q["user"].clone(),
            nonce: q["nonce"].clone(),
            challenge: q["code_challenge"].clone(),
        },
    );
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]))
}

async fn token(State(p): State<Provider>, Form(f): Form<HashMap<String, String>>) -> axum::response::Response {
    let Some(granted) = p.codes.lock().unwrap().remove(&f["code"]) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    };
    let digest = sha2::Sha256::digest(f["code_verifier"].as_bytes());
    if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != granted.challenge {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "PKCE"})),
        )
            .into_response();
    }
    let mut other = serde_json::Map::new();
    other.insert("groups".into(), json!(groups_of(&granted.user)));
    let now = chrono::Utc::now();
    let claims = IdTokenClaims::new(
        IssuerUrl::new(p.issuer.clone()).unwrap(),
        vec![Audience::new(CLIENT_ID.into())],
        now + chrono::Duration::minutes(5),
        now,
        StandardClaims::new(SubjectIdentifier::new(format!("sub-{}", granted.user)))
            .set_email(Some(EndUserEmail::new(granted.user.clone())))
            .set_email_verified(Some(true)),
        OtherClaims(other),
    )
    .set_nonce(Some(Nonce::new(granted.nonce)));
    let id_token =
        IdToken::<OtherClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>::new(
            claims,
            &key(),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .unwrap();
    Json(json!({
        "access_token": "at-1",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token.to_string(),
    }))
    .into_response()
}

async fn start_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let provider = Provider {
        issuer: issuer.clone(),
        codes: Arc::default(),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(provider);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

fn oidc(issuer: &str, port: u16) -> Oidc {
    let grant = |role: &str| {
        vec![GroupGrant {
            role: role.into(),
            configs: vec!["*".into()],
        }]
    };
    Oidc {
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_url: format!("http://127.0.0.1:{port}/auth/callback"),
        groups: [
            ("ops".to_owned(), grant("publisher")),
            ("support".to_owned(), grant("viewer")),
        ]
        .into(),
        ..Oidc::default()
    }
}

/// A browser without one: cookies are passed by hand, redirects not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value `name` is set to in a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap().to_owned())
        })
}

/// Signs `user` in: Vane's /auth/login, the provider, Vane's callback. The
/// callback's response.
async fn sign_in(app: &TestApp, user: &str) -> reqwest::Response {
    let client = browser();
    let login = client.get(app.url("/auth/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let pending = set_cookie(&login, "vane_login").expect("the sign-in's cookie");
    let attributes = login.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"),
        "{attributes}"
    );
    let to_provider = login.headers()[LOCATION].to_str().unwrap().to_owned();
    let back = client.get(format!("{to_provider}&user={user}")).send().await.unwrap();
    let callback = back.headers()[LOCATION].to_str().unwrap().to_owned();
    client
        .get(callback)
        .header(COOKIE, format!("vane_login={pending}"))
        .send()
        .await
        .unwrap()
}

/// The session cookie a signed-in `user` holds.
async fn session_of(app: &TestApp, user: &str) -> String {
    let back = sign_in(app, user).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER, "{:?}", back.text().await);
    let cookie = set_cookie(&back, "vane_session").expect("a session cookie");
    let attributes: Vec<&str> = back
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("vane_session="))
        .collect();
    assert!(
        attributes[0].contains("HttpOnly")
            && attributes[0].contains("SameSite=Lax")
            && attributes[0].contains("Path=/;"),
        "{attributes:?}"
    );
    assert_eq!(cookie.len(), 64, "256 random bits, hex");
    cookie
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    session: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = browser()
        .request(method, app.url(path))
        .header(COOKIE, format!("vane_session={session}"));
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    crate::common::read(request.send().await.unwrap()).await
}

async fn events(app: &TestApp) -> Vec<Value> {
    let (status, events) = app
        .admin(reqwest::Method::GET, "/api/v1/configs/app/events", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    events
        .as_array()
        .cloned()
        .unwrap_or_else(|| events["events"].as_array().unwrap().clone())
}

async fn sign_in_sessions_csrf_and_sign_out(backend: Backend) {
    let issuer = start_provider().await;
    let port = free_port();
    let Some(app) = TestApp::spawn_with(backend, |s: &mut Settings| {
        s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
        s.auth.oidc = Some(oidc(&issuer, port));
    })
    .await
    else {
        return;
    };
    let (status, methods) = crate::common::read(browser().get(app.url("/auth/methods")).send().await.unwrap()).await;
    assert_eq!((status, methods["sso"].clone()), (StatusCode::OK, json!(true)));
    app.create_config("app").await;
    // A bearer token writes without a CSRF token: no browser sends it by itself.
    let code_id = app
        .create_version("app", json!({"lang": "starlark", "source": "return 1"}))
        .await;
    let release = json!({"code_id": code_id});

    // The publisher signs in; /me names them and hands over the CSRF token.
    let ops = session_of(&app, "ops@example.com").await;
    let (status, me) = call(&app, reqwest::Method::GET, "/api/v1/me", &ops, None, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["who"], "oidc:ops@example.com");
    assert_eq!(me["grants"], json!([{"role": "publisher", "configs": ["*"]}]));
    let csrf = me["csrf"].as_str().expect("a session's CSRF token").to_owned();

    // A write without the CSRF token, or with another, changes nothing.
    let before = events(&app).await.len();
    for wrong in [None, Some("0".repeat(64).as_str())] {
        let (status, body) = call(
            &app,
            reqwest::Method::POST,
            "/api/v1/configs/app/release",
            &ops,
            wrong,
            Some(release.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "csrf_required", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("X-CSRF-Token"),
            "{body}"
        );
    }
    assert_eq!(events(&app).await.len(), before, "a refused write changed something");
    let (_, config) = app.admin(reqwest::Method::GET, "/api/v1/configs/app", None).await;
    assert!(
        config["stable_code_id"].is_null() || config["stable_code_id"] == "",
        "{config}"
    );

    // With it, the release goes through and the log names the person.
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/configs/app/release",
        &ops,
        Some(&csrf),
        Some(release.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newest = events(&app).await;
    assert_eq!(newest[0]["kind"], "release", "{:?}", newest[0]);
    assert_eq!(newest[0]["actor"], "oidc:ops@example.com");

    // A viewer reads but may not release, CSRF token or not.
    let viewer = session_of(&app, "viewer@example.com").await;
    let (_, me) = call(&app, reqwest::Method::GET, "/api/v1/me", &viewer, None, None).await;
    let viewer_csrf = me["csrf"].as_str().unwrap().to_owned();
    let (status, configs) = call(&app, reqwest::Method::GET, "/api/v1/configs", &viewer, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        configs
            .as_array()
            .map(Vec::len)
            .or(configs["configs"].as_array().map(Vec::len)),
        Some(1),
        "{configs}"
    );
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/configs/app/rollback",
        &viewer,
        Some(&viewer_csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "role_required", "{body}");
    // One session's CSRF token is not another's.
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/configs/app/rollback",
        &ops,
        Some(&viewer_csrf),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("csrf_required"))
    );

    // Someone in no mapped group is refused with a page, and gets no session.
    let refused = sign_in(&app, "stranger@example.com").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&refused, "vane_session").is_none());
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("oidc:stranger@example.com") && page.contains("sales"),
        "{page}"
    );

    // An answer that is not this browser's sign-in (no or another state).
    let login = browser().get(app.url("/auth/login")).send().await.unwrap();
    let pending = set_cookie(&login, "vane_login").unwrap();
    let stale = browser()
        .get(app.url("/auth/callback?code=x&state=not-the-state"))
        .header(COOKIE, format!("vane_login={pending}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::BAD_REQUEST);

    // A forged cookie is nobody.
    let forged = vane::secrets::random_token();
    let (status, body) = call(&app, reqwest::Method::GET, "/api/v1/configs", &forged, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Sign-out needs the CSRF token too; after it, the cookie is worth nothing.
    let (status, _) = call(&app, reqwest::Method::POST, "/auth/logout", &ops, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&app, reqwest::Method::GET, "/api/v1/me", &ops, None, None).await;
    assert_eq!(status, StatusCode::OK, "a refused sign-out signed out");
    let (status, _) = call(&app, reqwest::Method::POST, "/auth/logout", &ops, Some(&csrf), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&app, reqwest::Method::GET, "/api/v1/me", &ops, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("signed out"),
        "{body}"
    );
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/configs/app/rollback",
        &ops,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A session past its end is refused.
    let store = app.state().auth.store.clone();
    let id = vane::secrets::random_token();
    let now = vane::domain::model::now_millis();
    let ended = Session {
        who: "oidc:late@example.com".into(),
        grants: vec![Grant::everywhere(Role::Admin)],
        csrf: vane::secrets::random_token(),
        created_at: now - 10_000,
        expires_at: now - 1,
    };
    store
        .create_session(&vane::secrets::sha256_hex(&id), &ended)
        .await
        .unwrap();
    let (status, body) = call(&app, reqwest::Method::GET, "/api/v1/me", &id, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    // An ended session signs out without a CSRF token: it can do nothing.
    let (status, _) = call(&app, reqwest::Method::POST, "/auth/logout", &id, None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A session keeps only the grants the mapping gives now: narrowed (or
    // never given, as this admin grant), they are gone.
    let id = vane::secrets::random_token();
    let wide = Session {
        expires_at: now + 60_000,
        ..ended
    };
    store
        .create_session(&vane::secrets::sha256_hex(&id), &wide)
        .await
        .unwrap();
    let (status, me) = call(&app, reqwest::Method::GET, "/api/v1/me", &id, None, None).await;
    assert_eq!(
        (status, me["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("role_required")),
        "{me}"
    );
    let (status, body) = call(&app, reqwest::Method::GET, "/api/v1/configs/app", &id, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // An admin ends a person's sessions on every node.
    let viewer = session_of(&app, "viewer@example.com").await;
    let (status, ended) = app
        .admin(
            reqwest::Method::DELETE,
            "/api/v1/sessions?who=oidc:viewer@example.com",
            None,
        )
        .await;
    // The viewer signed in earlier in this test as well: both sessions end.
    assert_eq!((status, ended["ended"].clone()), (StatusCode::OK, json!(2)), "{ended}");
    let (status, _) = call(&app, reqwest::Method::GET, "/api/v1/me", &viewer, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The provider's error is shown only to the sign-in it answers, in one
    // short line: a link with words of its own gets a plain 400.
    let forged = "/auth/callback?error=access_denied&error_description=Call%20%2B1-555-0100%0Aforged%20log%20line";
    let page = browser().get(app.url(forged)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(!page.text().await.unwrap().contains("555-0100"));
    let login = browser().get(app.url("/auth/login")).send().await.unwrap();
    let pending = set_cookie(&login, "vane_login").unwrap();
    let state = pending.split('.').next().unwrap().to_owned();
    let page = browser()
        .get(app.url(&format!("{forged}&state={state}")))
        .header(COOKIE, format!("vane_login={pending}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let text = page.text().await.unwrap();
    assert!(text.contains("555-0100forged log line"), "{text}");
    app.stop().await;
}
