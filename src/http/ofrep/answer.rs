//! OFREP's answers: one flag's outcome, and a request's failure with the
//! status and OpenFeature error code (`OfrepErrorCode`) the specification
//! gives it.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::actors::config_cache::ResolveError;
use crate::actors::evaluator::{EvalError, Evaluated};
use crate::domain::ofrep::{ContextError, Reason};
use crate::domain::resolve::Refusal;
use crate::http::codes::OfrepErrorCode;
use crate::http::fetch::json_response;

/// One flag's outcome.
pub enum FlagOutcome {
    /// The config answered.
    Served {
        /// The config id.
        key: String,
        /// Its result.
        value: Arc<Evaluated>,
        /// How the version was chosen.
        reason: Reason,
        /// The version's code id.
        variant: String,
        /// The config's revision.
        revision: i64,
    },
    /// The caller's default stands: the config is off, or has nothing released.
    Deferred {
        /// The config id.
        key: String,
        /// `DISABLED` or `DEFAULT`.
        reason: Reason,
        /// The config's revision.
        revision: i64,
    },
    /// The config refused this context, or its script failed.
    Failed {
        /// The config id.
        key: String,
        /// The error code.
        code: OfrepErrorCode,
        /// What went wrong, naming it.
        details: String,
    },
    /// Vane cannot answer now (shed, or the store is down): the whole
    /// request is answered 503, so no client caches a partial answer.
    Busy(String),
}

impl FlagOutcome {
    /// The outcome of a refusal: an off or unreleased config defers to the
    /// caller's default, as OFREP lets a success leave out its value.
    pub fn refused(key: &str, refusal: Refusal, revision: i64) -> Self {
        let failed = |code, details: String| Self::Failed {
            key: key.to_owned(),
            code,
            details,
        };
        match refusal {
            Refusal::Inactive(_) => Self::Deferred {
                key: key.to_owned(),
                reason: Reason::Disabled,
                revision,
            },
            Refusal::NoRelease(_) => Self::Deferred {
                key: key.to_owned(),
                reason: Reason::Default,
                revision,
            },
            Refusal::UnknownConfig(_) => failed(OfrepErrorCode::FlagNotFound, refusal.to_string()),
            Refusal::RulesReject(_) => failed(OfrepErrorCode::InvalidContext, refusal.to_string()),
            Refusal::Broken(_) => failed(
                OfrepErrorCode::General,
                format!("{refusal}, and the config has no other version to fall back to"),
            ),
        }
    }

    /// The outcome of a failed load of the config.
    pub fn unresolved(key: &str, error: ResolveError) -> Self {
        match error {
            ResolveError::Refused(refusal) => Self::refused(key, refusal, 0),
            other => Self::Busy(other.to_string()),
        }
    }

    /// The outcome of a failed evaluation.
    pub fn unevaluated(key: &str, error: EvalError) -> Self {
        let code = match &error {
            EvalError::Params(_) => OfrepErrorCode::InvalidContext,
            EvalError::Engine(_) | EvalError::Killed { .. } | EvalError::Crashed(_) => OfrepErrorCode::General,
            EvalError::Overloaded
            | EvalError::Expired
            | EvalError::Crowded
            | EvalError::Unavailable(_)
            | EvalError::Timeout => {
                return Self::Busy(error.to_string());
            }
        };
        let details = match &error {
            EvalError::Params(_) => format!("the context does not fit the parameters of config `{key}`: {error}"),
            _ => format!("config `{key}` failed: {error}"),
        };
        Self::Failed {
            key: key.to_owned(),
            code,
            details,
        }
    }

    /// The status a single evaluation answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Served { .. } | Self::Deferred { .. } => StatusCode::OK,
            Self::Failed {
                code: OfrepErrorCode::FlagNotFound,
                ..
            } => StatusCode::NOT_FOUND,
            Self::Failed { .. } => StatusCode::BAD_REQUEST,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Serialize)]
struct Metadata {
    revision: i64,
}

impl Serialize for FlagOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Self::Served {
                key,
                value,
                reason,
                variant,
                revision,
            } => {
                map.serialize_entry("key", key)?;
                map.serialize_entry("value", &***value)?;
                map.serialize_entry("reason", reason.as_str())?;
                map.serialize_entry("variant", variant)?;
                map.serialize_entry("metadata", &Metadata { revision: *revision })?;
            }
            Self::Deferred { key, reason, revision } => {
                // No value: the provider returns the caller's default.
                map.serialize_entry("key", key)?;
                map.serialize_entry("reason", reason.as_str())?;
                map.serialize_entry("variant", &reason.as_str().to_ascii_lowercase())?;
                map.serialize_entry("metadata", &Metadata { revision: *revision })?;
            }
            Self::Failed { key, code, details } => {
                map.serialize_entry("key", key)?;
                map.serialize_entry("errorCode", code)?;
                map.serialize_entry("errorDetails", details)?;
            }
            Self::Busy(details) => map.serialize_entry("errorDetails", details)?,
        }
        map.end()
    }
}

impl IntoResponse for FlagOutcome {
    fn into_response(self) -> Response {
        let status = self.status();
        let busy = matches!(self, Self::Busy(_));
        let mut response = (status, json(&self)).into_response();
        if busy {
            retry_soon(&mut response);
        }
        response
    }
}

/// Why a whole request is refused.
#[derive(Debug)]
pub enum Failure {
    /// 400 with an error code; single evaluation names the flag.
    Refused {
        /// The flag, for single evaluation.
        key: Option<String>,
        /// The error code.
        code: OfrepErrorCode,
        /// What is wrong.
        details: String,
    },
    /// 401 or 403, with no body, as the specification says.
    Denied(StatusCode),
    /// 429 or 503, with `Retry-After`.
    Busy(StatusCode, String),
    /// The body was too large or too slow (413, 408).
    Body(StatusCode, String),
}

impl Failure {
    /// A context that cannot be read.
    pub fn context(key: Option<&str>, error: ContextError) -> Self {
        Self::Refused {
            key: key.map(str::to_owned),
            code: OfrepErrorCode::InvalidContext,
            details: error.to_string(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::Refused { key, code, details } => {
                let mut body = serde_json::Map::new();
                if let Some(key) = key {
                    body.insert("key".into(), key.into());
                }
                body.insert("errorCode".into(), serde_json::json!(code));
                body.insert("errorDetails".into(), details.into());
                (StatusCode::BAD_REQUEST, json(&body)).into_response()
            }
            Self::Denied(status) => status.into_response(),
            Self::Busy(status, details) => {
                let mut response = (status, json(&serde_json::json!({ "errorDetails": details }))).into_response();
                retry_soon(&mut response);
                response
            }
            Self::Body(status, details) => {
                (status, json(&serde_json::json!({ "errorDetails": details }))).into_response()
            }
        }
    }
}

/// A JSON body with its content type.
pub fn json<T: Serialize>(value: &T) -> Response {
    // Serializing plain data into a Vec cannot fail.
    json_response(serde_json::to_vec(value).unwrap_or_default())
}

fn retry_soon(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
}
