//! One request through the whole server in process, without a network: the
//! public router of a started app (real actors, real worker processes),
//! called with tower's `oneshot`. A change to the fetch path shows here
//! without a load generator sharing the cores. `cargo bench --bench request`
//!
//! Rows: the original fetch route with fixed params (a memo hit: the HTTP
//! path, the cache and the memo), with params that vary (through a worker),
//! and the same with `cached: false` (a revision check per request, as the
//! original's apps send), for the 60-line Starlark config the loadtest uses.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tower::ServiceExt;

// The server's allocator, so the profile is the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STARLARK: &str = include_str!("../loadtest/scripts/config60.star");
const TOKEN: &str = "bench-token-0123456789abcdef";

fn request(method: &str, path: &str, body: &Value) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn call(router: &axum::Router, method: &str, path: &str, body: &Value) -> Value {
    let response = router.clone().oneshot(request(method, path, body)).await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn fetch_body(n: i64, cached: bool) -> Value {
    json!({
        "meta": {"platform": "iphone", "version": 120, "device_id": format!("d{}", n % 1000)},
        "params": {"score": n % 100, "platform": "iphone", "version_code": 100 + n % 80, "seq": n},
        "cached": cached
    })
}

fn fetch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, router) = runtime.block_on(async {
        let mut settings = vane::settings::Settings::default();
        settings.store.url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
        settings.auth.admin_tokens = vec![TOKEN.into()];
        settings.sandbox.worker_exe = env!("CARGO_BIN_EXE_vane").into();
        settings.log.level = "warn".into();
        let listener = vane::app::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let app = vane::app::start(settings, listener).await.unwrap();
        let router = vane::http::routers(app.state.clone(), 1 << 20, false).public;
        call(&router, "POST", "/api/v1/configs", &json!({"id": "star"})).await;
        let version = call(
            &router,
            "POST",
            "/api/v1/configs/star/versions",
            &json!({"lang": "starlark", "source": STARLARK}),
        )
        .await;
        call(
            &router,
            "POST",
            "/api/v1/configs/star/release",
            &json!({"code_id": version["code_id"]}),
        )
        .await;
        (app, router)
    });
    let mut group = c.benchmark_group("request");
    group.measurement_time(Duration::from_secs(5));
    let rows = [
        ("fetch, params fixed (memo hit)", false, true),
        ("fetch, params varying", true, true),
        ("fetch, params varying, cached: false", true, false),
    ];
    for (name, varying, cached) in rows {
        let mut n = 0i64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        n += 1;
                        let body = fetch_body(if varying { n } else { 7 }, cached);
                        call(&router, "POST", "/config/star", &body).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
    runtime.block_on(app.shutdown());
}

criterion_group!(benches, fetch);
criterion_main!(benches);
