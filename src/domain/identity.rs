//! A version is its content: the code id a new version gets.

use super::Lang;
use super::params::ParamSpec;
use super::rules::PlatformRules;

/// A new version's code id, from its config and its content (language,
/// source, rules, parameter schema): the same upload to the same config
/// gets the same id on every server, so a directory applied to staging and
/// to production names the same versions in both. 16 hex digits, as random
/// ids were; versions made before keep theirs.
pub fn content_code_id(
    config_id: &str,
    lang: Lang,
    source: &str,
    rules: &[PlatformRules],
    params: &[ParamSpec],
) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    // Each part ends with a NUL, which no id, language or JSON holds bare,
    // so no two contents run together into the same bytes.
    for part in [
        "vane-version-1",
        config_id,
        lang.as_str(),
        source,
        &serde_json::to_string(rules).unwrap_or_default(),
        &serde_json::to_string(params).unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
