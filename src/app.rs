//! Starting and stopping the whole service: store, actor tree, HTTP server.
//! `main` and the integration tests both start Vane through `start`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actors::change_bus::ChangeBusHandle;
use crate::actors::config_cache::{Catalog, ConfigCacheHandle, Sources, StoreWait};
use crate::actors::evaluator::{EvaluatorPoolHandle, PoolShared};
use crate::actors::push::{NoticeFeed, PushHandle};
use crate::actors::scheduler::SchedulerArgs;
use crate::actors::supervisor::{Supervisor, SupervisorArgs, SupervisorMsg};
use crate::domain::change::ChangeNotice;
use crate::http::{self, AdminTokens, AppState, Authenticator, LiveAccess, Services};
use crate::service::announce::Announcer;
use crate::service::approvals::ApprovalsHandle;
use crate::service::plans::PlansHandle;
use crate::service::registry::RegistryHandle;
use crate::service::releases::ReleasesHandle;
use crate::service::reports::served::ServedRecord;
use crate::service::reports::share::Share;
use crate::service::reports::{ReportsHandle, Rules, Wiring};
use crate::service::sso::Sso;
use crate::settings::Settings;
use crate::shared::Shared;
use crate::store::Store;
use crate::{reload, secrets, server, store};

/// A running Vane: its address, its handles, and the way to stop it.
pub struct App {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// Where the observation routes are served, when `server.admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// The services the routes use, for tests and the binary.
    pub state: AppState,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: JoinHandle<()>,
    servers: Vec<JoinHandle<()>>,
    stop_server: watch::Sender<bool>,
    forwarder: JoinHandle<()>,
    /// The served record's sweep and sharing.
    upkeep: JoinHandle<()>,
    /// The service registry's lease sweep and store reads.
    registry_upkeep: JoinHandle<()>,
    shutdown_grace: Duration,
}

/// Connects the store, starts the actor tree and serves on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<App> {
    settings.validate()?;
    let store = store::connect(&settings.store.url, settings.store.max_connections)
        .await
        .with_context(|| format!("opening store {}", crate::secrets::redact_url(&settings.store.url)))?;
    start_with_store(settings, store, listener).await
}

