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
