//! Single sign-on for the console: the OpenID Connect authorization code
//! flow with PKCE against `[auth.oidc]`'s provider, and the session a
//! person gets at its end. The `openidconnect` crate discovers the
//! provider and checks the ID token (signature against the provider's keys,
//! issuer, audience, expiry, nonce); this file maps the person's groups to
//! grants and stores the session. The routes (`http/sso.rs`) keep what
//! crosses the trip to the provider in a cookie and render the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IdTokenFields, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::access::{Grant, Session, grants_of_groups, person};
use crate::domain::model::now_millis;
use crate::settings::Oidc;
use crate::store::{Store, StoreError};

/// Every claim the ID token or userinfo carries beyond the standard ones,
/// so the groups claim can be any name `auth.oidc.groups_claim` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtherClaims(pub serde_json::Map<String, Value>);

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long the provider's discovery document and keys are trusted before
/// they are read again (a provider rotates its signing keys now and then).
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(600);

/// Why a sign-in did not end in a session.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The provider did not answer, or not as OpenID Connect says.
    #[error("the identity provider could not be used: {0}")]
    Provider(String),
    /// The provider sent the person back with an error (they cancelled, or
    /// the client is not allowed).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The answer does not belong to a sign-in this browser started here
    /// (no or another `state`), or took too long.
    #[error("this sign-in was not started from this browser, or took too long; start again")]
    Stale,
    /// The code or the ID token was not accepted.
    #[error("the identity provider's answer was not accepted: {0}")]
    Token(String),
    /// Signed in, but none of the person's groups has a grant.
    #[error("{who} is in no group that `auth.oidc.groups` gives a role ({groups}); ask an administrator")]
    NoGroup {
        /// `oidc:<email or subject>`.
        who: String,
        /// Their groups as the provider listed them, for the page.
        groups: String,
    },
    /// The session could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What must survive the trip to the provider and back: kept by the browser
/// in a short-lived HttpOnly cookie, compared with what comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// OAuth's `state`: the answer must carry it.
    pub state: String,
    /// The ID token must carry it.
    pub nonce: String,
    /// PKCE: the code is only exchanged with it.
    pub verifier: String,
}

impl Pending {
    /// Whether a provider's answer carrying `state` answers this sign-in.
    pub fn answers(&self, state: &str) -> bool {
        crate::secrets::equal(&self.state, state)
    }

    /// As one cookie value: the three parts are base64url, so `.` joins them.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.state, self.nonce, self.verifier)
    }

    /// From a cookie value; `None` when it is not three parts.
    pub fn decode(value: &str) -> Option<Self> {
        let mut parts = value.split('.');
        let (state, nonce, verifier) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [state, nonce, verifier].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self {
            state: state.to_owned(),
            nonce: nonce.to_owned(),
            verifier: verifier.to_owned(),
        })
    }
}

/// A sign-in started: where to send the person, and what to keep.
pub struct Begun {
    /// The provider's authorization URL with this sign-in's parameters.
    pub url: String,
    /// What the answer is checked against.
    pub pending: Pending,
}

/// A session opened: its id goes in the cookie, only its hash to the store.
pub struct Opened {
    /// 256 random bits, hex.
    pub id: String,
    /// As stored.
    pub session: Session,
}

/// Single sign-on against one provider; cloneable behind an `Arc`.
pub struct Sso {
    settings: Oidc,
    grants: BTreeMap<String, Vec<Grant>>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    provider: tokio::sync::Mutex<Option<(Instant, Arc<OidcClient>)>>,
}

