//! Workers recycled under load (issue 39, from an attacker's pass): with
//! `recycle_after_runs` low, a worker starting its successor refused every
//! handed run for the whole start-up, and demand sizing, counting only
//! processes it saw at both ends of a window, read the busy pool as idle
//! and stopped a worker while clients waited.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{self, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn workers_recycled_every_few_runs_keep_their_runs_and_the_pool_its_size() {
    let app = TestApp::spawn_alone(|s| {
        s.sandbox.workers = 2;
        s.sandbox.min_workers = 1;
        s.sandbox.recycle_after_runs = 30;
        // However slow a debug build is, runs are pipelined (and handed).
        s.sandbox.pipeline_budget_ms = 60_000;
        s.sandbox.deadline_ms = 3000;
        s.sandbox.queue_wait_ms = 3000;
    })
    .await;
    // A few ms of CPU per run: the workers are plainly busy.
    app.released("spin", "n = 0\nfor i in range(1000):\n    n += i\nreturn n", json!([]))
        .await;
    let pool = app.state().pool.clone();
    let before = pool.stats();
    // Past demand sizing's five quiet windows, which shrank the pool.
    let until = Instant::now() + Duration::from_secs(7);
    let failed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8u64)
        .map(|c| {
            let (client, url, failed) = (app.client.clone(), app.url("/config/spin"), failed.clone());
            tokio::spawn(async move {
                // Params differ every time, so no memoized result answers.
                for n in 0.. {
                    if Instant::now() >= until {
                        break;
                    }
                    let params = json!({"params": {"n": c * 1_000_000 + n}});
                    let (status, body) = common::read(client.post(&url).json(&params).send().await.unwrap()).await;
                    let wrong = status != StatusCode::OK || body["data"]["result"] != json!("499500");
                    if wrong && failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first failure: {status} {body}");
                    }
                }
            })
        })
        .collect();
    let mut fewest = usize::MAX;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fewest = fewest.min(pool.status().await.unwrap().worker_list.len());
    }
    for client in clients {
        client.await.unwrap();
    }
    let stats = pool.stats();
    let (runs, handed) = (stats.finished - before.finished, stats.handed - before.handed);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{stats:?}");
    assert!(stats.recycled - before.recycled >= 4, "{stats:?}");
    assert_eq!(fewest, 2, "a worker was stopped under load: {stats:?}");
    // A swap costs a run or two through the pool (the new worker has no
    // code); refusing runs while the successor started cost most of them.
    assert!(handed * 10 >= runs * 6, "{handed} of {runs} handed: {stats:?}");
    app.stop().await;
}
