//! Who may do what: roles, grants of a role over config-id patterns, and the
//! caller a request acts as. Pure: where a caller comes from (a token, a
//! session) is the edge's business.

use serde::{Deserialize, Serialize};

/// What a person or program may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads configs, versions, tests, events, reports and plans; never a
    /// config's secret.
    Viewer,
    /// And registers and deregisters instances of the services its grant
    /// covers (an agent's role).
    Registrar,
    /// And creates configs, uploads versions, edits tests, uses the playground.
    Editor,
    /// And releases, grays, rolls back, runs plans, changes status and marks.
    Publisher,
    /// And tokens, approval settings, secret rotation, the pool and settings.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Registrar,
        Role::Editor,
        Role::Publisher,
        Role::Admin,
    ];

    /// The role's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Registrar => "registrar",
            Self::Editor => "editor",
            Self::Publisher => "publisher",
            Self::Admin => "admin",
        }
    }

    /// The role named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role over the configs whose ids match any of `configs`: `*` is every
/// config, `app-*` every id starting `app-`, anything else one id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// What it allows.
    pub role: Role,
    /// Config-id patterns it covers.
    pub configs: Vec<String>,
}

/// Why a grant's patterns were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// No pattern at all: the grant would cover nothing.
    #[error("must name at least one config-id pattern (`*` for every config)")]
    Empty,
    /// Characters a config id cannot have, or a `*` that is not last.
    #[error("`{0}` is not a config id, `*`, or a prefix ending in `*`")]
    Malformed(String),
    /// The same pattern twice.
    #[error("`{0}` is named twice")]
    Repeated(String),
}

/// Checks a grant's patterns: at least one, each a config id or a prefix
/// ending in `*`, none twice.
pub fn check_patterns(patterns: &[String]) -> Result<(), PatternError> {
    if patterns.is_empty() {
        return Err(PatternError::Empty);
    }
    for (i, pattern) in patterns.iter().enumerate() {
        let stem = pattern.strip_suffix('*').unwrap_or(pattern);
        let well_formed = pattern.len() <= 129
            && (pattern == "*" || !stem.is_empty())
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !well_formed {
            return Err(PatternError::Malformed(pattern.clone()));
        }
        if patterns[..i].contains(pattern) {
            return Err(PatternError::Repeated(pattern.clone()));
        }
    }
    Ok(())
}

/// Whether `pattern` covers the config `id`.
pub fn covers(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

impl Grant {
    /// A role over every config.
    pub fn everywhere(role: Role) -> Self {
        Self {
            role,
            configs: vec!["*".to_owned()],
        }
    }

    /// Whether it covers the config `id`.
    pub fn covers(&self, id: &str) -> bool {
        self.configs.iter().any(|p| covers(p, id))
    }

    /// Whether it covers every config.
    pub fn covers_all(&self) -> bool {
        self.configs.iter().any(|p| p == "*")
    }
}

/// Who a request acts as, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What the release log records: `token:<name>` or `oidc:<email or subject>`.
    pub who: String,
    /// What they may do.
    pub grants: Vec<Grant>,
}

impl Caller {
    /// The highest role the caller holds over the config `id`.
    pub fn role_over(&self, id: &str) -> Option<Role> {
        self.grants.iter().filter(|g| g.covers(id)).map(|g| g.role).max()
    }

    /// Whether the caller holds `role` (or more) over the config `id`.
    pub fn may(&self, role: Role, id: &str) -> bool {
        self.role_over(id).is_some_and(|held| held >= role)
    }

    /// Whether the caller holds `role` (or more) over some config.
    pub fn may_somewhere(&self, role: Role) -> bool {
        self.grants.iter().any(|g| g.role >= role)
    }

    /// Whether the caller holds `role` (or more) over every config.
    pub fn may_everywhere(&self, role: Role) -> bool {
        self.grants.iter().any(|g| g.role >= role && g.covers_all())
    }

    /// The highest role the caller holds anywhere.
    pub fn highest(&self) -> Option<Role> {
        self.grants.iter().map(|g| g.role).max()
    }
}

/// An API token as stored and listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Unique; events record `token:<name>`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Over which configs (patterns).
    pub configs: Vec<String>,
    /// Unix milliseconds after which it is refused; `None`: never.
    pub expires_at: Option<i64>,
    /// Who made it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl ApiToken {
    /// The caller a request with this token acts as.
    pub fn caller(&self) -> Caller {
        Caller {
            who: format!("token:{}", self.name),
            grants: vec![Grant {
                role: self.role,
                configs: self.configs.clone(),
            }],
        }
    }

    /// Whether it is past its expiry at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

