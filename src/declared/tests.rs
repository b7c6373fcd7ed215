//! The pure parts of configs as code: a plan from a declared and a remote
//! config, and a directory read with its problems' lines.

use std::collections::HashMap;

use serde_json::json;

use super::client::{Pointer, RemoteChange, RemoteConfig, RemoteTest, RemoteVersion};
use super::plan::{Remote, Step, plan};
use super::{DeclaredConfig, DeclaredTest, DeclaredVersion, Release, TestMeta, load};
use crate::domain::Lang;

fn declared() -> DeclaredConfig {
    DeclaredConfig {
        id: "app".into(),
        description: Some("the app".into()),
        active: true,
        version: DeclaredVersion {
            file: "main.star".into(),
            lang: Lang::Starlark,
            source: "return 1".into(),
            params: vec![],
            rules: vec![],
            tests: vec![DeclaredTest {
                name: "one".into(),
                meta: TestMeta::default(),
                params: json!({}),
                expected: json!(1),
            }],
        },
        release: Release::Stable,
        stable: None,
        approvals_required: None,
    }
}

/// The server as a first apply of `declared()` leaves it.
fn in_place(d: &DeclaredConfig) -> Remote {
    let code_id = d.version.code_id(&d.id).unwrap();
    let version = RemoteVersion {
        code_id: code_id.clone(),
        lang: Lang::Starlark,
        source: d.version.source.clone(),
        rules: vec![],
        params: vec![],
    };
    let test = RemoteTest {
        test_id: "t1".into(),
        name: "one".into(),
        meta: json!({"platform": "", "version": null, "device_id": ""}),
        params: json!({}),
        expected: json!(1),
    };
    Remote {
        config: Some(RemoteConfig {
            id: d.id.clone(),
            description: "the app".into(),
            status: "active".into(),
            revision: 3,
            release: Some(Pointer {
                code_id: code_id.clone(),
                percentage: None,
            }),
            gray: None,
            approvals_required: 0,
        }),
        versions: HashMap::from([(code_id.clone(), Some(version))]),
        tests: HashMap::from([(code_id, vec![test])]),
        open_changes: vec![],
        who: Some("token:ci".into()),
    }
}

#[test]
fn a_config_in_place_plans_nothing() {
    let d = declared();
    let planned = plan(&d, &in_place(&d));
    assert!(planned.is_empty(), "{planned:?}");
}

#[test]
fn a_new_config_is_created_uploaded_tested_then_released() {
    let d = declared();
    let kinds: Vec<&str> = plan(&d, &Remote::default())
        .steps
        .iter()
        .map(|s| match s {
            Step::Create { .. } => "create",
            Step::Upload { .. } => "upload",
            Step::AddTest { .. } => "test",
            Step::Release { .. } => "release",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["create", "upload", "test", "release"]);
}

#[test]
fn a_raised_bar_comes_before_the_release_and_a_lowered_one_after() {
    let mut d = declared();
    d.version.source = "return 2".into();
    d.version.tests[0].expected = json!(2);
    d.approvals_required = Some(2);
    let mut remote = in_place(&declared());
    remote.config.as_mut().unwrap().approvals_required = 1;
    let steps = plan(&d, &remote).steps;
    let at = |want: fn(&Step) -> bool| steps.iter().position(want).unwrap();
    assert!(at(|s| matches!(s, Step::Approvals { .. })) < at(|s| matches!(s, Step::Release { .. })));
    d.approvals_required = Some(0);
    let steps = plan(&d, &remote).steps;
    let at = |want: fn(&Step) -> bool| steps.iter().position(want).unwrap();
    assert!(at(|s| matches!(s, Step::Approvals { .. })) > at(|s| matches!(s, Step::Release { .. })));
}

#[test]
fn a_change_already_asked_for_waits_and_is_not_asked_again() {
    let mut d = declared();
    d.active = false;
    d.version.tests[0].name = "renamed".into();
    let mut remote = in_place(&declared());
    remote.config.as_mut().unwrap().approvals_required = 1;
    remote.open_changes = vec![RemoteChange {
        id: "cr1".into(),
        proposal: json!({"kind": "status", "status": "inactive"}),
        author: "token:someone".into(),
    }];
    let planned = plan(&d, &remote);
    assert!(
        planned.steps.iter().all(|s| !matches!(s, Step::Status { .. })),
        "{planned:?}"
    );
    assert_eq!(planned.waiting.len(), 1);
    let tests: Vec<_> = planned
        .steps
        .iter()
        .filter(|s| matches!(s, Step::AddTest { .. } | Step::RemoveTest { .. }))
        .collect();
    assert_eq!(
        tests.len(),
        2,
        "a renamed test is one removed and one added: {planned:?}"
    );
}

#[test]
fn gray_beside_a_declared_stable_and_stable_ends_gray() {
    let mut d = declared();
    let mut remote = in_place(&d);
    remote.config.as_mut().unwrap().gray = Some(Pointer {
        code_id: "old".into(),
        percentage: Some(5),
    });
    let steps = plan(&d, &remote).steps;
    assert_eq!(steps, [Step::RemoveGray]);
    d.stable = Some(d.version.clone());
    d.version.source = "return 2".into();
    d.version.tests.clear();
    d.release = Release::Gray(30);
    let steps = plan(&d, &remote).steps;
    assert!(
        matches!(steps.last(), Some(Step::Gray { percentage: 30, .. })),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|s| matches!(s, Step::Release { .. })),
        "stable is in place: {steps:?}"
    );
}

#[test]
fn a_source_linked_outside_its_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("app");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(dir.path().join("secret.star"), "return 1").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.star"), folder.join("main.star")).unwrap();
    std::fs::write(folder.join("config.toml"), "\n\nsource = \"main.star\"\n").unwrap();
    let problems = load::read(dir.path()).unwrap_err().0;
    assert!(
        problems[0].contains("config.toml:3: source") && problems[0].contains("links outside"),
        "{problems:?}"
    );
    std::fs::remove_file(folder.join("main.star")).unwrap();
    std::fs::write(folder.join("main.star"), "return 1").unwrap();
    let read = load::read(dir.path()).unwrap();
    assert_eq!(read[0].id, "app");
    assert_eq!(read[0].version.lang, Lang::Starlark);
}

#[test]
fn ones_own_superseded_request_is_cancelled_and_others_are_left() {
    let mut d = declared();
    d.version.source = "return 2".into();
    d.version.tests[0].expected = json!(2);
    let mut remote = in_place(&declared());
    remote.config.as_mut().unwrap().approvals_required = 1;
    let old = |id: &str, author: &str| RemoteChange {
        id: id.into(),
        proposal: json!({"kind": "release", "code_id": "0123456789abcdef", "force": false}),
        author: author.into(),
    };
    remote.open_changes = vec![old("mine", "token:ci"), old("theirs", "token:other")];
    let steps = plan(&d, &remote).steps;
    let cancelled: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Cancel { change_id, .. } => Some(change_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, ["mine"], "{steps:?}");
    assert!(steps.iter().any(|s| matches!(s, Step::Release { .. })), "{steps:?}");
    // With no approvals required, an open request does not hold the step.
    remote.config.as_mut().unwrap().approvals_required = 0;
    d.version = declared().version;
    d.active = false;
    remote.open_changes = vec![RemoteChange {
        id: "cr".into(),
        proposal: json!({"kind": "status", "status": "inactive"}),
        author: "token:ci".into(),
    }];
    let planned = plan(&d, &remote);
    assert_eq!(planned.steps, [Step::Status { active: false }], "{planned:?}");
}
