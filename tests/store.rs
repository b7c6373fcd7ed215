//! The Store contract, one body run against SQLite and PostgreSQL.

mod common;

use common::Backend;
use vane::domain::ConfigStatus;
use vane::domain::Lang;
use vane::domain::model::EventKind;
use vane::store::{self, Change, NewConfig, NewVersion, StoreError};

backend_tests!(store_contract);

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
        Err(StoreError::Conflict(_))
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
            EventKind::Created
        ]
    );
    assert_eq!(events.iter().map(|e| e.revision).collect::<Vec<_>>(), [5, 4, 3, 2, 1]);
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
