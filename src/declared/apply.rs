//! Reading a config's state from a server, and carrying out a plan for it
//! through the API, as an operator would: the test gate and approvals hold
//! as they do for a person. A config is all or nothing: every check that
//! can refuse (the token's role, the declared tests run on the server) runs
//! before its first write, and a version's upload and tests come before any
//! release, which clients are the first to see.

use std::collections::HashSet;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, ClientError, Me};
use super::plan::{ConfigPlan, Remote, Step};
use super::{DeclaredConfig, DeclaredVersion};
use crate::actors::evaluator::EvaluatorPoolHandle;
use crate::domain::Lang;
use crate::domain::access::Caller;
use crate::service::test_runs::json_equal;

/// What became of one config.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do.
    Unchanged,
    /// Every step done; some may be held for approval (what, change request).
    Applied {
        /// The steps done.
        done: Vec<String>,
        /// Changes held for approval: (what, change request id).
        held: Vec<(String, String)>,
    },
    /// Not applied, and why. `done` is empty unless the server failed
    /// between two writes.
    Failed {
        /// The steps done before the failure.
        done: Vec<String>,
        /// Why.
        why: String,
    },
}

/// What the server has of `declared`.
pub async fn remote_of(client: &Client, who: &str, declared: &DeclaredConfig) -> Result<Remote, ClientError> {
    let mut remote = Remote {
        config: client.config(&declared.id).await?,
        who: Some(who.to_owned()),
        ..Remote::default()
    };
    let Some(config) = &remote.config else {
        return Ok(remote);
    };
    let mut ids: Vec<String> = std::iter::once(&declared.version)
        .chain(&declared.stable)
        .filter_map(|v| v.code_id(&declared.id).ok())
        .collect();
    let declared_ids: HashSet<String> = ids.iter().cloned().collect();
    ids.extend(config.release.iter().chain(&config.gray).map(|p| p.code_id.clone()));
    for id in ids {
        if remote.versions.contains_key(&id) {
            continue;
        }
        let version = client.version(&declared.id, &id).await?;
        if version.is_some() && declared_ids.contains(&id) {
            remote.tests.insert(id.clone(), client.tests(&declared.id, &id).await?);
        }
        remote.versions.insert(id, version);
    }
    remote.open_changes = client.open_changes(&declared.id).await?;
    Ok(remote)
}

/// The remote state of every declared config, a few reads at a time.
pub async fn remotes_of(client: &Client, who: &str, configs: &[DeclaredConfig]) -> Vec<Result<Remote, ClientError>> {
    futures_util::stream::iter(configs)
        .map(|c| remote_of(client, who, c))
        .buffered(8)
        .collect()
        .await
}

/// Carries out `plan`; `declared` gives the tests a release must pass, and
/// `compiler` (a pool of the server's engines) checks each upload compiles.
pub async fn apply(
    client: &Client,
    me: &Me,
    compiler: Option<&EvaluatorPoolHandle>,
    declared: Option<&DeclaredConfig>,
    plan: &ConfigPlan,
) -> Outcome {
    if plan.is_empty() {
        return match plan.waiting.is_empty() {
            true => Outcome::Unchanged,
            false => Outcome::Applied {
                done: Vec::new(),
                held: plan.waiting.clone(),
            },
        };
    }
    if let Err(why) = allowed(me, plan) {
        return failed(why);
    }
    if let (Some(pool), Some(declared)) = (compiler, declared)
        && let Err(why) = compiles(pool, declared, plan).await
    {
        return failed(why);
    }
    if let Some(declared) = declared
        && let Err(why) = tests_pass(client, declared, plan).await
    {
        return failed(why);
    }
    let mut done = Vec::new();
    let mut held = plan.waiting.clone();
    for step in &plan.steps {
        match write(client, &plan.id, step).await {
            Ok(None) => done.push(step.describe()),
            Ok(Some(change)) => held.push((step.describe(), change)),
            Err(e) => {
                return Outcome::Failed {
                    done,
                    why: format!("{}: {}", step.describe(), refusal(&e)),
                };
            }
        }
    }
    Outcome::Applied { done, held }
}

fn failed(why: String) -> Outcome {
    Outcome::Failed { done: Vec::new(), why }
}

/// Every step's role, checked before the first write.
fn allowed(me: &Me, plan: &ConfigPlan) -> Result<(), String> {
    let caller = Caller {
        who: me.who.clone(),
        grants: me.grants.clone(),
    };
    for step in &plan.steps {
        let role = step.role();
        if !caller.may(role, &plan.id) {
            return Err(format!(
                "{} needs role {role} over `{}`, which {} does not hold; nothing was written",
                step.describe(),
                plan.id,
                me.who
            ));
        }
    }
    Ok(())
}

/// Each version the plan uploads compiled first, so a compile error is met
/// before the config is created or anything else written.
async fn compiles(pool: &EvaluatorPoolHandle, declared: &DeclaredConfig, plan: &ConfigPlan) -> Result<(), String> {
    for version in std::iter::once(&declared.version).chain(&declared.stable) {
        let code_id = version.code_id(&declared.id).unwrap_or_default();
        let uploaded = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::Upload { code_id: c, .. } if *c == code_id));
        if uploaded && let Err(e) = pool.check(version.lang, version.source.clone()).await {
            return Err(format!(
                "{}/{} does not compile, nothing was written: {e}",
                declared.id, version.file
            ));
        }
    }
    Ok(())
}