impl Sso {
    /// From validated settings. The provider is first read at the first
    /// sign-in, so a provider that is down does not stop Vane starting.
    pub fn new(settings: &Oidc, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // The provider's endpoints answer directly; following a
            // redirect would let a response steer Vane's requests (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            grants: settings.grants_by_group()?,
            settings: settings.clone(),
            http,
            store,
            provider: tokio::sync::Mutex::new(None),
        })
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.session_ttl_s)
    }

    /// Whether cookies must be `Secure` (the redirect URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.settings.secure_cookies()
    }

    /// The client for the provider as discovered lately, reading it again
    /// when older than `DISCOVERY_MAX_AGE` or when `fresh`.
    async fn client(&self, fresh: bool) -> Result<Arc<OidcClient>, SsoError> {
        let mut cached = self.provider.lock().await;
        if let Some((at, client)) = cached.as_ref()
            && !fresh
            && at.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok(client.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| SsoError::Provider(e.to_string()))?;
        let http = self.http_client();
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| SsoError::Provider(format!("discovery at {}: {}", self.settings.issuer, chain(&e))))?;
        let secret = Some(self.settings.client_secret.clone())
            .filter(|s| !s.is_empty())
            .map(ClientSecret::new);
        let redirect =
            RedirectUrl::new(self.settings.redirect_url.clone()).map_err(|e| SsoError::Provider(e.to_string()))?;
        let client = Arc::new(
            OidcClient::from_provider_metadata(metadata, ClientId::new(self.settings.client_id.clone()), secret)
                .set_redirect_uri(redirect),
        );
        *cached = Some((Instant::now(), client.clone()));
        Ok(client)
    }

    /// reqwest 0.13 as oauth2's HTTP client (oauth2 5 takes any closure
    /// from a request to a future of a response).
    fn http_client(
        &self,
    ) -> impl Fn(HttpRequest) -> std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send>>
    {
        let client = self.http.clone();
        move |request| Box::pin(send(client.clone(), request))
    }

    /// Starts a sign-in: the provider's URL with a fresh state, nonce and
    /// PKCE challenge.
    pub async fn begin(&self) -> Result<Begun, SsoError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Begun {
            url: url.to_string(),
            pending: Pending {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
            },
        })
    }

    /// Ends a sign-in: checks `state`, exchanges the code with the PKCE
    /// verifier, verifies the ID token, maps the person's groups to grants
    /// and opens a session. A person in no mapped group gets none.
    pub async fn finish(&self, code: String, state: &str, pending: Pending) -> Result<Opened, SsoError> {
        if !crate::secrets::equal(&pending.state, state) {
            return Err(SsoError::Stale);
        }
        let client = self.client(false).await?;
        let http = self.http_client();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| SsoError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&http)
            .await
            .map_err(|e| SsoError::Token(format!("the code exchange failed: {}", chain(&e))))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SsoError::Token("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce);
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // A key the provider rotated in since discovery: read its keys
            // again, once.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                let client = self.client(true).await?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| SsoError::Token(format!("the ID token: {}", chain(&e))))?
                    .clone()
            }
            Err(e) => return Err(SsoError::Token(format!("the ID token: {}", chain(&e)))),
        };
        let subject = claims.subject().to_string();
        // An email the provider says is unverified is anyone's to claim.
        let email = claims
            .email()
            .filter(|_| claims.email_verified() != Some(false))
            .map(|e| e.to_string());
        let mut groups = claims.additional_claims().0.get(&self.settings.groups_claim).cloned();
        let mut email = email;
        if groups.is_none() || email.is_none() {
            // Some providers put profile and group claims only in userinfo.
            if let Ok(request) = client.user_info(tokens.access_token().clone(), Some(claims.subject().clone())) {
                let info: Result<openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim>, _> =
                    request.request_async(&http).await;
                if let Ok(info) = info {
                    if groups.is_none() {
                        groups = info.additional_claims().0.get(&self.settings.groups_claim).cloned();
                    }
                    if email.is_none() && info.email_verified() != Some(false) {
                        email = info.email().map(|e| e.to_string());
                    }
                }
            }
        }
        let groups = group_names(groups.as_ref());
        let who = person(email.as_deref(), &subject);
        let grants = grants_of_groups(groups.iter().map(String::as_str), &self.grants);
        if grants.is_empty() {
            return Err(SsoError::NoGroup {
                who,
                groups: match groups.is_empty() {
                    true => format!("the provider listed none in `{}`", self.settings.groups_claim),
                    false => format!("yours: {}", groups.join(", ")),
                },
            });
        }
        let now = now_millis();
        let session = Session {
            who,
            grants,
            csrf: crate::secrets::random_token(),
            created_at: now,
            expires_at: now + self.settings.session_ttl_s as i64 * 1000,
        };
        let id = crate::secrets::random_token();
        self.store
            .create_session(&crate::secrets::sha256_hex(&id), &session)
            .await?;
        Ok(Opened { id, session })
    }
}

/// A groups claim as names: a list of strings (most providers), or one
/// string; anything else is no group.
fn group_names(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// An error and its causes, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let response = client.execute(request.try_into()?).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_round_trips_through_its_cookie() {
        let p = Pending {
            state: "s-1_".into(),
            nonce: "n".into(),
            verifier: "v".into(),
        };
        assert_eq!(Pending::decode(&p.encode()), Some(p));
        for bad in ["", "a.b", "a.b.c.d", "a..c"] {
            assert_eq!(Pending::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn groups_are_a_list_or_one_name() {
        assert_eq!(group_names(Some(&serde_json::json!(["a", 1, "b"]))), ["a", "b"]);
        assert_eq!(group_names(Some(&serde_json::json!("ops"))), ["ops"]);
        assert!(group_names(Some(&serde_json::json!({"a": 1}))).is_empty());
        assert!(group_names(None).is_empty());
    }
}
