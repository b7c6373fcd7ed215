//! What an import will write, worked out from the original's rows alone:
//! each row becomes a value Vane stores, or a refusal that says why. Pure:
//! the compiler is passed in, and nothing here reads or writes a store.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::original::{CodeRow, ConfigRow, ReportRow, Tables, TestRow};
use super::row_error::{MAX_ID_BYTES, RowError};
use crate::domain::health::ReportKind;
use crate::domain::model::validate_new_config_id;
use crate::domain::{ConfigStatus, Lang, Meta, params, rules};
use crate::engine::EngineError;
use crate::store::{ImportedVersion, NewReport, NewTestCase, NewVersion};

/// Who the store records as having made what an import writes.
pub const ACTOR: &str = "import";

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRow {
    /// The original's table.
    pub table: &'static str,
    /// Which row (its key).
    pub row: String,
    /// Why it was left out.
    pub reason: String,
}

/// A config as the original had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPlan {
    /// Its id.
    pub id: String,
    /// Its secret, kept so the apps holding it keep working.
    pub secret: String,
    /// Active when the original said `valid`.
    pub status: ConfigStatus,
    /// The stable version, if it was imported.
    pub release: Option<String>,
    /// The gray version and its share, if imported.
    pub gray: Option<(String, u8)>,
}

/// Everything an import writes, in the order it writes it.
#[derive(Debug, Clone, Default)]
pub struct ImportPlan {
    /// Configs, with their pointers.
    pub configs: Vec<ConfigPlan>,
    /// Versions under their own code ids.
    pub versions: Vec<ImportedVersion>,
    /// Test cases under their own ids.
    pub tests: Vec<(String, NewTestCase)>,
    /// Reports; each one's `source` is `import:<id>`, which makes a second
    /// run find it.
    pub reports: Vec<NewReport>,
    /// Rows left out.
    pub refused: Vec<RefusedRow>,
}

/// Works out the plan. `check` compiles a source, answering the compiler's
/// error when it does not.
pub fn plan(tables: &Tables, check: &mut dyn FnMut(Lang, &str) -> Result<(), EngineError>) -> ImportPlan {
    let mut plan = ImportPlan::default();
    let accepted: Vec<Accepted> = tables
        .configs
        .iter()
        .filter_map(|row| {
            accept(row)
                .map_err(|reason| {
                    plan.refused
                        .push(refusal("config", format!("config_id `{}`", row.config_id), reason))
                })
                .ok()
        })
        .collect();
    let owners = owners(&tables.configs, &mut plan.refused);
    let kept: HashSet<&str> = accepted.iter().map(|a| a.row.config_id.as_str()).collect();
    // code_id -> config, for versions imported; code.id -> code_id.
    let mut imported: HashMap<String, String> = HashMap::new();
    let mut by_row: HashMap<String, String> = HashMap::new();
    for row in &tables.codes {
        match version(row, &owners, &kept, check) {
            Ok(v) => {
                imported.insert(v.code_id.clone(), v.new.config_id.clone());
                by_row.insert(row.id.clone(), v.code_id.clone());
                plan.versions.push(v);
            }
            Err(reason) => plan.refused.push(refusal(
                "code",
                format!("id {} (code_id `{}`)", row.id, row.code_id),
                reason,
            )),
        }
    }
    for config in accepted {
        plan.configs.push(pointers(config, &imported, &mut plan.refused));
    }
    for row in &tables.tests {
        match test(row, &imported) {
            Ok(t) => plan.tests.push(t),
            Err(reason) => plan
                .refused
                .push(refusal("unittest", format!("test_id `{}`", row.test_id), reason)),
        }
    }
    for row in &tables.reports {
        match report(row, &by_row, &imported) {
            Ok(r) => plan.reports.push(r),
            Err(reason) => plan
                .refused
                .push(refusal("error_report", format!("id {}", row.id), reason)),
        }
    }
    plan
}

fn refusal(table: &'static str, row: String, reason: RowError) -> RefusedRow {
    RefusedRow {
        table,
        row,
        reason: reason.to_string(),
    }
}

