//! Running a version's stored test cases through the EvaluatorPool, as
//! publishing does before it lets a version out.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::actors::evaluator::EvaluatorPoolHandle;
use crate::domain::Version;
use crate::domain::model::TestCase;
use crate::domain::rules;

#[derive(Debug, Clone, Serialize)]
/// One stored test case's outcome.
pub struct CaseResult {
    /// The case's id.
    pub test_id: String,
    /// The case's name.
    pub name: String,
    /// Whether the result equalled the expected JSON.
    pub passed: bool,
    /// What the version returned, if it ran.
    pub actual: Option<Value>,
    /// What the case expects.
    pub expected: Value,
    /// Why it did not run or failed to return (rules, engine error).
    pub error: Option<String>,
    /// How long the run took.
    pub duration_us: u64,
}

#[derive(Debug, Clone, Serialize)]
/// The outcome of a version's stored test cases.
pub struct TestRun {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Each case's outcome, in the cases' order.
    pub results: Vec<CaseResult>,
}

impl TestRun {
    /// Whether no case failed (true for no cases).
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

/// Runs one case: the version's rules must admit its meta, and the result
/// must equal its expected JSON.
pub async fn run_case(pool: &EvaluatorPoolHandle, version: &Arc<Version>, case: &TestCase) -> CaseResult {
    let started = Instant::now();
    let outcome = if rules::allows(&version.rules, &case.meta) {
        pool.evaluate(version.clone(), case.params.clone())
            .await
            .map_err(|e| e.to_string())
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).map_err(|e| e.to_string()))
    } else {
        Err("the version's rules do not admit this meta".into())
    };
    let duration_us = started.elapsed().as_micros() as u64;
    let (actual, error) = match outcome {
        Ok(actual) => (Some(actual), None),
        Err(error) => (None, Some(error)),
    };
    CaseResult {
        test_id: case.test_id.clone(),
        name: case.name.clone(),
        passed: actual.as_ref().is_some_and(|a| json_equal(a, &case.expected)),
        actual,
        expected: case.expected.clone(),
        error,
        duration_us,
    }
}

/// Runs every case, one after another, so a run costs the pool one worker at a time.
pub async fn run_all(pool: &EvaluatorPoolHandle, version: &Arc<Version>, cases: &[TestCase]) -> TestRun {
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        results.push(run_case(pool, version, case).await);
    }
    let passed = results.iter().filter(|r| r.passed).count();
    TestRun {
        passed,
        failed: results.len() - passed,
        results,
    }
}

/// JSON equality where numbers compare by value: an expected `1` matches an
/// actual `1.0`, as both languages may produce either.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value_everywhere_else_exactly() {
        assert!(json_equal(&json!({"a": [1, 2.5]}), &json!({"a": [1.0, 2.5]})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!json_equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_equal(&json!("1"), &json!(1)));
        assert!(json_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_equal(&json!(9007199254740993_i64), &json!(9007199254740992_i64)));
    }
}
