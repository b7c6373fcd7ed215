//! The service registry's words: a *service* is a name instances register
//! under; an *instance* is one address and port of it, with string meta; its
//! *lease* ends `ttl_s` after the last registration unless renewed. A
//! service's *membership* is its live instances and a revision that moves
//! whenever they do. Pure: where leases live is the service layer's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::validate_new_config_id;

/// Most meta keys an instance may carry.
pub const MOST_META_KEYS: usize = 64;
/// Longest meta key or value, in bytes.
pub const MOST_META_BYTES: usize = 1024;
/// Longest address, in bytes (a DNS name is at most 253).
pub const MOST_ADDRESS_BYTES: usize = 255;
/// Longest lease.
pub const MOST_TTL_S: u32 = 3600;

/// Why a registration is refused; each names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The service name is not a plain name.
    #[error("service: {0}")]
    Service(String),
    /// The instance id is not a plain name.
    #[error("instance_id: {0}")]
    InstanceId(String),
    /// Empty, too long, or holds spaces or control characters.
    #[error(
        "address: must be 1 to {MOST_ADDRESS_BYTES} bytes of a host name or IP address, no spaces or control characters"
    )]
    Address,
    /// Outside 1..=65535.
    #[error("port: must be 1 to 65535, not {0}")]
    Port(i64),
    /// Outside 1..=3600.
    #[error("ttl_s: must be 1 to {MOST_TTL_S} seconds, not {0}")]
    Ttl(i64),
    /// Too many keys, or a key or value too long.
    #[error("meta: {0}")]
    Meta(String),
    /// A field of the wrong type, or missing.
    #[error("{0}: {1}")]
    Type(&'static str, &'static str),
    /// Not an object, or a field no registration has.
    #[error("body: {0}")]
    Body(String),
}

/// A registration as the route takes it: numbers wide, so 0 and 70000 are
/// refused by name rather than by a parser.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    /// A host name or IP address clients reach the instance at (the
    /// server takes any 1 to 255 bytes without spaces or control characters).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[A-Za-z0-9.:\[\]_-]+$")]
    pub address: String,
    /// 1 to 65535.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: i64,
    /// Strings for templates (`zone`, `weight`, ...): at most 64, each at
    /// most 1024 bytes.
    #[serde(default)]
    #[schema(schema_with = meta_schema)]
    pub meta: BTreeMap<String, String>,
    /// Seconds the lease lasts without renewal, 1 to 3600.
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_s: i64,
}

/// `meta` as the document states it: at most 64 strings of at most 1024
/// bytes (utoipa has no field attribute for the count).
fn meta_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MOST_META_BYTES))
        .build();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(Schema::Object(value).into())))
        .max_properties(Some(MOST_META_KEYS))
        .build()
}

/// A checked registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Where the instance is.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its meta.
    pub meta: BTreeMap<String, String>,
    /// Its lease.
    pub ttl_s: u32,
}

/// A service name, checked as a config id is (they appear in URLs and in
/// the same grants).
pub fn check_service(name: &str) -> Result<(), RegistryError> {
    validate_new_config_id(name).map_err(|e| RegistryError::Service(e.to_string().replace("config id", "name")))
}

/// An instance id, checked as a config id is.
pub fn check_instance_id(id: &str) -> Result<(), RegistryError> {
    validate_new_config_id(id).map_err(|e| RegistryError::InstanceId(e.to_string().replace("config id", "id")))
}

