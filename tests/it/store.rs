//! The Store contract, one body run against SQLite and PostgreSQL.

use serde_json::json;
use vane::domain::ConfigStatus;
use vane::domain::Lang;
use vane::domain::Meta;
use vane::domain::health::{BreakRule, ReportKind};
use vane::domain::model::EventKind;
use vane::store::{self, Breaking, Change, NewConfig, NewReport, NewTestCase, NewVersion, Store, StoreError};

use crate::common;
use crate::common::Backend;

backend_tests!(store_contract, history_health_and_tests, revisions_follow_every_change);

fn new_version(config_id: &str, source: &str) -> NewVersion {
    NewVersion {
        config_id: config_id.into(),
        lang: Lang::Starlark,
        source: source.into(),
        rules: vec![],
        params: vec![],
        created_by: "tester".into(),
    }
}

async fn store_contract(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = common::store_url(backend, dir.path()).await else {
        return;
    };
    let store = store::connect(&url, 4).await.expect("connects and migrates");
    store.ping().await.unwrap();

    let new = NewConfig {
        id: "app".into(),
        description: "d".into(),
        secret: "s".into(),
    };
    let config = store.create_config(new.clone(), "tester").await.unwrap();
    assert_eq!(
        (config.revision, config.status, config.release.clone()),
        (1, ConfigStatus::Active, None)
    );
    assert!(matches!(
        store.create_config(new, "tester").await,
        Err(StoreError::Exists(_))
    ));
    assert_eq!(store.get_config("app").await.unwrap(), Some(config.clone()));
    assert_eq!(store.get_config("missing").await.unwrap(), None);

    let v1 = store.create_version(new_version("app", "return 1")).await.unwrap();
    let v2 = store.create_version(new_version("app", "return 2")).await.unwrap();
    assert_ne!(v1.code_id, v2.code_id);
    assert_eq!(
        store.get_version(&v1.code_id).await.unwrap().unwrap().source,
        "return 1"
    );
    assert_eq!(store.list_versions("app").await.unwrap().len(), 2);
    assert!(matches!(
        store.create_version(new_version("missing", "x")).await,
        Err(StoreError::NotFound(_))
    ));

    // Each change bumps the revision and appends an event.
    let released = store
        .apply(
            "app",
            Change::Release {
                code_id: v1.code_id.clone(),
                forced: false,
            },
            "ops",
        )
        .await
        .unwrap();
    assert_eq!(released.revision, 2);
    assert_eq!(released.release.as_ref().unwrap().code_id, v1.code_id);
    let gray = Change::Gray {
        code_id: v2.code_id.clone(),
        percentage: 20,
        forced: false,
    };
    let grayed = store.apply("app", gray.clone(), "ops").await.unwrap();
    assert_eq!((grayed.revision, grayed.gray.as_ref().unwrap().percentage), (3, 20));
    // The same change again is a no-op: no bump, no event.
    assert_eq!(store.apply("app", gray, "ops").await.unwrap().revision, 3);
    let inactive = store
        .apply("app", Change::Status(ConfigStatus::Inactive), "ops")
        .await
        .unwrap();
    assert_eq!((inactive.revision, inactive.status), (4, ConfigStatus::Inactive));
    let ungrayed = store.apply("app", Change::RemoveGray, "ops").await.unwrap();
    assert_eq!((ungrayed.revision, ungrayed.gray), (5, None));

    // A version of another config cannot be released here.
    store
        .create_config(
            NewConfig {
                id: "other".into(),
                description: String::new(),
                secret: "s".into(),
            },
            "t",
        )
        .await
        .unwrap();
    let foreign = store.create_version(new_version("other", "return 3")).await.unwrap();
    let refused = store
        .apply(
            "app",
            Change::Release {
                code_id: foreign.code_id,
                forced: false,
            },
            "ops",
        )
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound(_))), "{refused:?}");
    assert!(matches!(
        store.apply("missing", Change::RemoveGray, "ops").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get_config("app").await.unwrap().unwrap().revision,
        5,
        "refused changes change nothing"
    );

    let events = store.list_events("app").await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::GrayRemoved,
            EventKind::Status,
            EventKind::Gray,
            EventKind::Release,
            EventKind::Uploaded,
            EventKind::Uploaded,
            EventKind::Created
        ]
    );
    // Uploads change nothing clients see: they keep the revision.
    assert_eq!(
        events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1, 1, 1]
    );
    assert_eq!(events[3].actor, "ops");
    assert_eq!(events[3].from["release"], serde_json::Value::Null);
    assert_eq!(events[3].to["release"]["code_id"], serde_json::json!(v1.code_id));

    let described = store.set_description("app", "new words").await.unwrap();
    assert_eq!((described.description.as_str(), described.revision), ("new words", 5));
    assert_eq!(store.list_configs().await.unwrap().len(), 2);

    // Reopening runs the migrations again without harm and keeps the data.
    drop(store);
    let reopened = store::connect(&url, 2).await.unwrap();
    assert_eq!(reopened.get_config("app").await.unwrap().unwrap().revision, 5);
    if let Some(pg) = pg {
        drop(reopened);
        pg.drop_database().await;
    }
}

