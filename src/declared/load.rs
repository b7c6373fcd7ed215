//! Reading a directory of configs. Every problem is collected, each naming
//! its file and, where there is one, its line, so one run shows them all.

use std::fmt;
use std::path::{Component, Path};

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::{DeclaredConfig, DeclaredTest, DeclaredVersion, Release, TestMeta};
use crate::domain::Lang;
use crate::domain::model::validate_new_config_id;

/// The file in each config's folder.
pub const CONFIG_FILE: &str = "config.toml";

/// Why a directory cannot be used: every problem found, in path order.
#[derive(Debug)]
pub struct Malformed(pub Vec<String>);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.0 {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Malformed {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    description: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    // The version's keys, written at the top (serde's `flatten` would lose
    // both the unknown-key check and the lines).
    lang: Option<Lang>,
    source: Spanned<String>,
    #[serde(default)]
    params: Option<Spanned<Vec<Value>>>,
    #[serde(default)]
    rules: Option<Spanned<Vec<Value>>>,
    #[serde(default)]
    tests: Vec<Spanned<TestFile>>,
    #[serde(default)]
    release: Option<Spanned<ReleaseKind>>,
    gray_percentage: Option<Spanned<u8>>,
    approvals_required: Option<Spanned<u32>>,
    stable: Option<Spanned<VersionFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    lang: Option<Lang>,
    source: Spanned<String>,
    #[serde(default)]
    params: Option<Spanned<Vec<Value>>>,
    #[serde(default)]
    rules: Option<Spanned<Vec<Value>>>,
    #[serde(default)]
    tests: Vec<Spanned<TestFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    name: String,
    #[serde(default)]
    meta: TestMeta,
    #[serde(default = "empty_table")]
    params: Value,
    expected: Option<Value>,
    expected_json: Option<String>,
}

fn empty_table() -> Value {
    Value::Object(Default::default())
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum ReleaseKind {
    Stable,
    Gray,
    None,
}

fn yes() -> bool {
    true
}

/// Every config in `dir`, sorted by id; folders whose name starts with `.`
/// (`.git`) and plain files (a README) are not configs.
pub fn read(dir: &Path) -> Result<Vec<DeclaredConfig>, Malformed> {
    let entries = std::fs::read_dir(dir).map_err(|e| Malformed(vec![format!("{}: {e}", dir.display())]))?;
    let mut problems = Vec::new();
    let mut folders = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(kind) = entry.file_type() else { continue };
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if kind.is_symlink() && entry.path().is_dir() {
            // A link could take `--prune` and the sources anywhere.
            let why = "is a link; a config's folder must be a folder in the directory";
            problems.push(format!("{}: {why}", entry.path().display()));
        } else if kind.is_dir() && !hidden {
            folders.push(entry.path());
        }
    }
    folders.sort();
    let mut configs = Vec::new();
    for folder in folders {
        match read_config(&folder) {
            Ok(config) => configs.push(config),
            Err(mut found) => problems.append(&mut found),
        }
    }
    match problems.is_empty() {
        true => Ok(configs),
        false => Err(Malformed(problems)),
    }
}

/// One config's folder.
fn read_config(folder: &Path) -> Result<DeclaredConfig, Vec<String>> {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Err(e) = validate_new_config_id(&name) {
        return Err(vec![format!(
            "{}: the folder's name is the config id, and {e}",
            folder.display()
        )]);
    }
    let path = folder.join(CONFIG_FILE);
    let place = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| vec![format!("{place}: {e}")])?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", line_at(&text, s.start)))
            .unwrap_or_default();
        vec![format!("{place}{at}: {}", e.message().trim_end())]
    })?;
    let mut problems = Vec::new();
    let here = Place {
        folder,
        file: &place,
        text: &text,
    };
    let top = VersionFile {
        lang: file.lang,
        source: file.source,
        params: file.params,
        rules: file.rules,
        tests: file.tests,
    };
    let version = here.version(&name, top, &mut problems);
    let stable = file.stable.map(|s| {
        let line = line_at(&text, s.span().start);
        (line, here.version(&name, s.into_inner(), &mut problems))
    });
    let kind = file.release.as_ref().map_or(ReleaseKind::Stable, |r| *r.get_ref());
    let release = match (kind, file.gray_percentage) {
        (ReleaseKind::Gray, Some(p)) if *p.get_ref() <= 100 => Release::Gray(*p.get_ref()),
        (ReleaseKind::Gray, Some(p)) => {
            let line = line_at(&text, p.span().start);
            problems.push(format!("{place}:{line}: gray_percentage must be 0 to 100"));
            Release::None
        }
        (ReleaseKind::Gray, None) => {
            let line = file.release.as_ref().map_or(1, |r| line_at(&text, r.span().start));
            problems.push(format!(
                "{place}:{line}: release = \"gray\" needs gray_percentage (0 to 100)"
            ));
            Release::None
        }
        (_, Some(p)) => {
            let line = line_at(&text, p.span().start);
            problems.push(format!(
                "{place}:{line}: gray_percentage is only read with release = \"gray\""
            ));
            Release::None
        }
        (ReleaseKind::Stable, None) => Release::Stable,
        (ReleaseKind::None, None) => Release::None,
    };
    if let Some((line, _)) = &stable
        && kind != ReleaseKind::Gray
    {
        problems.push(format!(
            "{place}:{line}: [stable] names the version served beside a gray one, so it needs release = \"gray\""
        ));
    }
    if file.description.as_deref().is_some_and(|d| d.contains('\0')) {
        problems.push(format!(
            "{place}: description holds a NUL character, which the server refuses"
        ));
    }
    if let Some(n) = &file.approvals_required
        && *n.get_ref() > 10
    {
        let line = line_at(&text, n.span().start);
        problems.push(format!("{place}:{line}: approvals_required must be 0 to 10"));
    }
    match (problems.is_empty(), version) {
        (true, Some(version)) => Ok(DeclaredConfig {
            id: name,
            description: file.description,
            active: file.active,
            version,
            release,
            stable: stable.and_then(|(_, v)| v),
            approvals_required: file.approvals_required.map(Spanned::into_inner),
        }),
        _ => Err(problems),
    }
}