impl RegistrationBody {
    /// Reads a body, naming the field of any wrong type: serde's own
    /// messages give only a line and column. Whole numbers may be written
    /// `80.0`, as everywhere in the API.
    pub fn parse(body: serde_json::Value) -> Result<Self, RegistryError> {
        let serde_json::Value::Object(mut map) = body else {
            return Err(RegistryError::Body("must be a JSON object".into()));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !["address", "port", "meta", "ttl_s"].contains(&k.as_str()))
        {
            return Err(RegistryError::Body(format!(
                "unknown field `{}`; a registration has address, port, meta and ttl_s",
                unknown.escape_debug()
            )));
        }
        let whole = |value: Option<serde_json::Value>, field| match value {
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or(RegistryError::Type(field, "must be a whole number")),
            None => Err(RegistryError::Type(field, "is required")),
            Some(_) => Err(RegistryError::Type(field, "must be a whole number")),
        };
        let address = match map.remove("address") {
            Some(serde_json::Value::String(address)) => address,
            None => return Err(RegistryError::Type("address", "is required")),
            Some(_) => return Err(RegistryError::Type("address", "must be a string")),
        };
        let port = whole(map.remove("port"), "port")?;
        let ttl_s = whole(map.remove("ttl_s"), "ttl_s")?;
        let meta = match map.remove("meta") {
            None => BTreeMap::new(),
            Some(serde_json::Value::Object(meta)) => meta
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(v) => Ok((k, v)),
                    _ => Err(RegistryError::Type("meta", "values must be strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RegistryError::Type("meta", "must be an object of strings")),
        };
        Ok(Self {
            address,
            port,
            meta,
            ttl_s,
        })
    }

    /// The registration, or the first field that is wrong.
    pub fn check(self) -> Result<Registration, RegistryError> {
        let plain = |s: &str| {
            !s.is_empty() && s.len() <= MOST_ADDRESS_BYTES && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !plain(&self.address) {
            return Err(RegistryError::Address);
        }
        let port = u16::try_from(self.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(RegistryError::Port(self.port))?;
        let ttl_s = u32::try_from(self.ttl_s)
            .ok()
            .filter(|t| (1..=MOST_TTL_S).contains(t))
            .ok_or(RegistryError::Ttl(self.ttl_s))?;
        if self.meta.len() > MOST_META_KEYS {
            let n = self.meta.len();
            return Err(RegistryError::Meta(format!(
                "{n} keys, over the {MOST_META_KEYS} an instance may carry"
            )));
        }
        for (key, value) in &self.meta {
            if key.len() > MOST_META_BYTES || value.len() > MOST_META_BYTES {
                return Err(RegistryError::Meta(format!(
                    "keys and values must be at most {MOST_META_BYTES} bytes"
                )));
            }
            if key.contains('\0') || value.contains('\0') {
                return Err(RegistryError::Meta("NUL characters are refused".into()));
            }
        }
        Ok(Registration {
            address: self.address,
            port,
            meta: self.meta,
            ttl_s,
        })
    }
}

/// One live instance, as lists and pushes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Instance {
    /// Its id within the service.
    pub instance_id: String,
    /// Where it is.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its meta.
    pub meta: BTreeMap<String, String>,
    /// When it first registered with this content, unix ms.
    pub registered_at: i64,
    /// When its lease ends unless renewed, unix ms, as the node that holds
    /// the lease last said (another node shows the end it was told of).
    pub expires_at: i64,
}

/// A service's live instances, sorted by id, and its revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Membership {
    /// The service.
    pub service: String,
    /// Moves whenever an instance comes, goes or changes address, port or
    /// meta; a renewal leaves it. At most 2^53, so JavaScript reads it whole. The same on every node for the same
    /// members (it is derived from them), so a client that resumes on
    /// another node with its revision is told nothing if nothing moved.
    pub revision: i64,
    /// The live instances, by id.
    pub instances: Vec<Instance>,
}

impl Membership {
    /// The membership of `instances` (sorted here).
    pub fn of(service: &str, mut instances: Vec<Instance>) -> Self {
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Self {
            service: service.to_owned(),
            revision: revision_of(service, &instances),
            instances,
        }
    }
}

/// A revision from what members are, not when they renewed: the XOR of
/// each instance's hash, so one instance coming or going moves it at the
/// cost of one hash, and the order members were heard in does not matter.
/// 53 bits, so a JavaScript client holds it exactly; 0 for none.
fn revision_of(service: &str, instances: &[Instance]) -> i64 {
    instances.iter().fold(0, |acc, i| acc ^ instance_hash(service, i))
}

/// One instance's part of its service's revision.
pub fn instance_hash(service: &str, i: &Instance) -> i64 {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let meta = serde_json::to_string(&i.meta).unwrap_or_default();
    for part in [
        service,
        i.instance_id.as_str(),
        i.address.as_str(),
        &i.port.to_string(),
        &meta,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let bytes: [u8; 8] = hash.finalize()[..8].try_into().unwrap_or_default();
    (u64::from_be_bytes(bytes) >> 11) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(port: i64, ttl_s: i64) -> RegistrationBody {
        RegistrationBody {
            address: "10.0.0.1".into(),
            port,
            meta: BTreeMap::new(),
            ttl_s,
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(body(0, 10).check(), Err(RegistryError::Port(0)));
        assert_eq!(body(70000, 10).check(), Err(RegistryError::Port(70000)));
        assert_eq!(body(80, 0).check(), Err(RegistryError::Ttl(0)));
        assert_eq!(body(80, 3601).check(), Err(RegistryError::Ttl(3601)));
        let mut b = body(80, 10);
        b.address = " ".into();
        assert_eq!(b.check(), Err(RegistryError::Address));
        let mut b = body(80, 10);
        b.meta = (0..10_000).map(|i| (i.to_string(), String::new())).collect();
        assert!(b.check().unwrap_err().to_string().starts_with("meta: 10000 keys"));
        assert!(body(65535, 3600).check().is_ok());
        assert!(check_service("api").is_ok() && check_service("a b").is_err() && check_service("..").is_err());
    }

    #[test]
    fn the_revision_moves_with_members_not_with_renewals() {
        let one = |expires_at| Instance {
            instance_id: "a".into(),
            address: "10.0.0.1".into(),
            port: 80,
            meta: BTreeMap::new(),
            registered_at: 1,
            expires_at,
        };
        let first = Membership::of("api", vec![one(100)]);
        assert_eq!(first.revision, Membership::of("api", vec![one(200)]).revision);
        let mut moved = one(100);
        moved.port = 81;
        assert_ne!(first.revision, Membership::of("api", vec![moved]).revision);
        assert_eq!(Membership::of("api", vec![]).revision, 0);
        let mut b = one(1);
        b.instance_id = "b".into();
        let both = Membership::of("api", vec![one(1), b.clone()]).revision;
        assert_eq!(
            both,
            Membership::of("api", vec![b, one(1)]).revision,
            "order does not matter"
        );
        assert!(both < 1 << 53);
    }

    #[test]
    fn bodies_name_the_field_of_a_wrong_type() {
        let parse = |v: serde_json::Value| RegistrationBody::parse(v).map(|_| ()).map_err(|e| e.to_string());
        use serde_json::json;
        assert_eq!(
            parse(json!({"address": "a", "port": "80", "ttl_s": 5})),
            Err("port: must be a whole number".into())
        );
        assert_eq!(
            parse(json!({"address": "a", "port": 80.5, "ttl_s": 5})),
            Err("port: must be a whole number".into())
        );
        assert_eq!(
            parse(json!({"address": "a", "port": 80, "ttl_s": 1.5})),
            Err("ttl_s: must be a whole number".into())
        );
        assert_eq!(
            parse(json!({"address": 1, "port": 80, "ttl_s": 5})),
            Err("address: must be a string".into())
        );
        assert_eq!(
            parse(json!({"port": 80, "ttl_s": 5})),
            Err("address: is required".into())
        );
        assert_eq!(parse(json!(null)), Err("body: must be a JSON object".into()));
        assert!(
            parse(json!({"address": "a", "port": 80, "ttl_s": 5, "x": 1}))
                .unwrap_err()
                .starts_with("body: unknown field `x`")
        );
        assert_eq!(
            parse(json!({"address": "a", "port": 80.0, "ttl_s": 5, "meta": {"k": "v"}})),
            Ok(())
        );
        assert_eq!(
            parse(json!({"address": "a", "port": 80, "ttl_s": 5, "meta": {"k": 1}})),
            Err("meta: values must be strings".into())
        );
    }
}