/// The original's versions carry no config: a version belongs to the config
/// whose release, gray or unittest pointer names it. One pointed at by two
/// configs goes to the first (by id); the other's pointer is refused.
fn owners(configs: &[ConfigRow], refused: &mut Vec<RefusedRow>) -> HashMap<String, String> {
    let mut owners: HashMap<String, String> = HashMap::new();
    for row in configs {
        let pointers = [&row.code_release, &row.code_gray, &row.code_unittest];
        for code_id in pointers.into_iter().filter_map(|p| given(p)) {
            match owners.get(code_id) {
                Some(owner) if owner != &row.config_id => refused.push(refusal(
                    "config",
                    format!("config_id `{}`", row.config_id),
                    RowError::SharedVersion {
                        code_id: code_id.to_owned(),
                        owner: owner.clone(),
                    },
                )),
                Some(_) => {}
                None => {
                    owners.insert(code_id.to_owned(), row.config_id.clone());
                }
            }
        }
    }
    owners
}

/// A column's text, unless NULL or blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn version(
    row: &CodeRow,
    owners: &HashMap<String, String>,
    kept: &HashSet<&str>,
    check: &mut dyn FnMut(Lang, &str) -> Result<(), EngineError>,
) -> Result<ImportedVersion, RowError> {
    plain_id("code_id", &row.code_id)?;
    let config_id = owners.get(&row.code_id).ok_or(RowError::NoOwner)?;
    if !kept.contains(config_id.as_str()) {
        return Err(RowError::ConfigLeftOut(config_id.clone()));
    }
    let lang = match given(&row.lang).map(str::to_ascii_lowercase).as_deref() {
        Some("starlark" | "star" | "python") => Lang::Starlark,
        Some("javascript" | "js") => Lang::Javascript,
        other => return Err(RowError::UnknownLang(other.unwrap_or("").to_owned())),
    };
    let rules = rules::from_upload(json_list("rules", &row.rules)?).map_err(RowError::Rules)?;
    let params = params::from_upload(json_list("params", &row.params)?).map_err(RowError::Params)?;
    let source = row.code.clone().unwrap_or_default();
    check(lang, &source).map_err(RowError::DoesNotCompile)?;
    Ok(ImportedVersion {
        new: NewVersion {
            config_id: config_id.clone(),
            lang,
            source,
            rules,
            params,
            created_by: ACTOR.to_owned(),
        },
        code_id: row.code_id.clone(),
        error_count: integer("err_count", &row.err_count)?.unwrap_or(0).max(0),
        broken: flag("is_broken", &row.is_broken)?,
    })
}

/// A config row whose own columns are good; its pointers come later.
struct Accepted<'a> {
    row: &'a ConfigRow,
    secret: String,
    percentage: i64,
}

fn accept(row: &ConfigRow) -> Result<Accepted<'_>, RowError> {
    validate_new_config_id(&row.config_id).map_err(RowError::ConfigId)?;
    let secret = given(&row.secret).ok_or(RowError::NoSecret)?;
    let percentage = integer("percentage", &row.percentage)?.unwrap_or(0);
    Ok(Accepted {
        row,
        secret: secret.to_owned(),
        percentage,
    })
}

/// The config with the pointers whose versions were imported. A pointer to
/// a version left out is dropped, and said; the config itself still comes,
/// so its secret and the rest are there.
fn pointers(config: Accepted, imported: &HashMap<String, String>, refused: &mut Vec<RefusedRow>) -> ConfigPlan {
    let Accepted {
        row,
        secret,
        percentage,
    } = config;
    let key = format!("config_id `{}`", row.config_id);
    let mut refuse = |reason: RowError| refused.push(refusal("config", key.clone(), reason));
    let pointer = |what: &'static str, code_id: Option<&str>, refuse: &mut dyn FnMut(RowError)| -> Option<String> {
        let code_id = code_id?;
        match imported.get(code_id) {
            Some(owner) if owner == &row.config_id => Some(code_id.to_owned()),
            _ => {
                let code_id = code_id.to_owned();
                refuse(RowError::PointerLeftOut { what, code_id });
                None
            }
        }
    };
    let release = pointer("release", given(&row.code_release), &mut refuse);
    let gray = match pointer("gray", given(&row.code_gray), &mut refuse) {
        Some(code) if !(0..=100).contains(&percentage) => {
            refuse(RowError::GrayPercentage {
                percentage,
                code_id: code,
            });
            None
        }
        // The original served the release to everyone else; gray at the
        // release itself changes nothing, so it is not kept.
        Some(code) if release.as_deref() == Some(code.as_str()) => None,
        Some(code) => Some((code, percentage as u8)),
        None => None,
    };
    let status = match given(&row.status) {
        Some("valid") => ConfigStatus::Active,
        _ => ConfigStatus::Inactive,
    };
    ConfigPlan {
        id: row.config_id.clone(),
        secret,
        status,
        release,
        gray,
    }
}

