//! The integration harness: starts Vane exactly as `main` does (`app::start`)
//! on 127.0.0.1:0, with a temp SQLite file or a fresh PostgreSQL or MySQL
//! database, and drives it over HTTP.
#![allow(dead_code)]

pub mod apart;
pub mod faulty;
pub mod networks;
pub mod private_redis;
pub mod raw_ws;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tokio::net::TcpListener;
use vane::app::App;
use vane::settings::Settings;

use faulty::FaultyStore;

pub const TOKEN: &str = "tester=test-token-0123456789abcdef";
pub const BEARER: &str = "test-token-0123456789abcdef";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// Runs each named `async fn(Backend)` once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::MySql).await
                }
            )*
        }
    };
}

/// An admin call to the node at `base` (a server the test started itself,
/// not a `TestApp`): the JSON it answers.
pub async fn admin_at(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(BEARER);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// A loopback port nothing listens on now (for servers a test starts and
/// restarts on a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Says, where a plain `cargo test` shows it, that the running test skips
/// its body: libtest captures `eprintln!`, not writes to the stderr handle.
pub fn skipped(what: &str, why: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "skipping {what} test {test}: {why}");
}

/// A store URL for `backend`, or None when its server is not configured
/// outside CI. In CI a missing database is a failure, never a skip.
pub async fn store_url(backend: Backend, dir: &std::path::Path) -> Option<(String, Option<TestDatabase>)> {
    let (what, variable) = match backend {
        Backend::Sqlite => return Some((format!("sqlite://{}", dir.join("vane.db").display()), None)),
        Backend::Postgres => ("PostgreSQL", "VANE_TEST_DATABASE_URL"),
        Backend::MySql => ("MySQL", "VANE_TEST_MYSQL_URL"),
    };
    let base = service_url(variable, what)?;
    let db = TestDatabase::create(&base).await;
    Some((db.url.clone(), Some(db)))
}

/// The Redis for cluster tests, or None outside CI when it is not set.
pub fn redis_url() -> Option<String> {
    service_url("VANE_TEST_REDIS_URL", "Redis")
}

/// The MySQL server for tests, or None outside CI when it is not set.
pub fn mysql_url() -> Option<String> {
    service_url("VANE_TEST_MYSQL_URL", "MySQL")
}

/// The URL in `variable`; when it is not set, a failure in CI and a skip
/// (said where a plain `cargo test` shows it) elsewhere.
fn service_url(variable: &str, what: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{variable} must be set when CI=true")
        }
        Err(_) => {
            skipped(what, &format!("{variable} is not set"));
            None
        }
    }
}

/// A database made for one test on a PostgreSQL or MySQL server (by the
/// scheme of `base`), and dropped after it.
pub struct TestDatabase {
    base: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(base: &str) -> Self {
        let name = format!("vane_t_{:016x}", rand::random::<u64>());
        execute_on(base, &format!("CREATE DATABASE {name}")).await;
        let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
        Self {
            base: base.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }

    pub async fn drop_database(&self) {
        let sql = match self.base.starts_with("mysql:") {
            true => format!("DROP DATABASE IF EXISTS {}", self.name),
            false => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        };
        let _ = try_execute_on(&self.base, &sql).await;
    }
}

/// Runs `sql` on the server at `url` (PostgreSQL or MySQL, by its scheme).
pub async fn execute_on(url: &str, sql: &str) {
    try_execute_on(url, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {url}: {e}"));
}

async fn try_execute_on(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("mysql:") {
        sqlx::MySqlConnection::connect(url).await?.execute(sql).await?;
    } else {
        sqlx::PgConnection::connect(url).await?.execute(sql).await?;
    }
    Ok(())
}

pub fn test_settings(store_url: String) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.url = store_url;
    settings.auth.admin_tokens = vec![TOKEN.into()];
    // Set, so no test writes generated secrets (beside a PostgreSQL store
    // that is the working directory, i.e. the repository).
    settings.tests.secret = "tests-secret-0123456789abcdef".into();
    settings.push.update_secret = "update-secret-0123456789abcdef".into();
    settings.sandbox.workers = 2;
    // Tests count on both being there; `pool.rs` covers demand sizing.
    settings.sandbox.min_workers = 2;
    settings.sandbox.worker_exe = env!("CARGO_BIN_EXE_vane").into();
    // A debug worker on a loaded two-core machine: the 50 ms and 1 s
    // defaults fail tests about something else. Tests of the deadline and
    // the queue wait set their own.
    settings.sandbox.deadline_ms = 1000;
    settings.sandbox.queue_wait_ms = 10_000;
    settings
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    app: Option<App>,
    pg: Option<TestDatabase>,
    _dir: tempfile::TempDir,
    _place: Place,
}

/// Where a server runs: beside other tests' servers, or alone.
enum Place {
    Beside(apart::Beside),
    Alone(apart::Alone),
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = store_url(backend, dir.path()).await?;
        Some(Self::start(url, pg, dir, tweak, None).await)
    }

