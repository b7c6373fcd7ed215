//! Who is asking: the request metadata that rules, the gray bucket and the
//! served record read. A leaf: the model and the rules both use it.

use serde::{Deserialize, Deserializer, Serialize, de::Error};

/// The longest `device_id` taken, in bytes (UUIDs and hardware ids fit
/// many times over): every fetch hashes it for the gray bucket, and a
/// megabyte one cost a millisecond of the server's time per request.
pub const MAX_DEVICE_ID_BYTES: usize = 256;

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
    #[serde(deserialize_with = "device_id")]
    pub device_id: String,
    /// A semantic version string ("2.1.0"), for `app_version` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

fn device_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    if id.len() > MAX_DEVICE_ID_BYTES {
        return Err(D::Error::custom(format!(
            "`device_id` is {} bytes long; at most {MAX_DEVICE_ID_BYTES} bytes are taken",
            id.len()
        )));
    }
    Ok(id)
}