fn test(row: &TestRow, imported: &HashMap<String, String>) -> Result<(String, NewTestCase), RowError> {
    plain_id("test_id", &row.test_id)?;
    let code_id = given(&row.code_id).ok_or(RowError::NoVersion("code_id"))?;
    let config_id = imported
        .get(code_id)
        .ok_or_else(|| RowError::VersionLeftOut(code_id.to_owned()))?;
    let params = match given(&row.input) {
        None => Value::Object(Default::default()),
        Some(text) => match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err(RowError::InputNotObject),
            Err(error) => return Err(RowError::NotJson { what: "input", error }),
        },
    };
    let expected = match given(&row.output) {
        Some(text) => serde_json::from_str(text).map_err(|error| RowError::NotJson { what: "output", error })?,
        None => return Err(RowError::NoOutput),
    };
    let new = NewTestCase {
        config_id: config_id.clone(),
        code_id: code_id.to_owned(),
        name: format!("imported unittest {}", row.test_id),
        // The original ran tests without request metadata.
        meta: Meta::default(),
        params,
        expected,
    };
    Ok((row.test_id.clone(), new))
}

fn report(
    row: &ReportRow,
    by_row: &HashMap<String, String>,
    imported: &HashMap<String, String>,
) -> Result<NewReport, RowError> {
    let code_ref = given(&row.code_ref).ok_or(RowError::NoVersion("code_ref"))?;
    let code_id = by_row
        .get(code_ref)
        .ok_or_else(|| RowError::CodeRowLeftOut(code_ref.to_owned()))?;
    Ok(NewReport {
        config_id: imported[code_id].clone(),
        code_id: code_id.clone(),
        err_time: time(&row.time)?,
        message: row.message.clone().unwrap_or_default(),
        kind: ReportKind::Client,
        source: format!("import:{}", row.id),
        // Old reports are kept for the record; they never break anything now.
        candidate: false,
    })
}

fn plain_id(what: &'static str, id: &str) -> Result<(), RowError> {
    let plain = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/');
    match plain {
        true => Ok(()),
        false => Err(RowError::NotPlainId {
            what,
            id: id.to_owned(),
        }),
    }
}

/// A JSON list column: NULL or blank is an empty list.
fn json_list(what: &'static str, text: &Option<String>) -> Result<Vec<Value>, RowError> {
    match given(text) {
        None => Ok(Vec::new()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(Value::Null) => Ok(Vec::new()),
            Ok(_) => Err(RowError::NotAList(what)),
            Err(error) => Err(RowError::NotJson { what, error }),
        },
    }
}

fn integer(what: &'static str, text: &Option<String>) -> Result<Option<i64>, RowError> {
    given(text)
        .map(|t| {
            t.parse::<i64>().map_err(|_| RowError::NotInteger {
                what,
                text: t.to_owned(),
            })
        })
        .transpose()
}

fn flag(what: &'static str, text: &Option<String>) -> Result<bool, RowError> {
    match given(text).map(str::to_ascii_lowercase).as_deref() {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(RowError::NotAFlag {
            what,
            text: other.to_owned(),
        }),
    }
}

