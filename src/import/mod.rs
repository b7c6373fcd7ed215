//! `vane import --from mysql://...`: brings a running Go service's configs,
//! versions, test cases and reports into Vane's store (any backend), keeping
//! the secrets and code ids its apps hold. `original.rs` reads the tables,
//! `plan.rs` turns rows into what Vane stores (or a refusal with the reason
//! from `row_error.rs`), `write.rs` writes it so that a second run changes
//! nothing.

mod original;
mod plan;
mod row_error;
mod write;

use std::fmt::Write as _;

pub use original::{ReadError, Tables};
pub use plan::{ImportPlan, RefusedRow};
pub use write::{Counts, ImportOutcome};

use crate::domain::Lang;
use crate::engine::{Engines, guard};
use crate::store::{Store, StoreError};

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The original's database could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Vane's store stopped answering; what was written so far stays, and a
    /// second run goes on from there.
    #[error("Vane's store: {0}")]
    Store(#[from] StoreError),
}

/// What was read, and what became of it.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Rows read per table: config, code, unittest, error_report.
    pub read: [usize; 4],
    /// What was (or, dry, would be) written.
    pub outcome: ImportOutcome,
    /// Nothing was written.
    pub dry_run: bool,
}

/// Reads the original's database at `from` and writes it into `store`.
pub async fn run(from: &str, store: &dyn Store, dry_run: bool) -> Result<ImportSummary, ImportError> {
    let tables = original::read(from).await?;
    let read = [
        tables.configs.len(),
        tables.codes.len(),
        tables.tests.len(),
        tables.reports.len(),
    ];
    let plan = plan_for(&tables);
    let outcome = write::apply(store, plan, dry_run).await?;
    Ok(ImportSummary { read, outcome, dry_run })
}

/// The plan for `tables`, each source compiled as an upload's is (in this
/// process: the sources are the operator's own, and are only compiled).
pub fn plan_for(tables: &Tables) -> ImportPlan {
    let mut engines = Engines::new(1);
    let mut check =
        |lang: Lang, source: &str| guard::check_source(lang, source).and_then(|()| engines.get(lang).check(source));
    plan::plan(tables, &mut check)
}

impl ImportSummary {
    /// For people: the counts per table, then every row left out and why.
    pub fn render(&self) -> String {
        let o = &self.outcome;
        let verb = if self.dry_run { "would be " } else { "" };
        let mut text = String::new();
        let tables = [
            ("config", "configs", &o.configs),
            ("code", "versions", &o.versions),
            ("unittest", "test cases", &o.tests),
            ("error_report", "reports", &o.reports),
        ];
        for (i, (table, what, counts)) in tables.into_iter().enumerate() {
            let refused = o.refused.iter().filter(|r| r.table == table).count();
            let _ = writeln!(
                text,
                "{table}: {} rows read; {what}: {} {verb}created, {} {verb}updated, {} unchanged; {refused} refused",
                self.read[i], counts.created, counts.updated, counts.unchanged
            );
        }
        if !o.refused.is_empty() {
            let _ = writeln!(text, "\nleft out ({}):", o.refused.len());
            for r in &o.refused {
                let _ = writeln!(text, "  {} {}: {}", r.table, r.row, r.reason);
            }
        }
        if self.dry_run {
            text.push_str("\ndry run: nothing was written\n");
        }
        text
    }
}
