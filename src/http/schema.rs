//! Shapes the OpenAPI document states that Rust types do not carry: the
//! names of domain enums as the API spells them. For the document only; a
//! leaf, so handlers and `openapi.rs` both use it.

/// A config's status, as the API spells it (the domain type stays free of
/// documentation attributes).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusName {
    /// Answers its clients.
    Active,
    /// Refuses its clients.
    Inactive,
}

/// A version's language, as the API spells it.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum LangName {
    /// Starlark.
    Starlark,
    /// JavaScript.
    Javascript,
}

/// A report's kind, as the API spells it.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum KindName {
    /// An app saw the config fail.
    Client,
    /// `vane watch`'s check command refused the rendered file.
    Check,
    /// `vane watch` could not render the template.
    Render,
    /// `vane watch`'s reload command failed.
    Reload,
}

/// One platform's targeting rules, as a version's upload carries them.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RulesEntry {
    /// `ios`, `android`, ... or `*` for every platform; once per upload.
    #[schema(min_length = 1)]
    platform: String,
    /// OR of AND-groups; empty or absent places no constraint.
    rules: Option<Vec<Vec<Condition>>>,
}

/// One comparison of a request's field with a value.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Condition {
    field: FieldName,
    compare: CompareName,
    /// An integer for `version`, a semantic version for `app_version`, a
    /// string for `device_id`; a non-empty list for `in` and `not_in`.
    value: serde_json::Value,
}

/// The request fields rules read.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FieldName {
    /// `meta.version`.
    Version,
    /// `meta.app_version`.
    AppVersion,
    /// `meta.device_id` (only `=`, `!=`, `in`, `not_in`).
    DeviceId,
}

/// The comparisons rules make.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum CompareName {
    /// Less than.
    #[schema(rename = "<")]
    Lt,
    /// At most.
    #[schema(rename = "<=")]
    Le,
    /// Equal.
    #[schema(rename = "=")]
    Eq,
    /// Not equal.
    #[schema(rename = "!=")]
    Ne,
    /// More than.
    #[schema(rename = ">")]
    Gt,
    /// At least.
    #[schema(rename = ">=")]
    Ge,
    /// One of a list.
    #[schema(rename = "in")]
    In,
    /// None of a list.
    #[schema(rename = "not_in")]
    NotIn,
}

/// One parameter of a version's schema.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ParamEntry {
    /// The key in the request's params.
    #[schema(min_length = 1)]
    name: String,
    #[schema(rename = "type")]
    kind: TypeName,
    /// Whether a request may leave it out.
    optional: Option<bool>,
    /// Used when a request leaves it out.
    default: Option<serde_json::Value>,
}

/// A parameter's type.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum TypeName {
    /// A string.
    String,
    /// A 64-bit integer.
    Int,
    /// Any number.
    Float,
    /// true or false.
    Bool,
    /// An array.
    Array,
    /// An object.
    Dictionary,
}