fn release(code_id: &str) -> Change {
    Change::Release {
        code_id: code_id.into(),
        forced: false,
    }
}

fn report(code_id: &str, n: i64) -> NewReport {
    NewReport {
        config_id: "app".into(),
        code_id: code_id.into(),
        err_time: n,
        message: format!("crash {n}"),
        kind: ReportKind::Client,
        source: "address:10.0.0.1".into(),
        candidate: true,
    }
}

/// The original's rule: three reports from anyone.
const COUNT_3: Breaking = Breaking {
    rule: BreakRule::Count { threshold: 3 },
    window_s: 600,
    served_networks: None,
};

async fn released_code(store: &dyn Store) -> String {
    store.get_config("app").await.unwrap().unwrap().release.unwrap().code_id
}

async fn history_health_and_tests(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = common::store_url(backend, dir.path()).await else {
        return;
    };
    let store = store::connect(&url, 4).await.unwrap();
    let new = NewConfig {
        id: "app".into(),
        description: String::new(),
        secret: "s".into(),
    };
    store.create_config(new, "t").await.unwrap();
    let mut versions = Vec::new();
    for n in 1..=3 {
        let v = store
            .create_version(new_version("app", &format!("return {n}")))
            .await
            .unwrap();
        versions.push(v.code_id);
    }
    let [v1, v2, v3] = [&versions[0], &versions[1], &versions[2]];

    // Nothing to roll back to yet.
    assert!(matches!(
        store.apply("app", Change::Rollback, "ops").await,
        Err(StoreError::NoRollbackTarget { .. })
    ));
    store.apply("app", release(v1), "ops").await.unwrap();
    assert!(matches!(
        store.apply("app", Change::Rollback, "ops").await,
        Err(StoreError::NoRollbackTarget { .. })
    ));
    store.apply("app", release(v2), "ops").await.unwrap();
    store.apply("app", release(v3), "ops").await.unwrap();
    // Rollbacks walk back through the releases, each as a new event.
    let back = store.apply("app", Change::Rollback, "ops").await.unwrap();
    assert_eq!(back.release.unwrap().code_id, *v2);
    store.apply("app", Change::Rollback, "ops").await.unwrap();
    assert_eq!(released_code(store.as_ref()).await, *v1);
    assert!(matches!(
        store.apply("app", Change::Rollback, "ops").await,
        Err(StoreError::NoRollbackTarget { .. })
    ));
    store.apply("app", release(v3), "ops").await.unwrap();
    assert_eq!(
        store
            .apply("app", Change::Rollback, "ops")
            .await
            .unwrap()
            .release
            .unwrap()
            .code_id,
        *v1
    );

    // Reports count up; the one that reaches the threshold breaks the version.
    let revision = store.get_config("app").await.unwrap().unwrap().revision;
    let first = store.add_report(report(v1, 1), &COUNT_3).await.unwrap();
    assert_eq!((first.error_count, first.broke.is_some()), (1, false));
    store.add_report(report(v1, 2), &COUNT_3).await.unwrap();
    let third = store.add_report(report(v1, 3), &COUNT_3).await.unwrap();
    let broke = third.broke.expect("the third report breaks it");
    assert_eq!(broke.config.revision, revision + 1);
    assert_eq!(broke.rolled_back_to, None, "no earlier stable version to go back to");
    assert!(store.get_version(v1).await.unwrap().unwrap().broken);
    // Past the threshold, a report counts but breaks nothing again.
    let fourth = store.add_report(report(v1, 4), &COUNT_3).await.unwrap();
    assert_eq!((fourth.error_count, fourth.broke.is_some()), (4, false));
    let listed = store.list_reports(v1, 2).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.err_time).collect::<Vec<_>>(), [4, 3]);
    assert!(matches!(
        store.add_report(report("nope", 1), &COUNT_3).await,
        Err(StoreError::NotFound(_))
    ));
    // A report that cannot count is stored as such, and counts nothing.
    let ignored = NewReport {
        candidate: false,
        ..report(v1, 5)
    };
    let outcome = store.add_report(ignored, &COUNT_3).await.unwrap();
    assert_eq!((outcome.counted, outcome.broke.is_none()), (false, true));
    let newest = &store.list_reports(v1, 1).await.unwrap()[0];
    assert_eq!((newest.err_time, newest.counted), (5, false));
    assert_eq!(store.get_version(v1).await.unwrap().unwrap().error_count, 4);
    let stray = NewReport {
        candidate: false,
        ..report("nope", 1)
    };
    assert!(matches!(
        store.add_report(stray, &COUNT_3).await,
        Err(StoreError::NotFound(_))
    ));

    // A broken version is not a rollback target until its mark is cleared.
    store.apply("app", release(v2), "ops").await.unwrap();
    assert!(matches!(
        store.apply("app", Change::Rollback, "ops").await,
        Err(StoreError::RollbackTargetBroken { code_id }) if code_id == *v1
    ));
    let cleared = store
        .apply("app", Change::Unbroken { code_id: v1.clone() }, "ops")
        .await
        .unwrap();
    let version = store.get_version(v1).await.unwrap().unwrap();
    assert_eq!((version.broken, version.error_count), (false, 0));
    assert_eq!(
        store
            .apply("app", Change::Unbroken { code_id: v1.clone() }, "ops")
            .await
            .unwrap()
            .revision,
        cleared.revision,
        "clearing a clear mark is a no-op"
    );
    store
        .apply("app", Change::Broken { code_id: v3.clone() }, "ops")
        .await
        .unwrap();
    assert!(store.get_version(v3).await.unwrap().unwrap().broken);

    let events = store.list_events("app").await.unwrap();
    let broken_events: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Broken | EventKind::Unbroken))
        .map(|e| (e.kind, e.actor.as_str(), e.to["code_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        broken_events,
        [
            (EventKind::Broken, "ops", v3.clone()),
            (EventKind::Unbroken, "ops", v1.clone()),
            (EventKind::Broken, "reports", v1.clone()),
        ]
    );

    // Test cases belong to a version of the config.
    let case = NewTestCase {
        config_id: "app".into(),
        code_id: v2.clone(),
        name: "gold".into(),
        meta: Meta {
            platform: "ios".into(),
            ..Meta::default()
        },
        params: json!({"n": 1}),
        expected: json!({"tier": "gold"}),
    };
    let created = store.create_test(case.clone()).await.unwrap();
    assert_eq!(
        (created.meta.platform.as_str(), &created.expected),
        ("ios", &json!({"tier": "gold"}))
    );
    assert_eq!(store.get_test(&created.test_id).await.unwrap(), Some(created.clone()));
    assert_eq!(store.list_tests(v2).await.unwrap(), vec![created.clone()]);
    let foreign = NewTestCase {
        config_id: "other".into(),
        ..case
    };
    assert!(matches!(store.create_test(foreign).await, Err(StoreError::NotFound(_))));
    assert!(store.delete_test(&created.test_id).await.unwrap());
    assert!(!store.delete_test(&created.test_id).await.unwrap());
    assert!(store.list_tests(v2).await.unwrap().is_empty());

    if let Some(pg) = pg {
        drop(store);
        pg.drop_database().await;
    }
}

/// What fresh fetches and polls read: every config's revision, as of the
/// last commit, whichever connection made it.
async fn revisions_follow_every_change(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = common::store_url(backend, dir.path()).await else {
        return;
    };
    let store = store::connect(&url, 4).await.expect("connects and migrates");
    let ids: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
    for id in ids.iter().take(200) {
        let new = NewConfig {
            id: id.clone(),
            description: String::new(),
            secret: "s".repeat(16),
        };
        store.create_config(new, "tester").await.unwrap();
    }
    // More ids than one query takes, a third of them unknown.
    let mut found = store.config_revisions(&ids).await.unwrap();
    found.sort();
    assert_eq!(found.len(), 200);
    assert!(found.iter().all(|(_, revision)| *revision == 1));
    let v1 = store.create_version(new_version("c7", "return 1")).await.unwrap();
    let change = Change::Release {
        code_id: v1.code_id,
        forced: false,
    };
    let config = store.apply("c7", change, "tester").await.unwrap();
    let read = store
        .config_revisions(&["c7".to_owned(), "nope".to_owned()])
        .await
        .unwrap();
    assert_eq!(read, vec![("c7".to_owned(), config.revision)]);
    assert!(config.revision > 1);
    let all = store.revisions().await.unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.iter().any(|r| r.config_id == "c7" && r.revision == config.revision));
    assert_eq!(store.config_revisions(&[]).await.unwrap(), vec![]);
    if let Some(pg) = pg {
        pg.drop_database().await;
    }
}
