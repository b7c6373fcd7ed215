//! What `apply` would do to make one config on a server match its folder:
//! pure, from the declared config and what was read from the server, so
//! `diff`, `apply --dry-run` and `apply` say and do the same thing.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::client::{RemoteChange, RemoteConfig, RemoteTest, RemoteVersion};
use super::{DeclaredConfig, DeclaredTest, DeclaredVersion, Release, TestMeta};
use crate::domain::access::Role;

/// What the server has of one config, as far as a plan reads it.
#[derive(Debug, Default)]
pub struct Remote {
    /// The config, if it exists.
    pub config: Option<RemoteConfig>,
    /// Versions by code id: the declared ones (`None`: not uploaded) and
    /// the stable and gray ones now.
    pub versions: HashMap<String, Option<RemoteVersion>>,
    /// Stored tests of the declared versions that exist.
    pub tests: HashMap<String, Vec<RemoteTest>>,
    /// Its open change requests.
    pub open_changes: Vec<RemoteChange>,
    /// Who is applying (`GET /api/v1/me`): their own superseded requests
    /// are cancelled.
    pub who: Option<String>,
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the config.
    Create {
        /// Its description.
        description: String,
    },
    /// Change the description.
    Describe {
        /// The new one.
        to: String,
    },
    /// Change how many approvals a change needs.
    Approvals {
        /// Now.
        from: u32,
        /// After.
        to: u32,
    },
    /// Upload a version.
    Upload {
        /// The id it will have.
        code_id: String,
        /// The declared content (`POST .../versions` body).
        body: Value,
        /// Its source against the version it replaces, unified.
        diff: String,
    },
    /// Store a test for a version.
    AddTest {
        /// The version.
        code_id: String,
        /// The test.
        test: DeclaredTest,
    },
    /// Delete a stored test the folder no longer has.
    RemoveTest {
        /// The version.
        code_id: String,
        /// The stored test.
        test_id: String,
        /// Its name.
        name: String,
    },
    /// Release a version as stable.
    Release {
        /// The version.
        code_id: String,
    },
    /// Serve a version to a share of devices.
    Gray {
        /// The version.
        code_id: String,
        /// The share.
        percentage: u8,
    },
    /// End the gray release.
    RemoveGray,
    /// Make the config active or inactive.
    Status {
        /// Active after.
        active: bool,
    },
    /// Cancel one's own change request that the directory no longer wants.
    Cancel {
        /// The request.
        change_id: String,
        /// What it proposed (`release`, `gray`, ...).
        what: String,
    },
}

impl Step {
    /// The role the step needs over the config.
    pub fn role(&self) -> Role {
        match self {
            Self::Create { .. } | Self::Describe { .. } | Self::Upload { .. } => Role::Editor,
            Self::AddTest { .. } | Self::RemoveTest { .. } => Role::Editor,
            Self::Release { .. } | Self::Gray { .. } | Self::RemoveGray | Self::Status { .. } => Role::Publisher,
            Self::Approvals { .. } => Role::Admin,
            // Its author may always cancel it.
            Self::Cancel { .. } => Role::Viewer,
        }
    }

    /// The change request proposal this step would open, for a step that
    /// approvals hold.
    pub fn proposal(&self) -> Option<Value> {
        match self {
            Self::Release { code_id } => Some(json!({"kind": "release", "code_id": code_id})),
            Self::Gray { code_id, percentage } => {
                Some(json!({"kind": "gray", "code_id": code_id, "percentage": percentage}))
            }
            Self::RemoveGray => Some(json!({"kind": "remove_gray"})),
            Self::Status { active } => Some(json!({"kind": "status", "status": status_word(*active)})),
            _ => None,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Create { .. } => "create the config".into(),
            Self::Describe { to } => format!("description -> {to:?}"),
            Self::Approvals { from, to } => format!("approvals_required {from} -> {to}"),
            Self::Upload { code_id, .. } => format!("new version {code_id}"),
            Self::AddTest { code_id, test } => format!("test added to {code_id}: `{}`", test.name),
            Self::RemoveTest { code_id, name, .. } => format!("test removed from {code_id}: `{name}`"),
            Self::Release { code_id } => format!("release {code_id} as stable"),
            Self::Gray { code_id, percentage } => format!("gray {code_id} at {percentage} %"),
            Self::RemoveGray => "remove the gray release".into(),
            Self::Status { active } => format!("status -> {}", status_word(*active)),
            Self::Cancel { change_id, what } => format!("cancel change request {change_id} ({what}), superseded"),
        }
    }
}