/// A console session, as stored once its person signed in through the
/// identity provider: the store keys it by the hash of its id, which only
/// the cookie carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `oidc:<email or subject>`.
    pub who: String,
    /// What their groups gave them at sign-in.
    pub grants: Vec<Grant>,
    /// What every write through the session must carry as `X-CSRF-Token`.
    pub csrf: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds after which it is refused.
    pub expires_at: i64,
}

impl Session {
    /// The caller a request in this session acts as.
    pub fn caller(&self) -> Caller {
        Caller {
            who: self.who.clone(),
            grants: self.grants.clone(),
        }
    }

    /// Whether it is past its end at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at <= now_ms
    }
}

/// Who a person signed in through the identity provider is in the release
/// log: `oidc:<email>`, or `oidc:<subject>` when the provider vouches for
/// no email.
pub fn person(email: Option<&str>, subject: &str) -> String {
    let who = match email.filter(|e| !e.is_empty()) {
        Some(email) => format!("oidc:{email}"),
        None => format!("oidc:{subject}"),
    };
    // A provider's claim is its word: a line break in it would forge a
    // line of the log or the release log.
    who.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The union of the grants of the groups a person is in, from the map of
/// group to grants; empty when none of their groups is mapped.
pub fn grants_of_groups<'a>(
    groups: impl IntoIterator<Item = &'a str>,
    map: &std::collections::BTreeMap<String, Vec<Grant>>,
) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    for group in groups {
        for grant in map.get(group).into_iter().flatten() {
            if !out.contains(grant) {
                out.push(grant.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(grants: &[(Role, &[&str])]) -> Caller {
        Caller {
            who: "token:t".into(),
            grants: grants
                .iter()
                .map(|(role, configs)| Grant {
                    role: *role,
                    configs: configs.iter().map(|c| (*c).to_owned()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn roles_include_the_ones_before() {
        let c = caller(&[(Role::Publisher, &["app-*"])]);
        assert!(c.may(Role::Viewer, "app-home"));
        assert!(c.may(Role::Publisher, "app-home"));
        assert!(!c.may(Role::Admin, "app-home"));
        assert!(!c.may(Role::Viewer, "banner"));
        assert!(!c.may_everywhere(Role::Viewer));
        assert!(c.may_somewhere(Role::Editor));
    }

    #[test]
    fn the_highest_grant_over_a_config_wins() {
        let c = caller(&[(Role::Viewer, &["*"]), (Role::Admin, &["banner"])]);
        assert_eq!(c.role_over("banner"), Some(Role::Admin));
        assert_eq!(c.role_over("other"), Some(Role::Viewer));
        assert!(c.may_everywhere(Role::Viewer));
        assert!(!c.may_everywhere(Role::Editor));
    }

    #[test]
    fn patterns_are_ids_prefixes_or_everything() {
        assert!(covers("*", "x"));
        assert!(covers("app-*", "app-"));
        assert!(!covers("app-*", "ap"));
        assert!(covers("banner", "banner"));
        assert!(!covers("banner", "banner2"));
        assert_eq!(check_patterns(&[]), Err(PatternError::Empty));
        for bad in ["", "a*b", "**", "a b", "x/y"] {
            assert!(check_patterns(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert_eq!(
            check_patterns(&["a".into(), "a".into()]),
            Err(PatternError::Repeated("a".into()))
        );
        assert!(check_patterns(&["*".into(), "app-*".into(), "b.c".into()]).is_ok());
    }

    #[test]
    fn a_person_holds_the_union_of_their_mapped_groups() {
        let mut map = std::collections::BTreeMap::new();
        map.insert("ops".to_owned(), vec![Grant::everywhere(Role::Publisher)]);
        map.insert(
            "web".to_owned(),
            vec![
                Grant::everywhere(Role::Publisher),
                Grant {
                    role: Role::Admin,
                    configs: vec!["web-*".into()],
                },
            ],
        );
        let grants = grants_of_groups(["ops", "web", "unmapped"], &map);
        assert_eq!(grants.len(), 2, "{grants:?}");
        assert!(grants_of_groups(["unmapped"], &map).is_empty());
        assert_eq!(person(Some("a@example.com"), "123"), "oidc:a@example.com");
        assert_eq!(person(Some(""), "123"), "oidc:123");
        assert_eq!(person(None, "123"), "oidc:123");
    }

    #[test]
    fn a_claim_cannot_forge_a_line() {
        assert_eq!(
            person(Some("ops@example.com\n2026 admin"), "s"),
            "oidc:ops@example.com\u{fffd}2026 admin"
        );
        assert_eq!(person(None, "sub-1"), "oidc:sub-1");
        assert_eq!(person(Some(""), "sub-1"), "oidc:sub-1");
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