    /// A SQLite node with no other test's server beside it, for a test that
    /// loads the machine on purpose (see `apart`).
    pub async fn spawn_alone(tweak: impl FnOnce(&mut Settings)) -> Self {
        let place = Place::Alone(apart::alone().await);
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = store_url(Backend::Sqlite, dir.path())
            .await
            .expect("sqlite always runs");
        Self::start_in(place, url, None, dir, tweak, None).await
    }

    /// A node on a store the test prepared at `url` (from `store_url`),
    /// owning its database.
    pub async fn spawn_on(url: String, db: Option<TestDatabase>, dir: tempfile::TempDir) -> Self {
        Self::start(url, db, dir, |_| {}, None).await
    }

    /// A node whose store the test can slow down, fail or hold.
    pub async fn spawn_faulty(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<(Self, Arc<FaultyStore>)> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = store_url(backend, dir.path()).await?;
        let real = vane::store::connect(&url, 8).await.expect("store opens");
        let faulty = FaultyStore::new(real);
        let app = Self::start(url, pg, dir, tweak, Some(faulty.clone())).await;
        Some((app, faulty))
    }

    /// `n` nodes sharing one fresh PostgreSQL database and one Redis, under a
    /// key prefix of their own; the first node owns the database.
    pub async fn cluster(n: usize, tweak: impl Fn(&mut Settings)) -> Option<Vec<Self>> {
        Self::cluster_on(Backend::Postgres, n, tweak).await
    }

    /// `cluster` over `backend`'s server (PostgreSQL or MySQL).
    pub async fn cluster_on(backend: Backend, n: usize, tweak: impl Fn(&mut Settings)) -> Option<Vec<Self>> {
        let redis = redis_url()?;
        Self::cluster_over_on(backend, n, Some(redis), tweak).await
    }

    /// `n` nodes sharing one fresh PostgreSQL database, and the Redis at
    /// `redis` if any.
    pub async fn cluster_over(n: usize, redis: Option<String>, tweak: impl Fn(&mut Settings)) -> Option<Vec<Self>> {
        Self::cluster_over_on(Backend::Postgres, n, redis, tweak).await
    }