fn status_word(active: bool) -> &'static str {
    match active {
        true => "active",
        false => "inactive",
    }
}

/// What to do for one config.
#[derive(Debug, Clone)]
pub struct ConfigPlan {
    /// The config.
    pub id: String,
    /// The writes, in order.
    pub steps: Vec<Step>,
    /// Changes already waiting for approval: (what, change request id).
    pub waiting: Vec<(String, String)>,
}

impl ConfigPlan {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan for people: a line per step, diffs indented under uploads.
    pub fn render(&self, with_diffs: bool) -> String {
        let mut out = String::new();
        if self.steps.is_empty() && self.waiting.is_empty() {
            let _ = writeln!(out, "= {}: unchanged", self.id);
        }
        for step in &self.steps {
            let _ = writeln!(out, "~ {}: {}", self.id, step.describe());
            if let (true, Step::Upload { diff, .. }) = (with_diffs, step) {
                for line in diff.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        for (what, id) in &self.waiting {
            let _ = writeln!(out, "? {}: {what} waits for approval (change request {id})", self.id);
        }
        out
    }
}

/// The steps that make the server's config match `declared`. Code ids are
/// the declared versions' content ids, which the loader checked.
pub fn plan(declared: &DeclaredConfig, remote: &Remote) -> ConfigPlan {
    let mut steps = Vec::new();
    let config = remote.config.as_ref();
    let approvals_now = config.map_or(0, |c| c.approvals_required);
    let approvals = declared.approvals_required.filter(|n| *n != approvals_now);
    if config.is_none() {
        steps.push(Step::Create {
            description: declared.description.clone().unwrap_or_default(),
        });
    }
    // Uploads and tests first: they are what the server may still refuse
    // (a compile error), and nothing clients or reviewers see has moved yet.
    let stable_now = config.and_then(|c| c.release.as_ref()).map(|p| p.code_id.clone());
    let gray_now = config.and_then(|c| c.gray.clone());
    let stable_code = declared.stable.as_ref().map(|stable| {
        let code_id = code_of(&declared.id, stable);
        version_steps(
            &declared.id,
            stable,
            &code_id,
            stable_now.as_deref(),
            remote,
            &mut steps,
        );
        code_id
    });
    let code_id = code_of(&declared.id, &declared.version);
    let replaces = match declared.release {
        Release::Gray(_) => gray_now.as_ref().map(|g| g.code_id.as_str()).or(stable_now.as_deref()),
        _ => stable_now.as_deref(),
    };
    version_steps(&declared.id, &declared.version, &code_id, replaces, remote, &mut steps);
    if let Some(to) = config.and_then(|c| declared.description.as_ref().filter(|d| **d != c.description)) {
        steps.push(Step::Describe { to: to.clone() });
    }
    // A stricter bar before the release, so it holds it; a lower one after,
    // so it does not let it through.
    if let Some(to) = approvals.filter(|to| *to > approvals_now) {
        steps.push(Step::Approvals {
            from: approvals_now,
            to,
        });
    }
    if let Some(code_id) = stable_code.filter(|c| stable_now.as_deref() != Some(c.as_str())) {
        steps.push(Step::Release { code_id });
    }
    match declared.release {
        Release::Stable => {
            if stable_now.as_deref() != Some(code_id.as_str()) {
                steps.push(Step::Release { code_id });
            }
            if gray_now.is_some() {
                steps.push(Step::RemoveGray);
            }
        }
        Release::Gray(percentage) => {
            let now = gray_now
                .as_ref()
                .map(|g| (g.code_id.as_str(), g.percentage.unwrap_or(0)));
            if now != Some((code_id.as_str(), percentage)) {
                steps.push(Step::Gray { code_id, percentage });
            }
        }
        Release::None => {}
    }
    let active_now = config.is_none_or(|c| c.status == "active");
    if declared.active != active_now {
        steps.push(Step::Status {
            active: declared.active,
        });
    }
    if let Some(to) = approvals.filter(|to| *to < approvals_now) {
        steps.push(Step::Approvals {
            from: approvals_now,
            to,
        });
    }
    let plan = ConfigPlan {
        id: declared.id.clone(),
        steps,
        waiting: Vec::new(),
    };
    let bar = approvals_now.max(declared.approvals_required.unwrap_or(0));
    let decided: &[&str] = match declared.release {
        Release::None => &["status"],
        _ => &["status", "release", "gray", "remove_gray"],
    };
    settle_requests(plan, remote, bar, decided)
}

/// `--prune`: a config the directory lacks is made inactive, never deleted.
pub fn prune(config: &RemoteConfig, who: &str, open: &[RemoteChange]) -> ConfigPlan {
    let steps = match config.status == "active" {
        true => vec![Step::Status { active: false }],
        false => Vec::new(),
    };
    let plan = ConfigPlan {
        id: config.id.clone(),
        steps,
        waiting: Vec::new(),
    };
    let bar = config.approvals_required;
    let remote = Remote {
        open_changes: open.to_vec(),
        who: Some(who.to_owned()),
        ..Remote::default()
    };
    settle_requests(plan, &remote, bar, &["status"])
}

/// Open change requests against the plan. While approvals are required
/// (`bar`), a step a request already proposes waits for it rather than
/// being asked again. A request of the caller's own (`remote.who`) of a kind
/// the directory decides (`decided`) that proposes what the directory no
/// longer says is cancelled, so no one approves a superseded change.
fn settle_requests(mut plan: ConfigPlan, remote: &Remote, bar: u32, decided: &[&str]) -> ConfigPlan {
    let proposal_of = |c: &RemoteChange| {
        let mut theirs = c.proposal.clone();
        if let Some(map) = theirs.as_object_mut() {
            map.remove("force");
        }
        theirs
    };
    let mut wanted = Vec::new();
    plan.steps.retain(|step| {
        let Some(proposal) = step.proposal() else {
            return true;
        };
        let open = remote.open_changes.iter().find(|c| proposal_of(c) == proposal);
        wanted.push(proposal);
        match open.filter(|_| bar > 0) {
            Some(change) => {
                plan.waiting.push((step.describe(), change.id.clone()));
                false
            }
            None => true,
        }
    });
    for change in &remote.open_changes {
        let proposal = proposal_of(change);
        let kind = proposal["kind"].as_str().unwrap_or("");
        let own = remote.who.as_deref() == Some(change.author.as_str());
        if own && decided.contains(&kind) && !wanted.contains(&proposal) {
            plan.steps.insert(
                0,
                Step::Cancel {
                    change_id: change.id.clone(),
                    what: kind.replace('_', " "),
                },
            );
        }
    }
    plan
}

fn code_of(config_id: &str, version: &DeclaredVersion) -> String {
    version.code_id(config_id).unwrap_or_default()
}

/// Upload (if the server lacks it) and the tests that make a version's
/// stored tests the declared ones.
fn version_steps(
    config_id: &str,
    version: &DeclaredVersion,
    code_id: &str,
    replaces: Option<&str>,
    remote: &Remote,
    steps: &mut Vec<Step>,
) {
    let exists = remote.versions.get(code_id).is_some_and(Option::is_some);
    if !exists {
        let before = replaces
            .and_then(|id| remote.versions.get(id))
            .and_then(Option::as_ref)
            .map_or("", |v| v.source.as_str());
        let diff = similar::TextDiff::from_lines(before, version.source.as_str())
            .unified_diff()
            .header(
                &replaces.map_or("(none)".to_owned(), |id| format!("{config_id} {id}")),
                &format!("{}/{} {code_id}", config_id, version.file),
            )
            .to_string();
        steps.push(Step::Upload {
            code_id: code_id.to_owned(),
            body: json!({
                "lang": version.lang,
                "source": version.source,
                "rules": version.rules,
                "params": version.params,
            }),
            diff,
        });
    }
    let stored = remote.tests.get(code_id).map(Vec::as_slice).unwrap_or_default();
    // By name first: a directory may hold thousands of tests.
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, test) in stored.iter().enumerate() {
        by_name.entry(test.name.as_str()).or_default().push(i);
    }
    let mut kept = vec![false; stored.len()];
    for test in &version.tests {
        let found = by_name.get(test.name.as_str()).and_then(|candidates| {
            candidates
                .iter()
                .copied()
                .find(|&i| !kept[i] && same_test(test, &stored[i]))
        });
        match found {
            Some(i) => kept[i] = true,
            None => steps.push(Step::AddTest {
                code_id: code_id.to_owned(),
                test: test.clone(),
            }),
        }
    }
    for (stored, kept) in stored.iter().zip(kept) {
        if !kept {
            steps.push(Step::RemoveTest {
                code_id: code_id.to_owned(),
                test_id: stored.test_id.clone(),
                name: stored.name.clone(),
            });
        }
    }
}

fn same_test(declared: &DeclaredTest, stored: &RemoteTest) -> bool {
    let meta = serde_json::from_value::<TestMeta>(stored.meta.clone()).ok();
    declared.name == stored.name
        && meta.as_ref() == Some(&declared.meta)
        && declared.params == stored.params
        && declared.expected == stored.expected
}
