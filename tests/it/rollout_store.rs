//! Rollout plans in the store, one body run against SQLite and PostgreSQL:
//! each move is claimed and applied once, with its event; the gate aborts;
//! pause, resume and abort; a change by hand pauses the plan.

use vane::domain::Lang;
use vane::domain::model::EventKind;
use vane::domain::rollout::{Control, GateFigures, PlanState, Step};
use vane::store::{self, Change, NewConfig, NewPlan, NewVersion, StoreError};

use crate::common;
use crate::common::Backend;

backend_tests!(plans_move_once_and_stop_on_their_gate);

fn version(source: &str) -> NewVersion {
    NewVersion {
        config_id: "app".into(),
        lang: Lang::Starlark,
        source: source.into(),
        rules: vec![],
        params: vec![],
        created_by: "tester".into(),
    }
}

fn plan(code_id: &str, start_at: i64) -> NewPlan {
    let step = |percentage, bake_s| Step { percentage, bake_s };
    NewPlan {
        config_id: "app".into(),
        code_id: code_id.into(),
        steps: vec![step(10, 1), step(50, 1), step(100, 1)],
        forced: false,
        gate_min_sources: None,
        start_at,
        created_by: "alice".into(),
    }
}

const HEALTHY: GateFigures = GateFigures {
    broken: false,
    counted_sources: 0,
    served_networks: 200,
    ratio: 0.0,
    threshold: 0.05,
    min_sources: 10,
};

