//! Which version answers a request: gray for the devices in its bucket, stable
//! otherwise, and the refusals a client can get instead.

use std::borrow::Borrow;

use super::gray;
use super::meta::Meta;
use super::model::{Config, ConfigStatus, Version};
use super::rules;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a config gives no version for a request.
pub enum Refusal {
    #[error("config `{0}` does not exist")]
    /// No config has this id.
    UnknownConfig(String),
    #[error("config `{0}` is inactive")]
    /// The config is switched off.
    Inactive(String),
    #[error("config `{0}` has no released version")]
    /// The config has no stable version yet.
    NoRelease(String),
    #[error("version `{0}` is marked broken")]
    /// The version chosen is marked broken, with no fallback.
    Broken(String),
    #[error("request metadata does not match the rules of version `{0}`")]
    /// The version's targeting rules do not admit this request.
    RulesReject(String),
}

/// The version chosen for a request, and how it was chosen.
#[derive(Debug, PartialEq)]
pub struct Chosen<'a, V> {
    /// The caller's own handle to the version.
    pub version: &'a V,
    /// A gray release was in force, so the device's bucket decided between
    /// it and stable.
    pub split: bool,
    /// The version's rules apply to this request, and it passed them.
    pub targeted: bool,
}

/// Picks the version for `meta`, returning the caller's own handle to it
/// (`Version`, `Arc<Version>`, ...). A broken gray version is skipped, so its
/// devices fall back to stable; a broken stable version refuses, unless
/// reports broke it with nothing to fall back to (`still_served`).
pub fn choose<'a, V: Borrow<Version>>(
    config: &Config,
    release: Option<&'a V>,
    gray: Option<&'a V>,
    meta: &Meta,
) -> Result<Chosen<'a, V>, Refusal> {
    if config.status == ConfigStatus::Inactive {
        return Err(Refusal::Inactive(config.id.clone()));
    }
    let (split, gray_hit) = match (&config.gray, gray) {
        (Some(g), Some(v)) if !v.borrow().broken && v.borrow().code_id == g.code_id => {
            (true, gray::in_gray(&meta.device_id, &g.code_id, g.percentage))
        }
        _ => (false, false),
    };
    let version = match (gray_hit, gray, release) {
        (true, Some(v), _) => v,
        (_, _, Some(v)) => v,
        _ => return Err(Refusal::NoRelease(config.id.clone())),
    };
    let chosen: &Version = version.borrow();
    if chosen.broken && !chosen.still_served {
        return Err(Refusal::Broken(chosen.code_id.clone()));
    }
    if !rules::allows(&chosen.rules, meta) {
        return Err(Refusal::RulesReject(chosen.code_id.clone()));
    }
    Ok(Chosen {
        version,
        split,
        targeted: rules::constrains(&chosen.rules, meta),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Gray, Lang, Release};

    fn version(code_id: &str) -> Version {
        Version {
            code_id: code_id.into(),
            config_id: "c".into(),
            lang: Lang::Starlark,
            source: "return 1".into(),
            rules: vec![],
            params: vec![],
            error_count: 0,
            broken: false,
            still_served: false,
            created_by: "t".into(),
            created_at: 0,
        }
    }

    fn config(gray_pct: Option<u8>) -> Config {
        Config {
            id: "c".into(),
            description: String::new(),
            status: ConfigStatus::Active,
            secret: "s".into(),
            revision: 1,
            release: Some(Release {
                code_id: "stable".into(),
            }),
            gray: gray_pct.map(|p| Gray {
                code_id: "gray".into(),
                percentage: p,
            }),
            created_at: 0,
            updated_at: 0,
            previous_secret: None,
            previous_secret_until: 0,
            previous_secrets: Vec::new(),
            approvals_required: 0,
        }
    }

    fn meta(device: &str) -> Meta {
        Meta {
            app_version: None,
            device_id: device.into(),
            ..Meta::default()
        }
    }

    #[test]
    fn gray_follows_the_bucket() {
        let (s, g) = (version("stable"), version("gray"));
        let cfg = config(Some(50));
        for i in 0..200 {
            let device = format!("device-{i}");
            let chosen = choose(&cfg, Some(&s), Some(&g), &meta(&device)).unwrap().version;
            let expect = if gray::in_gray(&device, "gray", 50) {
                "gray"
            } else {
                "stable"
            };
            assert_eq!(chosen.code_id, expect);
        }
    }

    #[test]
    fn broken_gray_falls_back_and_broken_stable_refuses() {
        let s = version("stable");
        let mut g = version("gray");
        g.broken = true;
        let cfg = config(Some(100));
        assert_eq!(
            choose(&cfg, Some(&s), Some(&g), &meta("d")).unwrap().version.code_id,
            "stable"
        );
        let mut s = s;
        s.broken = true;
        assert_eq!(
            choose(&cfg, Some(&s), Some(&g), &meta("d")),
            Err(Refusal::Broken("stable".into()))
        );
        // Broken by reports with nothing to fall back to: served on.
        s.still_served = true;
        assert_eq!(
            choose(&cfg, Some(&s), Some(&g), &meta("d")).unwrap().version.code_id,
            "stable"
        );
    }

    #[test]
    fn inactive_and_unreleased() {
        let mut cfg = config(None);
        cfg.status = ConfigStatus::Inactive;
        assert_eq!(
            choose::<Version>(&cfg, None, None, &meta("d")),
            Err(Refusal::Inactive("c".into()))
        );
        cfg.status = ConfigStatus::Active;
        assert_eq!(
            choose::<Version>(&cfg, None, None, &meta("d")),
            Err(Refusal::NoRelease("c".into()))
        );
    }

    #[test]
    fn the_choice_says_whether_gray_split_and_rules_targeted() {
        let (s, g) = (version("stable"), version("gray"));
        let chosen = choose(&config(None), Some(&s), Some(&g), &meta("d")).unwrap();
        assert!(!chosen.split && !chosen.targeted, "no gray, no rules");
        let chosen = choose(&config(Some(50)), Some(&s), Some(&g), &meta("d")).unwrap();
        assert!(chosen.split, "a gray release decides for every device, in or out");
        let mut broken = version("gray");
        broken.broken = true;
        let chosen = choose(&config(Some(50)), Some(&s), Some(&broken), &meta("d")).unwrap();
        assert!(!chosen.split, "a broken gray decides nothing");

        let mut ruled = version("stable");
        ruled.rules = serde_json::from_value(serde_json::json!([
            {"platform": "ios", "rules": [[{"field": "version", "compare": ">=", "value": 3}]]}
        ]))
        .unwrap();
        let ios = Meta {
            platform: "ios".into(),
            version: Some(5),
            ..meta("d")
        };
        assert!(choose(&config(None), Some(&ruled), None, &ios).unwrap().targeted);
        let android = Meta {
            platform: "android".into(),
            ..meta("d")
        };
        let chosen = choose(&config(None), Some(&ruled), None, &android).unwrap();
        assert!(
            !chosen.targeted,
            "no rule applies to android: let through, not targeted"
        );
    }
}
