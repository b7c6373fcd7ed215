//! Why a row of the original's tables is left out of an import: each reason
//! as the import's report prints it.

use crate::domain::model::ConfigIdError;
use crate::domain::params::ParamError;
use crate::domain::rules::RuleError;
use crate::engine::EngineError;

/// Ids Vane keeps as they are: a code or test id is a key clients send back
/// in a URL path, so it must be one path segment of printable text.
pub const MAX_ID_BYTES: usize = 255;

/// Why a row is left out.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// A config id Vane would not take.
    #[error("{0}; clients name it in URLs and Vane keeps ids plain")]
    ConfigId(ConfigIdError),
    /// A config without a secret.
    #[error("it has no secret, so its apps could not be told apart from anyone")]
    NoSecret,
    /// A code or test id that is not one plain path segment.
    #[error(
        "{what} `{id}` must be 1 to {MAX_ID_BYTES} bytes without `/`, spaces or control characters, as clients send it in a URL path"
    )]
    NotPlainId {
        /// The column.
        what: &'static str,
        /// Its value.
        id: String,
    },
    /// A version two configs point at; the first (by id) keeps it.
    #[error(
        "version `{code_id}` belongs to config `{owner}` too; Vane keeps a version in one config, so it stays with `{owner}`"
    )]
    SharedVersion {
        /// The version.
        code_id: String,
        /// The config that keeps it.
        owner: String,
    },
    /// A version no config points at.
    #[error("no config points at it (as release, gray or unittest), so it belongs to none")]
    NoOwner,
    /// A version whose config was left out.
    #[error("its config `{0}` was left out (see that row)")]
    ConfigLeftOut(String),
    /// A language Vane does not run.
    #[error("lang `{0}` is neither starlark nor javascript")]
    UnknownLang(String),
    /// Rules Vane would refuse on upload.
    #[error("rules: {0}")]
    Rules(RuleError),
    /// A params schema Vane would refuse on upload.
    #[error("params: {0}")]
    Params(ParamError),
    /// A source that does not compile.
    #[error("the source does not compile: {0}")]
    DoesNotCompile(EngineError),
    /// A config's pointer to a version that was left out.
    #[error("its {what} version `{code_id}` was not imported (see that row), so the config comes without it")]
    PointerLeftOut {
        /// `release` or `gray`.
        what: &'static str,
        /// The version.
        code_id: String,
    },
    /// A gray percentage out of range: the gray pointer is dropped.
    #[error("gray percentage {percentage} is not between 0 and 100; gray `{code_id}` left out")]
    GrayPercentage {
        /// The percentage.
        percentage: i64,
        /// The gray version.
        code_id: String,
    },
    /// A test or report that names no version.
    #[error("it names no version ({0})")]
    NoVersion(&'static str),
    /// A test whose version was left out.
    #[error("its version `{0}` was not imported")]
    VersionLeftOut(String),
    /// A report whose version (by the code table's row id) was left out.
    #[error("its version (code.id {0}) was not imported")]
    CodeRowLeftOut(String),
    /// A test's input that is JSON but no object.
    #[error("input is not a JSON object of parameters")]
    InputNotObject,
    /// A test without an expected output.
    #[error("it has no output to expect")]
    NoOutput,
    /// A column that must be JSON and is not.
    #[error("{what} is not JSON: {error}")]
    NotJson {
        /// The column.
        what: &'static str,
        /// Where the JSON breaks.
        error: serde_json::Error,
    },
    /// A column that must be a JSON list and is not.
    #[error("{0} is not a JSON list")]
    NotAList(&'static str),
    /// A column that must be an integer and is not.
    #[error("{what} `{text}` is not an integer")]
    NotInteger {
        /// The column.
        what: &'static str,
        /// Its text.
        text: String,
    },
    /// A column that must be 0 or 1 and is not.
    #[error("{what} `{text}` is neither 0 nor 1")]
    NotAFlag {
        /// The column.
        what: &'static str,
        /// Its text.
        text: String,
    },
}
