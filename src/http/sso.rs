//! Single sign-on's routes, outside the role table (a person has no role
//! until the provider says who they are): `GET /auth/methods` (public: is
//! SSO on, for the console's sign-in page), `GET /auth/login` (to the
//! provider), `GET /auth/callback` (back from it: a session cookie, or a
//! page saying why not) and `POST /auth/logout` (CSRF-checked). The flow
//! itself is `service::sso`.

use axum::extract::{Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::auth::{SESSION_COOKIE, check_csrf, cookie, token_hash};
use super::error::ApiError;
use crate::service::sso::{Pending, SsoError};

/// The cookie that carries a sign-in's state, nonce and PKCE verifier
/// across the trip to the provider. Only `/auth` reads it.
const LOGIN_COOKIE: &str = "vane_login";

/// How long a person has at the provider to sign in.
const LOGIN_TTL_S: u64 = 600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/methods", get(methods))
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
}

/// A `Set-Cookie` value: HttpOnly, `SameSite=Lax` (sent on the provider's
/// redirect back, a top-level GET, but not on another site's POST),
/// `Secure` behind https. `max_age` 0 deletes it.
fn set_cookie(name: &str, value: &str, path: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}");
    // Every part is ASCII we made (hex ids, base64url values).
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Which sign-ins the console may offer.
async fn methods(State(app): State<AppState>) -> Json<serde_json::Value> {
    let sso = app.sso.is_some();
    Json(serde_json::json!({
        "token": true,
        "sso": sso,
        "login_url": sso.then_some("/auth/login"),
    }))
}

/// To the provider, with this sign-in's state kept in a cookie.
async fn login(State(app): State<AppState>) -> Result<Response, Response> {
    let sso = app.sso.as_ref().ok_or_else(sso_off)?;
    let begun = sso.begin().await.map_err(|e| page_for(&e))?;
    let mut response = (StatusCode::SEE_OTHER, [(CACHE_CONTROL, "no-store")]).into_response();
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(&begun.url).map_err(|_| internal("the provider's URL is not a header"))?,
    );
    headers.insert(
        SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &begun.pending.encode(),
            "/auth",
            LOGIN_TTL_S,
            sso.secure_cookies(),
        ),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct Answer {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Back from the provider: a session and on to the console, or a page
/// saying why not (and no session).
async fn callback(State(app): State<AppState>, headers: HeaderMap, Query(answer): Query<Answer>) -> Response {
    let Some(sso) = app.sso.as_ref() else {
        return sso_off();
    };
    let secure = sso.secure_cookies();
    let pending = cookie(&headers, LOGIN_COOKIE).and_then(Pending::decode);
    // The provider's error is shown only to the browser whose sign-in it
    // answers: anyone can link to this page with words of their own.
    let ours = |state: &Option<String>, pending: &Option<Pending>| matches!((state, pending), (Some(state), Some(pending)) if pending.answers(state));
    let outcome = match (answer, pending) {
        (
            Answer {
                error: Some(error),
                error_description,
                state,
                ..
            },
            pending,
        ) if ours(&state, &pending) => Err(SsoError::Refused(plain(&match error_description {
            Some(description) => format!("{error}: {description}"),
            None => error,
        }))),
        (
            Answer {
                code: Some(code),
                state: Some(state),
                ..
            },
            Some(pending),
        ) => sso.finish(code, &state, pending).await,
        _ => Err(SsoError::Stale),
    };
    let mut response = match outcome {
        Ok(opened) => {
            let mut response = (StatusCode::SEE_OTHER, [(LOCATION, "/console#/configs")]).into_response();
            response.headers_mut().insert(
                SET_COOKIE,
                set_cookie(SESSION_COOKIE, &opened.id, "/", sso.session_ttl().as_secs(), secure),
            );
            tracing::info!(who = %opened.session.who, "signed in to the console");
            response
        }
        Err(e) => page_for(&e),
    };
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/auth", 0, secure));
    response
}

/// Ends the console session on every node: the cookie's session is
/// deleted from the store. A write, so it needs the session's CSRF token;
/// with no session (or one already ended) it only clears the cookie.
async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let secure = app.sso.as_ref().is_some_and(|sso| sso.secure_cookies());
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let hash = token_hash(id);
        if let Some(session) = app.auth.store.session_by_hash(&hash).await? {
            // An ended session can do nothing, so its sign-out needs no token.
            if !session.expired(crate::domain::model::now_millis()) {
                check_csrf(&headers, &session.csrf)?;
            }
            app.auth.store.delete_session(&hash).await?;
            tracing::info!(who = %session.who, "signed out of the console");
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0, secure));
    Ok(response)
}

fn sso_off() -> Response {
    ApiError::NotFound("single sign-on is off (no [auth.oidc] in the settings)".into()).into_response()
}

fn internal(why: &str) -> Response {
    ApiError::Internal(why.into()).into_response()
}

/// A sign-in that did not end in a session, as a page for the person.
fn page_for(error: &SsoError) -> Response {
    let status = match error {
        SsoError::Provider(_) => StatusCode::BAD_GATEWAY,
        SsoError::Refused(_) | SsoError::NoGroup { .. } => StatusCode::FORBIDDEN,
        SsoError::Stale => StatusCode::BAD_REQUEST,
        SsoError::Token(_) => StatusCode::UNAUTHORIZED,
        SsoError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let shown = match error {
        // The store's failure is logged, not shown.
        SsoError::Store(e) => {
            tracing::error!(error = %e, "sign-in: the session could not be stored");
            "the session could not be stored; try again in a moment".to_owned()
        }
        other => {
            tracing::warn!(error = %other, "sign-in refused");
            other.to_string()
        }
    };
    let title = match error {
        SsoError::NoGroup { .. } => "No access to Vane",
        _ => "Sign-in failed",
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/console/console.css\"></head><body><main>\
         <h1>{title}</h1><p class=\"error\" role=\"alert\" id=\"sign-in-refused\">{}</p>\
         <p><a href=\"/console\">Back to the console</a></p></main></body></html>",
        escape(&shown)
    );
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (CONTENT_SECURITY_POLICY, "default-src 'self'; frame-ancestors 'none'"),
            (X_FRAME_OPTIONS, "DENY"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A provider's words as one short line: no control characters (which
/// would forge a line of the log), at most 300 characters.
fn plain(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    text.chars().fold(String::with_capacity(text.len()), |mut out, c| {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        out
    })
}
