//! `vane test --junit`: the run as JUnit XML, which CI systems show per
//! test. A suite per config, a case per test, and a failing case named
//! `compiles` for a version that does not.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::offline::{Report, VersionRun};

/// The report as JUnit XML.
pub fn render(report: &Report) -> Result<String, String> {
    let mut junit = quick_junit::Report::new("vane test");
    junit.set_time(report.elapsed);
    let mut runs: Vec<&VersionRun> = report.runs.iter().collect();
    runs.sort_by(|a, b| a.config_id.cmp(&b.config_id));
    for chunk in runs.chunk_by(|a, b| a.config_id == b.config_id) {
        let mut suite = TestSuite::new(chunk[0].config_id.as_str());
        for run in chunk {
            let class = format!("{}.{}", run.config_id, run.file);
            if let Some(error) = &run.compile_error {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message("does not compile").set_description(error.as_str());
                let mut case = TestCase::new("compiles", status);
                case.set_classname(class.as_str());
                suite.add_test_case(case);
            }
            for result in &run.cases {
                let status = match (result.passed, &result.actual, &result.error) {
                    (true, _, _) => TestCaseStatus::success(),
                    (false, actual, error) => {
                        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        let got = match (actual, error) {
                            (Some(actual), _) => format!("actual:   {actual}"),
                            (None, Some(error)) => format!("error:    {error}"),
                            (None, None) => String::new(),
                        };
                        status
                            .set_message("wrong output")
                            .set_description(format!("expected: {}\n{got}", result.expected));
                        status
                    }
                };
                let mut case = TestCase::new(result.name.as_str(), status);
                case.set_classname(class.as_str())
                    .set_time(Duration::from_micros(result.duration_us));
                suite.add_test_case(case);
            }
        }
        junit.add_test_suite(suite);
    }
    junit.to_string().map_err(|e| e.to_string())
}