/// `start` over a store opened by the caller: tests wrap the real one to
/// count its reads or to make it fail on demand.
pub async fn start_with_store(
    mut settings: Settings,
    store: Arc<dyn Store>,
    listener: TcpListener,
) -> anyhow::Result<App> {
    settings.validate()?;
    crate::tls::install();
    if settings.auth.admin_tokens.is_empty() {
        settings.auth.admin_tokens = vec![generated_secret(
            &settings.store.url,
            "vane-admin-token",
            "admin token",
        )?];
    }
    if settings.tests.secret.is_empty() {
        settings.tests.secret = generated_secret(&settings.store.url, "vane-test-secret", "test secret")?;
    }
    if settings.push.update_secret.is_empty() {
        settings.push.update_secret = generated_secret(&settings.store.url, "vane-update-secret", "update secret")?;
    }
    crate::metrics::install();
    let pool_shared = PoolShared::new(&settings.sandbox);
    let shared = match settings.redis.enabled() {
        true => Some(Shared::connect(&settings.redis).context("configuring redis")?),
        false => None,
    };
    let sources = Arc::new(Sources {
        store: store.clone(),
        shared: shared.clone(),
        ready: Arc::default(),
    });
    let store_wait = StoreWait {
        wait: settings.store.wait(),
        read_gap: settings.store.revision_read_gap(),
    };
    let feed = NoticeFeed::default();
    let (arrivals, arrived) = tokio::sync::mpsc::unbounded_channel();
    let args = SupervisorArgs {
        sources: sources.clone(),
        pool: pool_shared.clone(),
        bus: shared.clone().map(|r| (settings.redis.clone(), r)),
        poll: settings.store.poll(),
        store_wait,
        call_timeout: settings.call_timeout(),
        feed: feed.clone(),
        arrivals,
    };
    let (supervisor, supervisor_done) = Actor::spawn(None, Supervisor, args).await.context("starting actors")?;
    let children = supervisor
        .call(SupervisorMsg::GetChildren, Some(Duration::from_secs(5)))
        .await
        .context("asking supervisor")?
        .success_or(anyhow::anyhow!("supervisor did not answer"))?;
    let timeout = settings.call_timeout();
    let cache = children.cache;
    let pool = EvaluatorPoolHandle::new(children.pool, pool_shared);
    let registry = RegistryHandle::new(store.clone(), format!("{:016x}", rand::random::<u64>()));
    let registry_upkeep = registry.spawn_upkeep();
    let push = PushHandle::new(
        children.push,
        cache.clone(),
        store.clone(),
        feed,
        &settings.push,
        timeout,
    )
    .with_services(Arc::new(registry.clone()));
    let bus = ChangeBusHandle::new(children.bus, timeout);
    let announcer = Announcer::new(shared.clone(), cache.clone(), push.clone(), bus.clone());
    let forwarder = announce_arrivals(arrived, announcer.clone());
    let releases = ReleasesHandle::new(store.clone(), pool.clone(), announcer.clone());
    let (reports, upkeep) = start_reports(&settings, &store, &cache, &releases, shared.as_ref());
    let ofrep = Arc::new(LiveAccess::new(&settings.ofrep));
    let deliver = deliver_reloads(&pool, &reports, &push, &ofrep);
    let wake = Arc::new(tokio::sync::Notify::new());
    let plans = PlansHandle::new(store.clone(), releases.clone(), reports.clone(), wake.clone());
    let scheduler_args = SchedulerArgs {
        moves: Arc::new(plans.clone()),
        wake,
    };
    let scheduler = supervisor
        .call(
            |reply| SupervisorMsg::StartScheduler(Box::new(scheduler_args), reply),
            Some(Duration::from_secs(5)),
        )
        .await
        .context("starting the rollout scheduler")?
        .success_or(anyhow::anyhow!("supervisor did not start the rollout scheduler"))?;
    let approvals = ApprovalsHandle::new(store.clone(), releases.clone(), plans.clone());
    let state = AppState::new(Services {
        approvals,
        registry,
        releases,
        push,
        bus,
        announcer,
        shared,
        cache,
        pool,
        auth: Arc::new(Authenticator {
            admin_tokens: AdminTokens::from_entries(&settings.auth.admin_tokens),
            store: store.clone(),
            mapped: match &settings.auth.oidc {
                Some(oidc) => Some(
                    oidc.grants_by_group()
                        .context("reading auth.oidc.groups")?
                        .into_values()
                        .flatten()
                        .collect(),
                ),
                None => None,
            },
        }),
        sso: match &settings.auth.oidc {
            Some(oidc) => Some(Arc::new(
                Sso::new(oidc, store.clone()).context("setting up [auth.oidc]")?,
            )),
            None => None,
        },
        ofrep: ofrep.clone(),
        catalog: Arc::new(Catalog::new(
            store.clone(),
            Duration::from_millis(settings.ofrep.catalog_max_age_ms),
            settings.store.wait(),
        )),
        playground_open: settings.playground.open,
        tests_secret: settings.tests.secret.clone().into(),
        update_secret: settings.push.update_secret.clone().into(),
        reloader: Arc::new(reload::Reloader::new(settings.clone(), deliver)),
        reports,
        plans,
        scheduler,
        proxies: proxies(&settings.server)?,
        original_routes: settings.server.original_routes,
    });
    let admin_listen = settings.server.admin_address()?;
    let routers = http::routers(state.clone(), settings.server.max_body_bytes, admin_listen.is_some());
    let addr = listener.local_addr()?;
    let (stop_server, stopped) = watch::channel(false);
    let limits = connection_limits(&settings.server);
    let mut servers = vec![tokio::spawn(server::serve(
        listener,
        routers.public,
        limits.clone(),
        stopped.clone(),
    ))];
    let mut admin_addr = None;
    if let (Some(admin_listen), Some(router)) = (admin_listen, routers.admin) {
        let listener =
            listen(admin_listen).with_context(|| format!("listening on {admin_listen} (server.admin_listen)"))?;
        admin_addr = Some(listener.local_addr()?);
        servers.push(tokio::spawn(server::serve(listener, router, limits, stopped)));
    }
    tracing::info!(
        %addr,
        ?admin_addr,
        store = %crate::secrets::redact_url(&settings.store.url),
        redis = %crate::secrets::redact_url(&settings.redis.url),
        "vane listening"
    );
    Ok(App {
        addr,
        admin_addr,
        state,
        supervisor,
        supervisor_done,
        servers,
        stop_server,
        forwarder,
        upkeep,
        registry_upkeep,
        shutdown_grace: Duration::from_millis(settings.server.shutdown_grace_ms),
    })
}

impl App {
    /// Reads the settings file given here on every reload (SIGHUP or the
    /// admin route).
    pub fn set_settings_source(&self, path: PathBuf, required: bool) {
        self.state.reloader.set_source(path, required);
    }

    /// Reloads the settings source; see `reload::Reloader::reload`.
    pub fn reload(&self) -> Result<reload::ReloadPlan, reload::ReloadError> {
        self.state.reloader.reload()
    }

    /// Resolves when the actor tree has stopped by itself (it escalated).
    pub async fn supervisor_stopped(&mut self) {
        let _ = (&mut self.supervisor_done).await;
    }

    /// Stops accepting, lets in-flight requests finish (bounded), then stops
    /// the actors and their worker processes.
    pub async fn shutdown(self) {
        // Upgraded sockets are not the server's to wait for: close them so
        // their clients reconnect to another node.
        let _ = self.state.push.close_all();
        let _ = self.stop_server.send(true);
        if tokio::time::timeout(self.shutdown_grace, futures_util::future::join_all(self.servers))
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish in time");
        }
        // Jobs outlive their requests only if the requests gave up waiting.
        if !self.state.pool.drain(Duration::from_secs(5)).await {
            tracing::warn!("evaluations still running at shutdown");
        }
        self.forwarder.abort();
        self.upkeep.abort();
        self.registry_upkeep.abort();
        self.supervisor.stop(None);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.supervisor_done).await;
    }
}

