//! `vane test`: every declared version compiled and its tests run in a pool
//! of sandbox workers started here, with the server's engines, limits, rule
//! and parameter checks (`service::test_runs`), and no server or store.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DeclaredConfig, DeclaredTest, DeclaredVersion};
use ractor::ActorRef;

use crate::actors::evaluator::{EvaluatorPoolHandle, PoolMsg, PoolShared, spawn_alone};
use crate::domain::model::TestCase;
use crate::domain::{Meta, Version, params, rules};
use crate::service::test_runs::{CaseResult, run_case};
use crate::settings::Sandbox;
use futures_util::StreamExt;

/// One declared version's outcome.
#[derive(Debug)]
pub struct VersionRun {
    /// Its config.
    pub config_id: String,
    /// Its source file, relative to the config's folder.
    pub file: String,
    /// The code id the server would give it.
    pub code_id: String,
    /// Why it did not compile, if it did not (its tests did not run).
    pub compile_error: Option<String>,
    /// Each test's outcome, in the file's order.
    pub cases: Vec<CaseResult>,
}

impl VersionRun {
    /// Whether it compiled and every test passed.
    pub fn passed(&self) -> bool {
        self.compile_error.is_none() && self.cases.iter().all(|c| c.passed)
    }
}

/// Every version's outcome, in the directory's order.
#[derive(Debug)]
pub struct Report {
    /// The versions.
    pub runs: Vec<VersionRun>,
    /// How long the whole run took, workers' start included.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every version compiled and every test passed.
    pub fn passed(&self) -> bool {
        self.runs.iter().all(VersionRun::passed)
    }

    /// Each failure with what was expected and what came, then the count.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for run in &self.runs {
            let place = format!("{}/{}", run.config_id, run.file);
            if let Some(e) = &run.compile_error {
                let _ = writeln!(out, "FAIL {place}: does not compile: {e}");
            }
            for case in run.cases.iter().filter(|c| !c.passed) {
                let _ = writeln!(out, "FAIL {place}: test `{}`", case.name.escape_debug());
                let _ = writeln!(out, "  expected: {}", case.expected);
                match (&case.actual, &case.error) {
                    (Some(actual), _) => writeln!(out, "  actual:   {actual}"),
                    (None, Some(error)) => writeln!(out, "  error:    {error}"),
                    (None, None) => Ok(()),
                }
                .ok();
            }
        }
        let tests: usize = self.runs.iter().map(|r| r.cases.len()).sum();
        let failed: usize = self
            .runs
            .iter()
            .map(|r| r.cases.iter().filter(|c| !c.passed).count())
            .sum();
        let broken = self.runs.iter().filter(|r| r.compile_error.is_some()).count();
        let configs = self
            .runs
            .iter()
            .map(|r| &r.config_id)
            .collect::<std::collections::BTreeSet<_>>();
        let _ = write!(
            out,
            "{tests} tests of {} versions in {} configs: {} passed, {failed} failed",
            self.runs.len(),
            configs.len(),
            tests - failed
        );
        if broken > 0 {
            let _ = write!(out, ", {broken} versions do not compile");
        }
        let _ = writeln!(out, " ({:.2} s)", self.elapsed.as_secs_f64());
        out
    }
}

/// Runs every version of `configs` (the declared one and a `[stable]` one)
/// in a pool made from `sandbox`.
pub async fn run(configs: &[DeclaredConfig], sandbox: &Sandbox) -> Result<Report, String> {
    let started = Instant::now();
    let started_pool = Pool::start(sandbox).await?;
    let pool = started_pool.handle();
    let versions: Vec<_> = configs
        .iter()
        .flat_map(|c| {
            std::iter::once(&c.version)
                .chain(&c.stable)
                .map(move |v| (c.id.as_str(), v))
        })
        .collect();
    // As many at once as the pool has workers: more would only queue.
    let at_once = sandbox.workers.max(1);
    let runs = futures_util::stream::iter(versions)
        .map(|(id, version)| run_version(pool, id, version))
        .buffered(at_once)
        .collect()
        .await;
    started_pool.stop();
    Ok(Report {
        runs,
        elapsed: started.elapsed(),
    })
}

/// Sandbox workers started for a command, with the server's engines and
/// `[sandbox]` limits, stopped when the command is done.
pub struct Pool {
    handle: EvaluatorPoolHandle,
    actor: ActorRef<PoolMsg>,
}

impl Pool {
    /// Starts the pool.
    pub async fn start(sandbox: &Sandbox) -> Result<Self, String> {
        let (handle, actor) = spawn_alone(&PoolShared::new(sandbox))
            .await
            .map_err(|e| format!("starting sandbox workers: {e}"))?;
        Ok(Self { handle, actor })
    }

    /// How jobs reach it.
    pub fn handle(&self) -> &EvaluatorPoolHandle {
        &self.handle
    }

    /// Stops it and its workers.
    pub fn stop(self) {
        self.actor.stop(None);
    }
}

async fn run_version(pool: &EvaluatorPoolHandle, config_id: &str, declared: &DeclaredVersion) -> VersionRun {
    let code_id = declared.code_id(config_id).unwrap_or_default();
    let mut run = VersionRun {
        config_id: config_id.to_owned(),
        file: declared.file.clone(),
        code_id: code_id.clone(),
        compile_error: None,
        cases: Vec::new(),
    };
    if let Err(e) = pool.check(declared.lang, declared.source.clone()).await {
        run.compile_error = Some(e.to_string());
        return run;
    }
    let version = Arc::new(Version {
        code_id,
        config_id: config_id.to_owned(),
        lang: declared.lang,
        source: declared.source.clone(),
        // Checked when the directory was read.
        rules: rules::from_upload(declared.rules.clone()).unwrap_or_default(),
        params: params::from_upload(declared.params.clone()).unwrap_or_default(),
        error_count: 0,
        broken: false,
        still_served: false,
        created_by: String::new(),
        created_at: 0,
    });
    for (i, test) in declared.tests.iter().enumerate() {
        run.cases
            .push(run_case(pool, &version, &test_case(&version, i, test)).await);
    }
    run
}

fn test_case(version: &Version, i: usize, test: &DeclaredTest) -> TestCase {
    TestCase {
        test_id: format!("{}#{}", version.code_id, i + 1),
        config_id: version.config_id.clone(),
        code_id: version.code_id.clone(),
        name: test.name.clone(),
        meta: serde_json::from_value::<Meta>(test.meta.to_json()).unwrap_or_default(),
        params: test.params.clone(),
        expected: test.expected.clone(),
        created_at: 0,
    }
}
