//! `[auth.oidc]`: single sign-on for the console with OpenID Connect. No
//! such table: SSO is off and people sign in with tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SettingsError, invalid};
use crate::domain::access::{Grant, Role, check_patterns};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[auth.oidc]`.
pub struct Oidc {
    /// The identity provider's issuer URL; its
    /// `/.well-known/openid-configuration` is read from there.
    pub issuer: String,
    /// The client id the provider gave Vane.
    pub client_id: String,
    /// The client's secret; empty for a public client (PKCE only).
    pub client_secret: String,
    /// Where the provider sends people back: Vane's public address with the
    /// path `/auth/callback`. An https address makes the cookies `Secure`.
    pub redirect_url: String,
    /// Scopes asked for; `openid` must be one.
    pub scopes: Vec<String>,
    /// The ID token's (or userinfo's) claim that lists a person's groups.
    pub groups_claim: String,
    /// Group name -> what its members may do; a person's grants are the
    /// union over their mapped groups, and one in none is refused.
    pub groups: BTreeMap<String, Vec<GroupGrant>>,
    /// How long a console session lasts, in seconds.
    pub session_ttl_s: u64,
}

impl Default for Oidc {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            redirect_url: String::new(),
            scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
            groups_claim: "groups".into(),
            groups: BTreeMap::new(),
            session_ttl_s: 8 * 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// One grant of a group, as written: `{ role = "publisher", configs = ["*"] }`.
/// The role is text here so a wrong one is refused naming its group.
pub struct GroupGrant {
    /// `viewer`, `editor`, `publisher` or `admin`.
    pub role: String,
    /// Config-id patterns: `*`, `app-*`, `banner`.
    pub configs: Vec<String>,
}

/// The path every redirect URL must end in: the route that takes the
/// provider's answer.
pub const CALLBACK_PATH: &str = "/auth/callback";

impl Oidc {
    /// Checks every value; the first one out names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_url("auth.oidc.issuer", &self.issuer)?;
        if self.client_id.is_empty() {
            return invalid(
                "auth.oidc.client_id",
                "must be set (the client id the provider gave Vane)",
            );
        }
        let redirect = check_url("auth.oidc.redirect_url", &self.redirect_url)?;
        if redirect.path() != CALLBACK_PATH || redirect.query().is_some() || redirect.fragment().is_some() {
            return invalid(
                "auth.oidc.redirect_url",
                "must be Vane's public address with the path /auth/callback (https://vane.example.com/auth/callback)",
            );
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return invalid("auth.oidc.scopes", "must include `openid`");
        }
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return invalid("auth.oidc.scopes", "every scope is one word, without spaces");
        }
        if self.groups_claim.is_empty() {
            return invalid("auth.oidc.groups_claim", "must name a claim (`groups`)");
        }
        if self.groups.is_empty() {
            return invalid(
                "auth.oidc.groups",
                "maps no group to grants, so nobody could sign in (ops = [{ role = \"publisher\", configs = [\"*\"] }])",
            );
        }
        self.grants_by_group()?;
        if !(60..=30 * 86_400).contains(&self.session_ttl_s) {
            return invalid("auth.oidc.session_ttl_s", "must be between 60 and 2592000 (30 days)");
        }
        Ok(())
    }

    /// Each group's grants, checked: a known role and well-formed patterns.
    pub fn grants_by_group(&self) -> Result<BTreeMap<String, Vec<Grant>>, SettingsError> {
        let mut out = BTreeMap::new();
        for (group, grants) in &self.groups {
            let refuse = |reason: String| SettingsError::Invalid {
                key: "auth.oidc.groups",
                reason: format!("group `{group}`: {reason}"),
            };
            if grants.is_empty() {
                return Err(refuse("has no grant".into()));
            }
            let mut checked = Vec::new();
            for grant in grants {
                let role = Role::parse(&grant.role).ok_or_else(|| {
                    refuse(format!(
                        "unknown role `{}`; one of viewer, editor, publisher, admin",
                        grant.role
                    ))
                })?;
                check_patterns(&grant.configs).map_err(|e| refuse(format!("configs {e}")))?;
                checked.push(Grant {
                    role,
                    configs: grant.configs.clone(),
                });
            }
            out.insert(group.clone(), checked);
        }
        Ok(out)
    }

    /// Whether the cookies must be `Secure`: the redirect URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.redirect_url.starts_with("https://")
    }
}

/// An absolute http(s) URL; plain http only to this machine (a test
/// provider), since tokens and codes would cross the network in the clear.
fn check_url(key: &'static str, value: &str) -> Result<url::Url, SettingsError> {
    let parsed = url::Url::parse(value).map_err(|e| SettingsError::Invalid {
        key,
        reason: format!("`{value}` is not a URL ({e})"),
    })?;
    let local = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if local => Ok(parsed),
        "http" => invalid(key, "must be https (plain http only to localhost)"),
        _ => invalid(key, "must be an https URL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Oidc {
        let mut groups = BTreeMap::new();
        groups.insert(
            "ops".to_owned(),
            vec![GroupGrant {
                role: "publisher".into(),
                configs: vec!["*".into()],
            }],
        );
        Oidc {
            issuer: "https://id.example.com/realms/main".into(),
            client_id: "vane".into(),
            client_secret: "s".into(),
            redirect_url: "https://vane.example.com/auth/callback".into(),
            groups,
            ..Oidc::default()
        }
    }

    fn refused(tweak: impl FnOnce(&mut Oidc)) -> String {
        let mut o = good();
        tweak(&mut o);
        o.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_complete_table_passes_and_names_its_grants() {
        let o = good();
        o.validate().unwrap();
        assert!(o.secure_cookies());
        assert_eq!(
            o.grants_by_group().unwrap()["ops"],
            vec![Grant::everywhere(Role::Publisher)]
        );
    }

    #[test]
    fn each_bad_value_names_its_key() {
        assert!(refused(|o| o.issuer = "id.example.com".into()).contains("auth.oidc.issuer"));
        assert!(refused(|o| o.issuer = "http://id.example.com".into()).contains("must be https"));
        assert!(refused(|o| o.client_id.clear()).contains("auth.oidc.client_id"));
        assert!(refused(|o| o.redirect_url = "https://v.example.com/cb".into()).contains("/auth/callback"));
        assert!(refused(|o| o.scopes = vec!["email".into()]).contains("auth.oidc.scopes"));
        assert!(refused(|o| o.groups.clear()).contains("auth.oidc.groups"));
        assert!(refused(|o| o.session_ttl_s = 5).contains("auth.oidc.session_ttl_s"));
        let role = refused(|o| o.groups.get_mut("ops").unwrap()[0].role = "owner".into());
        assert!(
            role.contains("auth.oidc.groups") && role.contains("`ops`") && role.contains("`owner`"),
            "{role}"
        );
        let pattern = refused(|o| o.groups.get_mut("ops").unwrap()[0].configs = vec!["a*b".into()]);
        assert!(pattern.contains("`a*b`"), "{pattern}");
    }

    #[test]
    fn plain_http_is_for_this_machine_only() {
        let mut o = good();
        o.issuer = "http://127.0.0.1:9000".into();
        o.redirect_url = "http://localhost:8080/auth/callback".into();
        o.validate().unwrap();
        assert!(!o.secure_cookies());
    }
}
