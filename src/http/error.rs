//! One error type for every route, mapped to a status and a message. Native
//! routes render `{"error":{"code","message"}}`; compatible routes render the
//! original `{"data":null,"message"}` through `CompatError`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::codes::ErrorCode;
use super::throttle::Throttle;
use crate::actors::CallError;
use crate::actors::config_cache::ResolveError;
use crate::actors::evaluator::EvalError;
use crate::domain::resolve::Refusal;
use crate::engine::EngineError;
use crate::service::releases::ReleaseError;
use crate::service::reports::ReportError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
/// Every error a route answers with; status and code derive from the variant.
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// The stable machine-readable code.
        code: ErrorCode,
        /// What is wrong, for a person.
        message: String,
    },
    #[error("{0}")]
    /// No valid token or secret.
    Unauthorized(String),
    /// Authenticated but not allowed (403).
    #[error("{message}")]
    Forbidden {
        /// The stable machine-readable code.
        code: ErrorCode,
        /// What is wrong, for a person.
        message: String,
    },
    #[error("{0}")]
    /// The resource does not exist.
    NotFound(String),
    #[error("{0}")]
    /// The request conflicts with what is stored.
    Conflict(String),
    /// Publishing refused: stored tests failed. `results` rides along.
    #[error("{message}")]
    TestsFailed {
        /// What failed.
        message: String,
        /// Each case's outcome.
        results: serde_json::Value,
    },
    /// The body is over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive within `server.body_timeout_ms`.
    #[error("{0}")]
    BodyTimeout(String),
    /// The client holds as much as one client may (429); `Retry-After`
    /// says when a place may be free.
    #[error("{message}")]
    TooManyRequests {
        /// What is capped and what to do, for a person.
        message: String,
        /// Seconds, for `Retry-After`.
        retry_after_s: u64,
    },
    /// Well-formed but refused: bad code, rules or schema (422).
    #[error("{message}")]
    Unprocessable {
        /// The stable machine-readable code.
        code: ErrorCode,
        /// What is wrong, for a person.
        message: String,
    },
    /// Shed load: the client should retry after a moment.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    /// A dependency did not answer in time.
    Unavailable(String),
    /// A dependency failed: the client learns only which, the log (once,
    /// here at the edge) gets `detail`.
    #[error("{what} unavailable")]
    Down {
        /// The dependency, as the client sees it ("store").
        what: &'static str,
        /// The failure, for the log.
        detail: String,
    },
    /// Logged in full, shown to the client only as "internal error".
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// 400 with a code and message.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 422 with a code and message.
    pub fn unprocessable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// 403 with a code and message.
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::TestsFailed { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded(_) | Self::Unavailable(_) | Self::Down { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code in the error body.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest { code, .. } | Self::Forbidden { code, .. } | Self::Unprocessable { code, .. } => *code,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::TestsFailed { .. } => ErrorCode::TestsFailed,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::BodyTimeout(_) => ErrorCode::BodyTimeout,
            Self::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            Self::Overloaded(_) => ErrorCode::Overloaded,
            Self::Unavailable(_) | Self::Down { .. } => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The message a client may see.
    pub(super) fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    fn decorate(&self, status: StatusCode, body: serde_json::Value) -> Response {
        if let Self::Internal(detail) = self {
            tracing::error!(error = %detail, "internal error");
        } else if let Self::Overloaded(_) = self {
            // A shed is the pool doing its job under load; the pool's
            // counters and the 503 line of `observe::track` report it.
        } else if let Self::Down { what, detail } = self {
            static DOWN: Throttle = Throttle::new();
            if let Some(suppressed) = DOWN.pass() {
                tracing::warn!(error = %detail, suppressed, "{what} unavailable");
            }
        } else if status.is_server_error() {
            static UNAVAILABLE: Throttle = Throttle::new();
            if let Some(suppressed) = UNAVAILABLE.pass() {
                tracing::warn!(error = %self, suppressed, "service unavailable");
            }
        }
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            Self::Overloaded(_) | Self::Unavailable(_) | Self::Down { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests { retry_after_s, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            _ => {}
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code(), "message": self.public_message() } });
        if let Self::TestsFailed { results, .. } = &self {
            body["error"]["results"] = results.clone();
        }
        self.decorate(self.status(), body)
    }
}

/// The original service's error envelope and status codes: what it reported
/// as "not found" or "invalid" was a 400.
#[derive(Debug)]
pub struct CompatError(pub ApiError);

impl<E: Into<ApiError>> From<E> for CompatError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        let status = match self.0.status() {
            StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => StatusCode::BAD_REQUEST,
            other => other,
        };
        let body = json!({ "data": null, "message": self.0.public_message() });
        self.0.decorate(status, body)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let message = r.to_string();
        match r {
            Refusal::UnknownConfig(_) => Self::NotFound(message),
            Refusal::Inactive(_) => Self::forbidden(ErrorCode::ConfigInactive, message),
            Refusal::Broken(_) => Self::forbidden(ErrorCode::VersionBroken, message),
            // Nothing released to answer with (the original route turns 404 into 400).
            Refusal::NoRelease(_) => Self::NotFound(message),
            Refusal::RulesReject(_) => Self::bad_request(ErrorCode::RulesReject, message),
        }
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Refused(r) => r.into(),
            ResolveError::Store => Self::Unavailable("store unavailable".into()),
            waited @ ResolveError::Waited { .. } => Self::Unavailable(waited.to_string()),
            ResolveError::Call(c) => c.into(),
        }
    }
}