    /// `cluster_over` on `backend`'s server.
    pub async fn cluster_over_on(
        backend: Backend,
        n: usize,
        redis: Option<String>,
        tweak: impl Fn(&mut Settings),
    ) -> Option<Vec<Self>> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = store_url(backend, dir.path()).await?;
        let prefix = format!("vane_t_{:016x}:", rand::random::<u64>());
        let mut nodes = Vec::with_capacity(n);
        let mut owner = pg;
        for _ in 0..n {
            let setup = |s: &mut Settings| {
                s.redis.url = redis.clone().unwrap_or_default();
                s.redis.prefix = prefix.clone();
                tweak(s);
            };
            let node = Self::start(url.clone(), owner.take(), tempfile::tempdir().unwrap(), setup, None).await;
            nodes.push(node);
        }
        Some(nodes)
    }

    async fn start(
        url: String,
        pg: Option<TestDatabase>,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Settings),
        store: Option<Arc<FaultyStore>>,
    ) -> Self {
        let place = Place::Beside(apart::beside_others().await);
        Self::start_in(place, url, pg, dir, tweak, store).await
    }

    async fn start_in(
        place: Place,
        url: String,
        pg: Option<TestDatabase>,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Settings),
        store: Option<Arc<FaultyStore>>,
    ) -> Self {
        let mut settings = test_settings(url);
        tweak(&mut settings);
        let listener = TcpListener::bind(settings.server.listen).await.unwrap();
        let app = match store {
            Some(store) => vane::app::start_with_store(settings, store, listener).await,
            None => vane::app::start(settings, listener).await,
        };
        let app = app.expect("app starts");
        Self {
            addr: app.addr,
            client: reqwest::Client::new(),
            app: Some(app),
            pg,
            _dir: dir,
            _place: place,
        }
    }

    /// The running app itself.
    pub fn app(&self) -> &App {
        self.app.as_ref().expect("running")
    }

    /// The running app's handles, for tests that drive actors directly.
    pub fn state(&self) -> &vane::http::AppState {
        &self.app.as_ref().expect("running").state
    }

    /// The PostgreSQL database this node owns, if any.
    pub fn database_name(&self) -> Option<String> {
        self.pg.as_ref().map(|pg| pg.name.clone())
    }

    /// Runs SQL on the database server as the test's superuser, outside
    /// the node's own database.
    pub async fn admin_sql(&self, sql: &str) {
        execute_on(&self.pg.as_ref().expect("a PostgreSQL or MySQL test").base, sql).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// An admin request with the test token.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(BEARER);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    /// A request with the bearer `token`.
    pub async fn as_token(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    /// Makes an API token named `name` with `role` over `configs`; its value.
    pub async fn make_token(&self, name: &str, role: &str, configs: &[&str]) -> String {
        let body = json!({"name": name, "role": role, "configs": configs});
        let (status, made) = self.admin(reqwest::Method::POST, "/api/v1/tokens", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        made["token"].as_str().unwrap().to_owned()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        read(self.client.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    /// A POST of JSON text as it is (what a `Value` cannot hold: repeated
    /// keys, lone surrogates, a key order).
    pub async fn post_raw(&self, path: &str, body: String) -> (StatusCode, Value) {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        read(request.send().await.unwrap()).await
    }

    pub async fn create_config(&self, id: &str) -> Value {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/api/v1/configs", Some(json!({"id": id})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Uploads a version and returns its code_id: a new one (201), or the
    /// one the same content already is (200; `identity` tests which).
    pub async fn create_version(&self, config_id: &str, version: Value) -> String {
        let path = format!("/api/v1/configs/{config_id}/versions");
        let (status, body) = self.admin(reqwest::Method::POST, &path, Some(version)).await;
        assert!(
            matches!(status, StatusCode::CREATED | StatusCode::OK),
            "{status}: {body}"
        );
        body["code_id"].as_str().unwrap().to_owned()
    }

    pub async fn release(&self, config_id: &str, code_id: &str) -> Value {
        let path = format!("/api/v1/configs/{config_id}/release");
        let (status, body) = self
            .admin(reqwest::Method::POST, &path, Some(json!({"code_id": code_id})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A config with one released Starlark version; returns its code_id.
    /// A config `id` with versions returning each of `versions`, released
    /// in turn; its secret and the versions' code ids.
    pub async fn config_with(&self, id: &str, versions: &[i64]) -> (String, Vec<String>) {
        let secret = self.create_config(id).await["secret"].as_str().unwrap().to_owned();
        let mut code_ids = Vec::new();
        for n in versions {
            let source = json!({"lang": "starlark", "source": format!("return {n}")});
            let code_id = self.create_version(id, source).await;
            self.release(id, &code_id).await;
            code_ids.push(code_id);
        }
        (secret, code_ids)
    }

    pub async fn released(&self, config_id: &str, source: &str, params: Value) -> String {
        self.create_config(config_id).await;
        let code_id = self
            .create_version(
                config_id,
                json!({"lang": "starlark", "source": source, "params": params}),
            )
            .await;
        self.release(config_id, &code_id).await;
        code_id
    }

    /// `/metrics` as Prometheus text (it needs the admin token).
    pub async fn scrape(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// The compatible fetch.
    pub async fn fetch(&self, config_id: &str, body: Value) -> (StatusCode, Value) {
        self.post_json(&format!("/config/{config_id}"), body).await
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_database().await;
        }
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
