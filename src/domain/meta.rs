//! Who is asking: the request metadata that rules, the gray bucket and the
//! served record read. A leaf: the model and the rules both use it.

use serde::{Deserialize, Serialize};

/// Who is asking, as sent in the request's `meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// The client's integer version, for `version` rules.
    #[serde(deserialize_with = "super::whole::maybe_whole")]
    pub version: Option<i64>,
    /// The platform ("ios", "android", ...), which picks the rules entry.
    pub platform: String,
    /// The device, which picks the gray bucket and counts for health.
    pub device_id: String,
    /// A semantic version string ("2.1.0"), for `app_version` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}