/// Announces on this node each change the ChangeBus heard other nodes
/// made, each in a task of its own, so a slow store holds up neither the
/// bus nor other configs.
fn announce_arrivals(mut arrived: UnboundedReceiver<ChangeNotice>, announcer: Announcer) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(notice) = arrived.recv().await {
            let announcer = announcer.clone();
            tokio::spawn(async move { announcer.arrived(notice).await });
        }
    })
}

/// What a settings reload changes in the running services, section by
/// section. Runs before the new settings are taken as current, so a
/// service that refuses them leaves everything as it was.
fn deliver_reloads(
    pool: &EvaluatorPoolHandle,
    reports: &ReportsHandle,
    push: &PushHandle,
    ofrep: &Arc<LiveAccess>,
) -> reload::Deliver {
    let (pool, reports, push, ofrep) = (pool.clone(), reports.clone(), push.clone(), ofrep.clone());
    Box::new(move |plan, effective| {
        if plan.touches("sandbox.")
            && let Err(e) = pool.reconfigure(&effective.sandbox)
        {
            return Err(reload::ReloadError::NotTaken {
                service: crate::names::ActorName::EvaluatorPool.as_str(),
                source: Box::new(e),
            });
        }
        if plan.touches("reports.") {
            reports.set_rules(Rules::from_settings(&effective.reports));
        }
        if plan.touches("push.") {
            push.set_settings(&effective.push);
        }
        if plan.touches("ofrep.") {
            ofrep.set(&effective.ofrep);
        }
        Ok(())
    })
}

/// The health signals: the served record (shared through Redis when there
/// is one) and the reports judged against it.
fn start_reports(
    settings: &Settings,
    store: &Arc<dyn Store>,
    cache: &ConfigCacheHandle,
    releases: &ReleasesHandle,
    shared: Option<&Shared>,
) -> (ReportsHandle, JoinHandle<()>) {
    let served = Arc::new(ServedRecord::new(
        settings.reports.window_s,
        settings.reports.served_capacity,
    ));
    let interval = settings.reports.share_interval();
    let share = shared.map(|r| Arc::new(Share::new(r.clone(), served.clone(), interval)));
    let wiring = Wiring {
        store: store.clone(),
        cache: cache.clone(),
        releases: releases.clone(),
        served,
        share,
        prefixes: settings.reports.prefixes(),
    };
    let reports = ReportsHandle::new(wiring, Rules::from_settings(&settings.reports));
    let upkeep = reports.spawn_upkeep(interval);
    (reports, upkeep)
}

/// Whose forwarding headers are believed. A header set with no proxy
/// trusted is never read, which a deployment that relied on it must hear.
fn proxies(server: &crate::settings::Server) -> anyhow::Result<http::Proxies> {
    let header = match server.client_address_header.trim() {
        "" => None,
        name => Some(name.parse::<axum::http::HeaderName>().with_context(|| {
            format!("invalid setting `server.client_address_header`: `{name}` is not a header name")
        })?),
    };
    let trusted = server.trusted_proxy_ranges()?;
    if header.is_some() && trusted.is_empty() {
        tracing::warn!(
            header = %server.client_address_header,
            "server.client_address_header is set but server.trusted_proxies is empty: the header is \
             ignored and each client is its connection's peer; list your proxies' addresses"
        );
    }
    Ok(http::Proxies::new(header, trusted))
}

/// Connections waiting to be accepted. A change makes every subscribed
/// client fetch at once, many on new connections; with tokio's default of
/// 1024 the rest are dropped and their clients retry a second later. The
/// kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16_384;

/// What one client connection may take (`[server]`).
fn connection_limits(server: &crate::settings::Server) -> server::ConnectionLimits {
    server::ConnectionLimits {
        header: server.header_timeout(),
        body: server.body_timeout(),
        idle: server.idle_timeout(),
        max_connections: server.max_connections,
    }
}

/// The server's listening socket, with room for a change wave's connections.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Where generated secrets live: beside the SQLite file, or in the working
/// directory for PostgreSQL and MySQL.
fn secret_path(store_url: &str, file_name: &str) -> PathBuf {
    let dir = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && *path != ":memory:")
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join(file_name)
}

/// Reads a generated secret, or makes one (mode 0600) at first start, so an
/// unset secret never means "no secret".
fn generated_secret(store_url: &str, file_name: &str, what: &str) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = secret_path(store_url, file_name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            tracing::info!(path = %path.display(), "using the generated {what}");
            return Ok(token);
        }
    }
    let token = secrets::random_token();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing the {what} to {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    tracing::warn!(path = %path.display(), "no {what} configured: generated one");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lives_beside_the_database() {
        assert_eq!(
            secret_path("sqlite://data/vane.db", "vane-admin-token"),
            Path::new("data/vane-admin-token")
        );
        assert_eq!(
            secret_path("sqlite://vane.db?mode=rwc", "vane-admin-token"),
            Path::new("vane-admin-token")
        );
        assert_eq!(
            secret_path("postgres://h/db", "vane-admin-token"),
            Path::new("vane-admin-token")
        );
    }
}