/// A config file being read, for problems' places.
struct Place<'a> {
    folder: &'a Path,
    file: &'a str,
    text: &'a str,
}

impl Place<'_> {
    fn version(&self, id: &str, file: VersionFile, problems: &mut Vec<String>) -> Option<DeclaredVersion> {
        let found = problems.len();
        let source_line = line_at(self.text, file.source.span().start);
        let name = file.source.into_inner();
        let lang = file.lang.or_else(|| lang_of(&name));
        let source = match plain_file(&name) {
            false => {
                let why = "source must name a file inside the config's folder";
                problems.push(format!("{}:{source_line}: {why} (not `{name}`)", self.file));
                None
            }
            true => match read_inside(self.folder, &name) {
                Ok(text) => Some(text),
                Err(e) => {
                    let path = self.folder.join(&name);
                    problems.push(format!("{}:{source_line}: source {}: {e}", self.file, path.display()));
                    None
                }
            },
        };
        if lang.is_none() {
            let why = "lang is missing and the source's extension (.star or .js) does not say it";
            problems.push(format!("{}:{source_line}: {why}", self.file));
        }
        let params = file
            .params
            .map(|p| (line_at(self.text, p.span().start), p.into_inner()));
        let rules = file.rules.map(|r| (line_at(self.text, r.span().start), r.into_inner()));
        for (key, found) in [("params", &params), ("rules", &rules)] {
            if let Some((line, values)) = found
                && let Some(why) = unfit("", &values.iter().collect::<Vec<_>>())
            {
                problems.push(format!("{}:{line}: {key}: {why}", self.file));
            }
        }
        if source.as_deref().is_some_and(|s| s.contains('\0')) {
            let why = "the source holds a NUL character, which the server refuses";
            problems.push(format!("{}:{source_line}: {why}", self.file));
        }
        let mut tests = Vec::with_capacity(file.tests.len());
        let mut names = std::collections::HashSet::new();
        // Tests come in the file's order: count lines on from the last one,
        // so thousands of tests cost one pass over the file.
        let (mut counted_to, mut line) = (0, 1);
        for test in file.tests {
            let start = test.span().start.min(self.text.len());
            if start < counted_to {
                (counted_to, line) = (0, 1);
            }
            line += memchr::memchr_iter(b'\n', &self.text.as_bytes()[counted_to..start]).count();
            counted_to = start;
            let test = test.into_inner();
            let shown = test.name.escape_debug().to_string();
            if !test.params.is_object() {
                problems.push(format!("{}:{line}: test `{shown}`: params must be a table", self.file));
            }
            if !names.insert(test.name.clone()) {
                problems.push(format!("{}:{line}: two tests are named `{shown}`", self.file));
            }
            let expected = match (test.expected, test.expected_json) {
                (Some(value), None) => value,
                (None, Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
                    problems.push(format!("{}:{line}: test `{shown}`: expected_json: {e}", self.file));
                    Value::Null
                }),
                _ => {
                    let why = "needs exactly one of expected and expected_json";
                    problems.push(format!("{}:{line}: test `{shown}` {why}", self.file));
                    Value::Null
                }
            };
            let meta = test.meta.to_json();
            if let Some(why) = unfit(&test.name, &[&test.params, &expected, &meta]) {
                problems.push(format!("{}:{line}: test `{shown}`: {why}", self.file));
            }
            let test = DeclaredTest {
                name: test.name,
                meta: test.meta,
                params: test.params,
                expected,
            };
            tests.push(test);
        }
        let version = DeclaredVersion {
            file: name,
            lang: lang?,
            source: source?,
            params: params.as_ref().map(|p| p.1.clone()).unwrap_or_default(),
            rules: rules.as_ref().map(|r| r.1.clone()).unwrap_or_default(),
            tests,
        };
        if let Err(e) = version.code_id(id) {
            let line = match e.starts_with("rules") {
                true => rules.map(|r| r.0),
                false => params.map(|p| p.0),
            };
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            problems.push(format!("{}{at}: {e}", self.file));
        }
        (problems.len() == found).then_some(version)
    }
}