/// When a report's error happened, in unix seconds (`original.rs` turns a
/// date column into seconds as it reads).
fn time(text: &Option<String>) -> Result<i64, RowError> {
    integer("time", text).map(|t| t.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, release: &str, gray: Option<&str>, percentage: &str, status: &str) -> ConfigRow {
        ConfigRow {
            config_id: id.into(),
            code_release: Some(release.into()),
            code_unittest: None,
            code_gray: gray.map(Into::into),
            percentage: Some(percentage.into()),
            status: Some(status.into()),
            secret: Some(format!("secret-{id}")),
        }
    }

    fn code(id: &str, code_id: &str, lang: &str) -> CodeRow {
        CodeRow {
            id: id.into(),
            code_id: code_id.into(),
            lang: Some(lang.into()),
            rules: None,
            params: Some("null".into()),
            code: Some("return 1".into()),
            is_broken: Some("1".into()),
            err_count: Some("7".into()),
        }
    }

    fn planned(tables: &Tables) -> ImportPlan {
        plan(tables, &mut |_, source| match source.contains('{') {
            true => Err(EngineError::Compile {
                message: "unclosed".into(),
                line: 1,
                column: 1,
            }),
            false => Ok(()),
        })
    }

    #[test]
    fn rows_become_what_vane_stores() {
        let tables = Tables {
            configs: vec![
                config("a", "a1", Some("a2"), "25", "valid"),
                config("b", "b1", Some("b1"), "50", "deleted"),
            ],
            codes: vec![
                code("1", "a1", "Starlark"),
                code("2", "a2", "js"),
                code("3", "b1", "javascript"),
            ],
            ..Tables::default()
        };
        let plan = planned(&tables);
        assert_eq!(plan.refused, []);
        assert_eq!(
            plan.configs,
            [
                ConfigPlan {
                    id: "a".into(),
                    secret: "secret-a".into(),
                    status: ConfigStatus::Active,
                    release: Some("a1".into()),
                    gray: Some(("a2".into(), 25)),
                },
                // Gray at the release itself changes nothing.
                ConfigPlan {
                    id: "b".into(),
                    secret: "secret-b".into(),
                    status: ConfigStatus::Inactive,
                    release: Some("b1".into()),
                    gray: None,
                },
            ]
        );
        let v = &plan.versions[1];
        assert_eq!(
            (v.code_id.as_str(), v.new.config_id.as_str(), v.new.lang),
            ("a2", "a", Lang::Javascript)
        );
        assert_eq!((v.error_count, v.broken), (7, true));
    }

    #[test]
    fn bad_rows_are_refused_with_their_reason_and_the_rest_comes() {
        let mut shared = config("c", "a1", None, "0", "valid");
        shared.code_release = Some("a1".into());
        let tables = Tables {
            configs: vec![config("a", "a1", Some("a2"), "250", "valid"), shared],
            codes: vec![
                code("1", "a1", "starlark"),
                code("2", "a2", "lua"),
                code("3", "a/3", "starlark"),
            ],
            tests: vec![TestRow {
                test_id: "t".into(),
                input: Some("[1]".into()),
                output: Some("1".into()),
                code_id: Some("a1".into()),
            }],
            reports: vec![ReportRow {
                id: "9".into(),
                time: Some("yesterday".into()),
                message: None,
                code_ref: Some("1".into()),
            }],
        };
        let plan = planned(&tables);
        let reasons: Vec<String> = plan
            .refused
            .iter()
            .map(|r| format!("{} {}: {}", r.table, r.row, r.reason))
            .collect();
        let expect = [
            "config config_id `c`: version `a1` belongs to config `a` too",
            "code id 2 (code_id `a2`): lang `lua` is neither starlark nor javascript",
            "code id 3 (code_id `a/3`): code_id `a/3` must be 1 to 255 bytes without `/`",
            "config config_id `a`: its gray version `a2` was not imported",
            "config config_id `c`: its release version `a1` was not imported",
            "unittest test_id `t`: input is not a JSON object of parameters",
            "error_report id 9: time `yesterday` is not an integer",
        ];
        assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
        for (reason, expected) in reasons.iter().zip(expect) {
            assert!(reason.starts_with(expected), "{reason} is not {expected}");
        }
        assert_eq!(plan.configs.len(), 2);
        assert_eq!(plan.configs[0].release.as_deref(), Some("a1"));
        assert_eq!(plan.versions.len(), 1);
    }
}