/// Runs the declared tests of each version the plan releases or grays on
/// the server (its playground: the server's engines, limits, rules and
/// parameter checks), before anything is written. The server's own test
/// gate runs again at the release.
async fn tests_pass(client: &Client, declared: &DeclaredConfig, plan: &ConfigPlan) -> Result<(), String> {
    let released: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Release { code_id } | Step::Gray { code_id, .. } => Some(code_id.as_str()),
            _ => None,
        })
        .collect();
    let versions = std::iter::once(&declared.version).chain(&declared.stable);
    let mut failures = Vec::new();
    for version in versions {
        let code_id = version.code_id(&declared.id).unwrap_or_default();
        if released.contains(&code_id.as_str()) {
            failures.extend(failing_tests(client, &declared.id, version).await?);
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(format!("tests failed, nothing was written:\n{}", failures.join("\n"))),
    }
}

async fn failing_tests(client: &Client, id: &str, version: &DeclaredVersion) -> Result<Vec<String>, String> {
    let route = match version.lang {
        Lang::Starlark => "/playground/starlark",
        Lang::Javascript => "/playground/js",
    };
    let mut failures = Vec::new();
    for test in &version.tests {
        let body = json!({
            "code": version.source,
            "params": test.params,
            "meta": test.meta.to_json(),
            "rules": version.rules,
            "params_schema": version.params,
        });
        let got = match client.call(Method::POST, route, Some(&body)).await {
            Ok((_, answer)) => {
                let text = answer["data"].as_str().unwrap_or("null");
                serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
            }
            Err(e @ ClientError::Refused { status: 400, .. }) => Err(refusal(&e)),
            Err(e) => return Err(format!("running tests on the server: {e}")),
        };
        let place = format!("  {id}/{}: test `{}`", version.file, test.name);
        match got {
            Ok(actual) if json_equal(&actual, &test.expected) => {}
            Ok(actual) => failures.push(format!(
                "{place}\n    expected: {}\n    actual:   {actual}",
                test.expected
            )),
            Err(error) => failures.push(format!(
                "{place}\n    expected: {}\n    error:    {error}",
                test.expected
            )),
        }
    }
    Ok(failures)
}

/// One write; `Some(change request id)` when approvals hold it.
async fn write(client: &Client, id: &str, step: &Step) -> Result<Option<String>, ClientError> {
    let config = format!("/api/v1/configs/{id}");
    let (method, path, body) = match step {
        Step::Create { description } => (
            Method::POST,
            "/api/v1/configs".to_owned(),
            Some(json!({"id": id, "description": description})),
        ),
        Step::Describe { to } => (Method::PATCH, config, Some(json!({"description": to}))),
        Step::Approvals { to, .. } => (Method::PATCH, config, Some(json!({"approvals_required": to}))),
        Step::Upload { body, .. } => (Method::POST, format!("{config}/versions"), Some(body.clone())),
        Step::AddTest { code_id, test } => (
            Method::POST,
            format!("{config}/versions/{code_id}/tests"),
            Some(
                json!({"name": test.name, "meta": test.meta.to_json(), "params": test.params, "expected": test.expected}),
            ),
        ),
        Step::RemoveTest { code_id, test_id, .. } => (
            Method::DELETE,
            format!("{config}/versions/{code_id}/tests/{test_id}"),
            None,
        ),
        Step::Release { code_id } => (
            Method::POST,
            format!("{config}/release"),
            Some(json!({"code_id": code_id})),
        ),
        Step::Gray { code_id, percentage } => (
            Method::POST,
            format!("{config}/gray"),
            Some(json!({"code_id": code_id, "percentage": percentage})),
        ),
        Step::RemoveGray => (Method::DELETE, format!("{config}/gray"), None),
        Step::Cancel { change_id, .. } => (Method::POST, format!("/api/v1/changes/{change_id}/cancel"), None),
        Step::Status { active } => {
            let status = if *active { "active" } else { "inactive" };
            (Method::PATCH, config, Some(json!({"status": status})))
        }
    };
    let (status, answer) = client.call(method, &path, body.as_ref()).await?;
    if let Step::Upload { code_id, .. } = step
        && answer["code_id"].as_str() != Some(code_id.as_str())
    {
        return Err(ClientError::Transport(format!(
            "the server named the version {} where {code_id} was expected (a server older than versions named by content?)",
            answer["code_id"]
        )));
    }
    Ok((status.as_u16() == 202).then(|| answer["change_request"]["id"].as_str().unwrap_or("?").to_owned()))
}

/// A refusal for people, with a test gate's failing tests named.
pub fn refusal(e: &ClientError) -> String {
    let ClientError::Refused {
        message,
        results: Some(Value::Array(results)),
        ..
    } = e
    else {
        return e.to_string();
    };
    let failing: Vec<String> = results
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| {
            let got = match r["actual"].is_null() {
                true => format!("error: {}", r["error"]),
                false => format!("actual: {}", r["actual"]),
            };
            format!(
                "  test `{}`: expected {}, {got}",
                r["name"].as_str().unwrap_or("?"),
                r["expected"]
            )
        })
        .collect();
    format!("{message}\n{}", failing.join("\n"))
}