/// Failures of a request's evaluation: the script's own are 400.
impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> Self {
        let message = e.to_string();
        match e {
            EvalError::Engine(engine) => Self::bad_request(engine_code(&engine), message),
            EvalError::Params(_) => Self::bad_request(ErrorCode::InvalidParams, message),
            EvalError::Killed { .. } => Self::bad_request(ErrorCode::DeadlineExceeded, message),
            EvalError::Crashed(_) => Self::bad_request(ErrorCode::SandboxCrashed, message),
            EvalError::Overloaded | EvalError::Expired | EvalError::Crowded => Self::Overloaded(message),
            EvalError::Unavailable(detail) => Self::Down {
                what: "evaluator",
                detail,
            },
            EvalError::Timeout => Self::Unavailable(message),
        }
    }
}

fn engine_code(e: &EngineError) -> ErrorCode {
    match e {
        EngineError::Compile { .. } => ErrorCode::CompileError,
        EngineError::Runtime { .. } => ErrorCode::ExecutionError,
        EngineError::Deadline { .. } => ErrorCode::DeadlineExceeded,
        EngineError::Memory { .. } => ErrorCode::MemoryLimit,
        EngineError::Recursion { .. } => ErrorCode::RecursionLimit,
        EngineError::OutputSize { .. } => ErrorCode::OutputTooLarge,
        EngineError::OutputDepth { .. } => ErrorCode::OutputTooDeep,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NotFound(_) => Self::NotFound(message),
            StoreError::Exists(_)
            | StoreError::NoRollbackTarget { .. }
            | StoreError::RollbackTargetBroken { .. }
            | StoreError::PlanState { .. }
            | StoreError::ChangeState { .. } => Self::Conflict(message),
            StoreError::Percentage(_) => Self::unprocessable(ErrorCode::Invalid, message),
            // The database's own words describe its internals: logged, not sent.
            StoreError::Refused(detail) => {
                tracing::warn!(error = %detail, "the store refused a value");
                Self::unprocessable(ErrorCode::Invalid, "the store refused a value in the request")
            }
            // Driver messages describe internals; the client learns only that it failed.
            StoreError::Unavailable(detail) => Self::Down { what: "store", detail },
            StoreError::Corrupt(_) => Self::Internal(message),
        }
    }
}

/// Failures of management operations: a bad upload is 422.
impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        let message = e.to_string();
        match e {
            // An id is part of the request, not an upload: 400, naming the rule.
            ReleaseError::ConfigId(_) => Self::bad_request(ErrorCode::InvalidConfigId, message),
            ReleaseError::TestParams => Self::unprocessable(ErrorCode::Invalid, message),
            ReleaseError::Rule(_) => Self::unprocessable(ErrorCode::InvalidRules, message),
            ReleaseError::Schema(_) => Self::unprocessable(ErrorCode::InvalidParamsSchema, message),
            ReleaseError::Eval(EvalError::Engine(engine)) => Self::unprocessable(engine_code(&engine), message),
            // An upload's check that overruns or kills its worker is the
            // source's fault (starlark folds constants while compiling).
            ReleaseError::Eval(e @ (EvalError::Killed { .. } | EvalError::Crashed(_))) => {
                Self::unprocessable(ErrorCode::CompileLimit, format!("compiling the source failed: {e}"))
            }
            ReleaseError::Eval(other) => other.into(),
            ReleaseError::Store(store) => store.into(),
            ReleaseError::TestsFailed(run) => Self::TestsFailed {
                message,
                results: serde_json::to_value(&run).unwrap_or_default(),
            },
        }
    }
}

/// Failures of a client's report: as the original answered, a version that
/// is not current is a bad request, a wrong secret or a version already
/// broken forbidden.
impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        let message = e.to_string();
        match e {
            ReportError::Resolve(resolve) => resolve.into(),
            ReportError::WrongSecret => Self::forbidden(ErrorCode::WrongSecret, message),
            ReportError::Inactive(_) => Self::forbidden(ErrorCode::ConfigInactive, message),
            ReportError::NotCurrent { .. } => Self::bad_request(ErrorCode::NotCurrent, message),
            ReportError::Broken(_) => Self::forbidden(ErrorCode::VersionBroken, message),
            ReportError::Store(store) => store.into(),
        }
    }
}

/// The error answers every native route shares, named once so each handler's
/// annotation lists only its success.
pub struct Failures;

// The error envelope, for the description only: `ApiError` builds it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    #[schema(inline)]
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable and machine-readable (`ErrorCode`): `not_found`, `invalid_params`, ...
    code: String,
    /// Names the problem, for a person.
    message: String,
}

impl utoipa::IntoResponses for Failures {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::PartialSchema;
        use utoipa::openapi::{ContentBuilder, ResponseBuilder, ResponsesBuilder};
        let body = || ContentBuilder::new().schema(Some(ErrorBody::schema())).build();
        ResponsesBuilder::new()
            .response(
                "4XX",
                ResponseBuilder::new()
                    .description("refused: the message names the problem")
                    .content("application/json", body()),
            )
            .response(
                "503",
                ResponseBuilder::new()
                    .description("a dependency is down or the pool is full; `Retry-After` says when to retry")
                    .content("application/json", body()),
            )
            .build()
            .into()
    }
}

/// What every original route answers with `server.original_routes` off:
/// 410, in both error shapes (the original's `message` and the native
/// `error`), so either kind of client reads why.
pub async fn original_routes_off(_: axum::extract::Request, _: axum::middleware::Next) -> Response {
    let message = "the original service's routes are off on this server (server.original_routes = false); \
                   use /api/v1 or /ofrep/v1";
    let body = serde_json::json!({
        "data": null,
        "message": message,
        "error": {"code": ErrorCode::OriginalRoutesOff, "message": message},
    });
    (StatusCode::GONE, axum::Json(body)).into_response()
}
