//! `vane export`: a server's configs written as a directory: each config's
//! stable version, and its gray one beside it, with their stored tests, so
//! applying the directory to an empty server serves the same answers.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::client::{Client, ClientError, RemoteConfig, RemoteVersion};
use super::load::CONFIG_FILE;
use crate::domain::Lang;

/// One config as written, or why it was not.
pub type Written = Result<String, String>;

/// Writes every config the token may read into `dir`; one result per config.
pub async fn export(client: &Client, dir: &Path) -> Result<Vec<(String, Written)>, ClientError> {
    let mut configs = client.configs().await?;
    configs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut written = Vec::with_capacity(configs.len());
    for config in configs {
        let outcome = match files_of(client, &config).await {
            Ok(Some(files)) => write_files(&dir.join(&config.id), &files).map(|()| describe(&config)),
            Ok(None) => Err("it has no version to write".to_owned()),
            Err(e) => Err(e),
        };
        written.push((config.id, outcome));
    }
    Ok(written)
}

fn describe(config: &RemoteConfig) -> String {
    let stable = config.release.as_ref().map(|p| format!("stable {}", p.code_id));
    let gray = config
        .gray
        .as_ref()
        .map(|p| format!("gray {} at {} %", p.code_id, p.percentage.unwrap_or(0)));
    let parts: Vec<String> = stable.into_iter().chain(gray).collect();
    match parts.is_empty() {
        true => "newest version, unreleased".into(),
        false => parts.join(", "),
    }
}

fn write_files(folder: &Path, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    for (name, text) in files {
        let path = folder.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The folder's files (name, text): `config.toml` and each source.
async fn files_of(client: &Client, config: &RemoteConfig) -> Result<Option<Vec<(String, String)>>, String> {
    let id = &config.id;
    let fetch = |code_id: String| async move {
        let version = client.version(id, &code_id).await.map_err(|e| e.to_string())?;
        let version = version.ok_or_else(|| format!("version {code_id} is gone"))?;
        let tests = client.tests(id, &code_id).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((version, tests))
    };
    let stable = match &config.release {
        Some(p) => Some(fetch(p.code_id.clone()).await?),
        None => None,
    };
    let gray = match &config.gray {
        Some(p) => Some(fetch(p.code_id.clone()).await?),
        None => None,
    };
    let newest = match (&stable, &gray) {
        (None, None) => {
            let versions: Vec<RemoteVersion> = client
                .call(reqwest::Method::GET, &format!("/api/v1/configs/{id}/versions"), None)
                .await
                .map_err(|e| e.to_string())
                .and_then(|(_, v)| serde_json::from_value(v).map_err(|e| e.to_string()))?;
            match versions.last() {
                Some(v) => Some(fetch(v.code_id.clone()).await?),
                None => return Ok(None),
            }
        }
        _ => None,
    };
    let mut toml = String::new();
    let _ = writeln!(toml, "description = {}", quoted(&config.description));
    let _ = writeln!(toml, "active = {}", config.status == "active");
    let mut files = Vec::new();
    let (top, release, beside) = match (stable, gray, newest) {
        (Some(stable), Some(gray), _) => (gray, "gray", Some(stable)),
        (Some(stable), None, _) => (stable, "stable", None),
        (None, Some(gray), _) => (gray, "gray", None),
        (None, None, newest) => (newest.ok_or("no version")?, "none", None),
    };
    let top_file = source_name("main", top.0.lang);
    toml += &version_keys(&top.0, &top_file)?;
    let _ = writeln!(toml, "release = {}", quoted(release));
    if let Some(gray) = config.gray.as_ref().filter(|_| release == "gray") {
        let _ = writeln!(toml, "gray_percentage = {}", gray.percentage.unwrap_or(0));
    }
    let _ = writeln!(toml, "approvals_required = {}", config.approvals_required);
    toml += &tests_tables("tests", &top.1)?;
    files.push((top_file, top.0.source.clone()));
    if let Some((version, tests)) = beside {
        let file = source_name("stable", version.lang);
        toml += "\n[stable]\n";
        toml += &version_keys(&version, &file)?;
        toml += &tests_tables("stable.tests", &tests)?;
        files.push((file, version.source));
    }
    files.push((CONFIG_FILE.to_owned(), toml));
    Ok(Some(files))
}

fn source_name(stem: &str, lang: Lang) -> String {
    match lang {
        Lang::Starlark => format!("{stem}.star"),
        Lang::Javascript => format!("{stem}.js"),
    }
}

fn version_keys(version: &RemoteVersion, file: &str) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(out, "lang = {}", quoted(version.lang.as_str()));
    let _ = writeln!(out, "source = {}", quoted(file));
    let params = without_nulls(Value::Array(version.params.clone()));
    let _ = writeln!(out, "params = {}", inline(&params, "params")?);
    let rules = without_nulls(Value::Array(version.rules.clone()));
    let _ = writeln!(out, "rules = {}", inline(&rules, "rules")?);
    Ok(out)
}

fn tests_tables(table: &str, tests: &[super::client::RemoteTest]) -> Result<String, String> {
    let mut out = String::new();
    for test in tests {
        let _ = writeln!(out, "\n[[{table}]]");
        let _ = writeln!(out, "name = {}", quoted(&test.name));
        let _ = writeln!(
            out,
            "meta = {}",
            inline(&without_nulls(test.meta.clone()), "a test's meta")?
        );
        let _ = writeln!(out, "params = {}", inline(&test.params, "a test's params")?);
        match inline(&test.expected, "") {
            Ok(value) => writeln!(out, "expected = {value}"),
            // TOML has no null: the expected JSON as text.
            Err(_) => writeln!(out, "expected_json = {}", quoted(&test.expected.to_string())),
        }
        .ok();
    }
    Ok(out)
}

/// A schema's or meta's absent keys: the server writes `null` for a key
/// not given (a parameter's `default`), which reads back the same unwritten.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `value` as an inline TOML value; what TOML cannot hold (null) is named.
fn inline(value: &Value, what: &str) -> Result<String, String> {
    toml_of(value)
        .map(|v| v.to_string())
        .ok_or_else(|| format!("{what} holds a null, which TOML cannot write"))
}

fn toml_of(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().map(toml_of).collect::<Option<_>>()?),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), toml_of(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}