async fn plans_move_once_and_stop_on_their_gate(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, _pg)) = common::store_url(backend, dir.path()).await else {
        return;
    };
    let store = store::connect(&url, 4).await.unwrap();
    let other_node = store::connect(&url, 4).await.unwrap();
    let config = NewConfig {
        id: "app".into(),
        description: String::new(),
        secret: "s".into(),
    };
    store.create_config(config, "tester").await.unwrap();
    let v1 = store.create_version(version("return 1")).await.unwrap().code_id;
    let v2 = store.create_version(version("return 2")).await.unwrap().code_id;
    let release = |code_id: &str| Change::Release {
        code_id: code_id.into(),
        forced: false,
    };
    store.apply("app", release(&v1), "alice").await.unwrap();
    let t0 = vane::domain::model::now_millis();

    let created = store.create_plan(plan(&v2, t0)).await.unwrap();
    assert_eq!(
        (created.state, created.applied, created.next_at),
        (PlanState::Active, 0, Some(t0))
    );
    let second = store.create_plan(plan(&v2, t0)).await.unwrap_err();
    assert!(matches!(second, StoreError::Exists(_)), "{second}");
    assert!(matches!(
        store
            .create_plan(NewPlan {
                code_id: "nope".into(),
                ..plan(&v2, t0)
            })
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Two nodes reach for the first step at once: it is applied once.
    let (a, b) = tokio::join!(
        store.advance_plan(&created.id, t0, None),
        other_node.advance_plan(&created.id, t0, None)
    );
    let applied: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    let gray = applied[0].config.clone().unwrap().gray.unwrap();
    assert_eq!((gray.code_id.as_str(), gray.percentage), (v2.as_str(), 10));
    assert_eq!(applied[0].plan.next_at, Some(t0 + 1000));
    // Not due again before its bake is over.
    assert!(
        store
            .advance_plan(&created.id, t0 + 999, Some(HEALTHY))
            .await
            .unwrap()
            .is_none()
    );
    let step2 = store
        .advance_plan(&created.id, t0 + 1000, Some(HEALTHY))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(step2.config.unwrap().gray.unwrap().percentage, 50);

    // Paused, it does not move; resumed, it keeps the bake it had left.
    let paused = store
        .control_plan(&created.id, Control::Pause, "bob")
        .await
        .unwrap()
        .plan;
    assert_eq!((paused.state, paused.next_at), (PlanState::Paused, None));
    assert!(
        store
            .advance_plan(&created.id, t0 + 60_000, Some(HEALTHY))
            .await
            .unwrap()
            .is_none()
    );
    let resumed = store
        .control_plan(&created.id, Control::Resume, "bob")
        .await
        .unwrap()
        .plan;
    assert_eq!(resumed.state, PlanState::Active);
    let late = resumed.next_at.unwrap();
    let released = store
        .advance_plan(&created.id, late, Some(HEALTHY))
        .await
        .unwrap()
        .unwrap();
    let config = released.config.unwrap();
    assert_eq!((config.release.unwrap().code_id, config.gray), (v2.clone(), None));
    let done = store
        .advance_plan(&created.id, late + 1000, Some(HEALTHY))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.plan.state, done.config), (PlanState::Completed, None));
    let refused = store
        .control_plan(&created.id, Control::Pause, "bob")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::PlanState { state: "completed", .. }),
        "{refused}"
    );

    // One event per step, by `rollout`, naming the plan and the step.
    let events = store.list_events("app").await.unwrap();
    let moves: Vec<_> = events
        .iter()
        .rev()
        .filter(|e| e.actor == store::ROLLOUT_ACTOR)
        .collect();
    let kinds: Vec<_> = moves.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Gray, EventKind::Gray, EventKind::Release]);
    let steps: Vec<_> = moves
        .iter()
        .map(|e| e.detail.as_ref().unwrap()["step"].as_i64())
        .collect();
    assert_eq!(steps, [Some(1), Some(2), Some(3)]);
    assert!(
        moves
            .iter()
            .all(|e| e.detail.as_ref().unwrap()["plan"] == created.id.as_str())
    );

    // A failed gate aborts: gray removed, stable unchanged, the ratio named.
    let v3 = store.create_version(version("return 3")).await.unwrap().code_id;
    let sick_plan = store.create_plan(plan(&v3, t0)).await.unwrap();
    store.advance_plan(&sick_plan.id, t0, None).await.unwrap().unwrap();
    let sick = GateFigures::new(false, 20, 200, 0.05, 10);
    let aborted = store
        .advance_plan(&sick_plan.id, t0 + 1000, Some(sick))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aborted.plan.state, PlanState::Aborted);
    let after = aborted.config.unwrap();
    assert_eq!((after.gray, after.release.unwrap().code_id), (None, v2.clone()));
    let why = aborted.plan.reason.unwrap();
    assert!(why.contains("20 of 200") && why.contains("0.100"), "{why}");
    let event = store.list_events("app").await.unwrap().remove(0);
    assert_eq!(event.kind, EventKind::GrayRemoved);
    assert_eq!(event.detail.unwrap()["gate"]["counted_sources"], 20);

    // A release by hand pauses the open plan, and its event says so.
    let v4 = store.create_version(version("return 4")).await.unwrap().code_id;
    let held = store.create_plan(plan(&v4, t0)).await.unwrap();
    store.advance_plan(&held.id, t0, None).await.unwrap().unwrap();
    store.apply("app", release(&v1), "carol").await.unwrap();
    let held = store.get_plan(&held.id).await.unwrap().unwrap();
    assert_eq!(held.state, PlanState::Paused);
    assert!(held.reason.unwrap().contains("carol"));
    let event = store.list_events("app").await.unwrap().remove(0);
    assert_eq!(event.detail.unwrap()["plan_paused"], held.id.as_str());
    // Aborting it removes its gray.
    let aborted = store.control_plan(&held.id, Control::Abort, "carol").await.unwrap();
    assert_eq!(aborted.config.unwrap().gray, None);
    assert_eq!(store.list_plans(Some("app")).await.unwrap().len(), 3);
    assert!(store.list_plans(None).await.unwrap().is_empty());
    assert_eq!(store.next_plan_due().await.unwrap(), None);

    // A first release through a plan has nothing to roll back to: a failed
    // watch still ends the plan, saying the release stays.
    let fresh = NewConfig {
        id: "fresh".into(),
        description: String::new(),
        secret: "s".into(),
    };
    store.create_config(fresh, "tester").await.unwrap();
    let only = store
        .create_version(NewVersion {
            config_id: "fresh".into(),
            ..version("return 1")
        })
        .await
        .unwrap()
        .code_id;
    let publish = NewPlan {
        config_id: "fresh".into(),
        code_id: only.clone(),
        steps: vec![Step {
            percentage: 100,
            bake_s: 1,
        }],
        ..plan(&only, t0)
    };
    let scheduled = store.create_plan(publish).await.unwrap();
    store.advance_plan(&scheduled.id, t0, None).await.unwrap().unwrap();
    let ended = store
        .advance_plan(&scheduled.id, t0 + 1000, Some(sick))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ended.plan.state, ended.config), (PlanState::Aborted, None));
    let why = ended.plan.reason.unwrap();
    assert!(
        why.contains("in the watch after release") && why.contains("the release stays"),
        "{why}"
    );
    assert_eq!(
        store
            .get_config("fresh")
            .await
            .unwrap()
            .unwrap()
            .release
            .unwrap()
            .code_id,
        only
    );
}
