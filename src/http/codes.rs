//! The machine-readable codes error answers carry, one enum per vocabulary:
//! `ErrorCode` for Vane's own (`{"error":{"code",...}}`), `OfrepErrorCode`
//! for OpenFeature's (OFREP's `errorCode`). Their serde names are the wire
//! strings, part of the API: `docs/API.md` lists each ("Error codes" and
//! "OpenFeature routes"), and a test here checks that it does.

use serde::Serialize;

/// Declares `ErrorCode` and `ErrorCode::ALL` from one list, so the list of
/// every code cannot miss one.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// A stable, machine-readable error code; sent in snake_case.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $name,)+
        }

        impl ErrorCode {
            /// Every code, in the order declared.
            pub const ALL: &[ErrorCode] = &[$(Self::$name),+];
        }
    };
}

error_codes! {
    /// 400: a path or query the router could not read, and neither
    /// `invalid_path` nor `invalid_query`.
    BadRequest,
    /// 408: the body did not arrive within `server.body_timeout_ms`.
    BodyTimeout,
    /// 400 on a run, 422 on an upload: the source does not compile.
    CompileError,
    /// 422: compiling an upload ran past its limit or crashed its worker.
    CompileLimit,
    /// 403: the config is inactive.
    ConfigInactive,
    /// 409: the request conflicts with what is stored.
    Conflict,
    /// 403: a write through a console session without its CSRF token
    /// (`X-CSRF-Token`), or with another; nothing changed.
    CsrfRequired,
    /// 400 on a run, 422 on an upload: the script ran past its deadline.
    DeadlineExceeded,
    /// 400 on a run, 422 on an upload: the script failed while running.
    ExecutionError,
    /// 403: four eyes: the author approving their own change request, a
    /// second approval by the same person, or someone else cancelling it.
    FourEyes,
    /// 500: logged in full, shown only as "internal error".
    Internal,
    /// 422: a value out of its range, test params that do not fit, or a
    /// value the store refused.
    Invalid,
    /// 400: a config id breaks the id rule.
    InvalidConfigId,
    /// 400: a report's `device_id` is empty, too long or holds control characters.
    InvalidDeviceId,
    /// 400: a report's `kind` is not one Vane knows.
    InvalidKind,
    /// 400: a report's `message` holds a NUL byte.
    InvalidMessage,
    /// 400: the params do not fit the version's schema.
    InvalidParams,
    /// 422 on an upload, 400 in the playground: the params schema is malformed.
    InvalidParamsSchema,
    /// 400: a path segment that is not UTF-8, such as `%FF`.
    InvalidPath,
    /// 400: a service registration's field breaks its rule (the message
    /// names it: service, instance_id, address, port, ttl_s, meta, body).
    InvalidRegistration,
    /// 422: a rollout plan's request does not hold together.
    InvalidPlan,
    /// 400: a query that does not parse, or a value out of its range.
    InvalidQuery,
    /// 422 on an upload, 400 in the playground: the rules are malformed.
    InvalidRules,
    /// 422: a settings reload refused; nothing changed.
    InvalidSettings,
    /// 400: the body is not a JSON object, or cannot be read.
    MalformedBody,
    /// 400 on a run, 422 on an upload: the script ran out of memory.
    MemoryLimit,
    /// 422: a report's `message` is over 8192 bytes.
    MessageTooLong,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 400: the original routes' `Secret` header is missing.
    MissingSecret,
    /// 400: a report names a version the config does not serve now.
    NotCurrent,
    /// 404: no such resource or route.
    NotFound,
    /// 400 in a path (`%00`), 422 in a body: a NUL character.
    NulCharacter,
    /// 410: `server.original_routes` is off.
    OriginalRoutesOff,
    /// 400 on a run, 422 on an upload: the result nests too deeply.
    OutputTooDeep,
    /// 400 on a run, 422 on an upload: the result's JSON is too large.
    OutputTooLarge,
    /// 503: the pool shed the job; retry after `Retry-After`.
    Overloaded,
    /// 413: the body is over `server.max_body_bytes`.
    PayloadTooLarge,
    /// 400 on a run, 422 on an upload: the script nested calls too deeply.
    RecursionLimit,
    /// 403: the caller's grant does not hold the role the route needs over
    /// that config.
    RoleRequired,
    /// 400: the version's rules do not target this request.
    RulesReject,
    /// 400: the worker died under the script.
    SandboxCrashed,
    /// 409: publishing refused because stored tests failed.
    TestsFailed,
    /// 429: this client address holds as many sockets as one may.
    TooManyRequests,
    /// 401: no valid token or secret.
    Unauthorized,
    /// 503: a dependency is down or did not answer in time.
    Unavailable,
    /// 403: the version is broken and nothing falls back.
    VersionBroken,
    /// 403: the secret is not the config's.
    WrongSecret,
}

/// OpenFeature's error codes, as OFREP sends them (its `errorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OfrepErrorCode {
    /// No config has this id.
    FlagNotFound,
    /// The body is not JSON, or not an object.
    ParseError,
    /// A gray release needs the device id to pick its bucket.
    TargetingKeyMissing,
    /// The context does not fit: a metadata attribute's type, the rules,
    /// the parameter schema.
    InvalidContext,
    /// Anything else: the script failed, the version is broken.
    General,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_api_document_in_snake_case() {
        let api = include_str!("../../docs/API.md");
        let section = &api[api
            .find("### Error codes")
            .expect("docs/API.md has an Error codes section")..];
        for code in ErrorCode::ALL {
            let text = serde_json::to_value(code).unwrap();
            let text = text.as_str().unwrap();
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{text}");
            assert!(
                section.contains(&format!("| `{text}` |")),
                "docs/API.md lists no `{text}`"
            );
        }
        assert_eq!(
            serde_json::to_value(ErrorCode::InvalidParamsSchema).unwrap(),
            "invalid_params_schema"
        );
    }

    #[test]
    fn openfeature_codes_are_sent_as_the_specification_spells_them() {
        let api = include_str!("../../docs/API.md");
        let codes = [
            (OfrepErrorCode::FlagNotFound, "FLAG_NOT_FOUND"),
            (OfrepErrorCode::ParseError, "PARSE_ERROR"),
            (OfrepErrorCode::TargetingKeyMissing, "TARGETING_KEY_MISSING"),
            (OfrepErrorCode::InvalidContext, "INVALID_CONTEXT"),
            (OfrepErrorCode::General, "GENERAL"),
        ];
        for (code, text) in codes {
            assert_eq!(serde_json::to_value(code).unwrap(), text);
            assert!(api.contains(&format!("`{text}`")), "docs/API.md does not name {text}");
        }
    }
}