/// What the server would refuse in a name and values (a NUL anywhere), or
/// what TOML holds that JSON has not (a date).
fn unfit(name: &str, values: &[&Value]) -> Option<String> {
    fn walk(value: &Value) -> Option<&'static str> {
        match value {
            Value::String(s) if s.contains('\0') => Some("holds a NUL character, which the server refuses"),
            Value::Array(items) => items.iter().find_map(walk),
            Value::Object(map) if map.contains_key("$__toml_private_datetime") => {
                Some("holds a TOML date, which JSON has not; write it as a string")
            }
            Value::Object(map) => map.iter().find_map(|(k, v)| match k.contains('\0') {
                true => Some("holds a NUL character, which the server refuses"),
                false => walk(v),
            }),
            _ => None,
        }
    }
    if name.contains('\0') {
        return Some("its name holds a NUL character, which the server refuses".into());
    }
    values.iter().find_map(|v| walk(v)).map(str::to_owned)
}

/// Whether `name` is a relative path that stays inside the folder.
fn plain_file(name: &str) -> bool {
    let path = Path::new(name);
    !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Most a source may hold: far beyond any config, and short of what makes
/// an upload's body too large for the server (`server.max_body_bytes`, 1 MiB).
const MOST_SOURCE_BYTES: u64 = 512 << 10;

/// The file `name` in `folder`, refused if a link takes it outside (a
/// change under review could otherwise upload a file of the CI machine's).
fn read_inside(folder: &Path, name: &str) -> Result<String, String> {
    let path = folder.join(name);
    let real = path.canonicalize().map_err(|e| e.to_string())?;
    let home = folder.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&home) {
        return Err(format!("links outside the config's folder (to {})", real.display()));
    }
    let size = std::fs::metadata(&real).map_err(|e| e.to_string())?.len();
    if size > MOST_SOURCE_BYTES {
        return Err(format!("{size} bytes, over the {MOST_SOURCE_BYTES} a source may hold"));
    }
    std::fs::read_to_string(&real).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        _ => e.to_string(),
    })
}

fn lang_of(name: &str) -> Option<Lang> {
    match Path::new(name).extension()?.to_str()? {
        "star" | "bzl" | "py" => Some(Lang::Starlark),
        "js" | "mjs" => Some(Lang::Javascript),
        _ => None,
    }
}

/// The 1-based line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
