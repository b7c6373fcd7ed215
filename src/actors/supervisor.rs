//! Supervisor: the root of the actor tree. Spawns the ConfigCache, the
//! EvaluatorPool, the PushRegistry and the ChangeBus linked to
//! itself, and the rollout Scheduler when the app hands it the services it
//! needs (they are built on the other children's handles); restarts a
//! failed child after a backoff,
//! and stops (escalates) when children fail too often, so the process exits
//! non-zero and its service manager restarts it.
//!
//! Nothing supervises the Supervisor: its end is the app's end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::Slot;
use super::change_bus::{BusArgs, BusMsg, ChangeBus};
use super::config_cache::{ConfigCache, ConfigCacheHandle, ConfigCacheMsg, Sources, StoreWait};
use super::evaluator::{self, PoolMsg, PoolShared};
use super::push::{NoticeFeed, PushMsg, PushRegistry};
use super::scheduler::{Scheduler, SchedulerArgs, SchedulerMsg};
use crate::domain::change::ChangeNotice;
use crate::names::ActorName;
use crate::settings::Redis;
use crate::shared::Shared;

/// Restarts allowed within `RESTART_WINDOW` before escalating.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The reason the Supervisor stops with when it escalates.
const ESCALATED: &str = "escalated: children failed too often";

/// What the Supervisor handles.
pub enum SupervisorMsg {
    /// Reply with where the children can be reached.
    GetChildren(RpcReplyPort<Children>),
    /// Respawn a child whose backoff has passed.
    Restart(ActorName),
    /// Start the rollout Scheduler with these services; reply with its slot.
    StartScheduler(Box<SchedulerArgs>, RpcReplyPort<Slot<SchedulerMsg>>),
}

#[derive(Clone)]
/// Where each child can be reached; a slot's actor changes on restart.
pub struct Children {
    /// Configs and versions in memory, behind the one handle every caller shares.
    pub cache: ConfigCacheHandle,
    /// The sandbox workers.
    pub pool: Slot<PoolMsg>,
    /// The push registry: WebSocket subscribers.
    pub push: Slot<PushMsg>,
    /// Change notices between nodes.
    pub bus: Slot<BusMsg>,
}

/// What the Supervisor starts its children from, again after a crash.
pub struct SupervisorArgs {
    /// Where the ConfigCache loads from.
    pub sources: Arc<Sources>,
    /// The pool's settings and counters, which outlive pool restarts.
    pub pool: PoolShared,
    /// Redis settings and shared copies, for the ChangeBus; `None` on a single node.
    pub bus: Option<(Redis, Shared)>,
    /// How often the ChangeBus polls the store while no bus carries changes.
    pub poll: Duration,
    /// How fetches wait on the store.
    pub store_wait: StoreWait,
    /// How long the children's handles wait for a reply.
    pub call_timeout: Duration,
    /// Where the registry passes every notice, whichever incarnation it is.
    pub feed: NoticeFeed,
    /// Where the ChangeBus hands changes other nodes made.
    pub arrivals: tokio::sync::mpsc::UnboundedSender<ChangeNotice>,
}

/// The Supervisor's state: its arguments, its children and recent restarts.
pub struct SupervisorState {
    args: SupervisorArgs,
    children: Children,
    /// The ConfigCache's slot, which `children.cache` reads through.
    cache: Slot<ConfigCacheMsg>,
    /// The Scheduler, once started, and what it is restarted with.
    scheduler: Option<(Slot<SchedulerMsg>, SchedulerArgs)>,
    restarts: VecDeque<Instant>,
}

/// Starts the long-lived actors and restarts them with backoff when they fail.
pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cache = spawn_cache(&args, myself.get_cell()).await?;
        let pool = evaluator::spawn(&args.pool, myself.get_cell()).await?;
        let (registry, _) = Actor::spawn_linked(None, PushRegistry, args.feed.clone(), myself.get_cell()).await?;
        let cache = Slot::new(cache);
        let handle = ConfigCacheHandle::new(cache.clone(), &args.sources, args.call_timeout, args.store_wait);
        let bus = spawn_bus(&args, &handle, myself.get_cell()).await?;
        let children = Children {
            cache: handle,
            pool: Slot::new(pool),
            push: Slot::new(registry),
            bus: Slot::new(bus),
        };
        Ok(SupervisorState {
            args,
            children,
            cache,
            scheduler: None,
            restarts: VecDeque::new(),
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let wait = Some(Duration::from_secs(5));
        if let Some((scheduler, _)) = &state.scheduler {
            let _ = scheduler.get().stop_and_wait(None, wait).await;
        }
        let _ = state.children.bus.get().stop_and_wait(None, wait).await;
        let _ = state.children.push.get().stop_and_wait(None, wait).await;
        let _ = state.children.pool.get().stop_and_wait(None, wait).await;
        let _ = state.cache.get().stop_and_wait(None, wait).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::GetChildren(reply) => {
                let _ = reply.send(state.children.clone());
            }
            SupervisorMsg::Restart(child) => state.restart(&myself, child).await?,
            SupervisorMsg::StartScheduler(args, reply) => {
                let (scheduler, _) = Actor::spawn_linked(None, Scheduler, (*args).clone(), myself.get_cell()).await?;
                let slot = Slot::new(scheduler);
                state.scheduler = Some((slot.clone(), *args));
                let _ = reply.send(slot);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.clone().unwrap_or_default()),
            _ => return Ok(()),
        };
        let Some(child) = state.child_of(cell) else {
            return Ok(());
        };
        tracing::error!(?child, reason = %why, "child actor stopped");
        state.schedule_restart(&myself, child);
        Ok(())
    }
}

impl SupervisorState {
    fn child_of(&self, cell: &ActorCell) -> Option<ActorName> {
        let id = cell.get_id();
        if self.cache.get().get_id() == id {
            Some(ActorName::ConfigCache)
        } else if self.children.pool.get().get_id() == id {
            Some(ActorName::EvaluatorPool)
        } else if self.children.push.get().get_id() == id {
            Some(ActorName::PushRegistry)
        } else if self.children.bus.get().get_id() == id {
            Some(ActorName::ChangeBus)
        } else if self.scheduler.as_ref().is_some_and(|(s, _)| s.get().get_id() == id) {
            Some(ActorName::Scheduler)
        } else {
            None
        }
    }

    fn schedule_restart(&mut self, myself: &ActorRef<SupervisorMsg>, child: ActorName) {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= MAX_RESTARTS {
            tracing::error!(?child, restarts = self.restarts.len(), "too many restarts, escalating");
            myself.stop(Some(ESCALATED.into()));
            return;
        }
        let backoff = (FIRST_BACKOFF * 2u32.pow(self.restarts.len() as u32)).min(MAX_BACKOFF);
        self.restarts.push_back(now);
        tracing::warn!(?child, ?backoff, "restarting child");
        myself.send_after(backoff, move || SupervisorMsg::Restart(child));
    }

    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, child: ActorName) -> Result<(), ActorProcessingErr> {
        match child {
            ActorName::ConfigCache => self.cache.set(spawn_cache(&self.args, myself.get_cell()).await?),
            ActorName::EvaluatorPool => self
                .children
                .pool
                .set(evaluator::spawn(&self.args.pool, myself.get_cell()).await?),
            ActorName::PushRegistry => {
                let (registry, _) =
                    Actor::spawn_linked(None, PushRegistry, self.args.feed.clone(), myself.get_cell()).await?;
                self.children.push.set(registry)
            }
            ActorName::ChangeBus => {
                let bus = spawn_bus(&self.args, &self.children.cache, myself.get_cell()).await?;
                self.children.bus.set(bus);
            }
            ActorName::Scheduler => {
                let Some((slot, args)) = &self.scheduler else {
                    return Ok(());
                };
                let (scheduler, _) = Actor::spawn_linked(None, Scheduler, args.clone(), myself.get_cell()).await?;
                slot.set(scheduler);
            }
        }
        tracing::info!(?child, "child restarted");
        crate::metrics::restarted(child);
        Ok(())
    }
}

async fn spawn_bus(
    args: &SupervisorArgs,
    cache: &ConfigCacheHandle,
    supervisor: ActorCell,
) -> Result<ActorRef<BusMsg>, ActorProcessingErr> {
    let bus_args = BusArgs {
        redis: args.bus.clone(),
        poll: args.poll,
        store: args.sources.store.clone(),
        cache: cache.clone(),
        arrivals: args.arrivals.clone(),
    };
    let (bus, _) = Actor::spawn_linked(None, ChangeBus, bus_args, supervisor).await?;
    Ok(bus)
}

async fn spawn_cache(
    args: &SupervisorArgs,
    supervisor: ActorCell,
) -> Result<ActorRef<ConfigCacheMsg>, ActorProcessingErr> {
    let (cache, _) = Actor::spawn_linked(None, ConfigCache, args.sources.clone(), supervisor).await?;
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Sandbox;
    use crate::store;

    async fn start() -> (
        ActorRef<SupervisorMsg>,
        ractor::concurrency::JoinHandle<()>,
        Children,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()), 1)
            .await
            .unwrap();
        // No real worker processes: these tests are about the actors.
        let sandbox = Sandbox {
            workers: 1,
            worker_exe: "/nonexistent/vane".into(),
            ..Sandbox::default()
        };
        let (supervisor, done) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                sources: Arc::new(Sources {
                    store,
                    shared: None,
                    ready: Arc::default(),
                }),
                pool: PoolShared::new(&sandbox),
                bus: None,
                // No store poll while the clock is paused: a query on
                // SQLite's own thread would let the paused clock run ahead.
                poll: Duration::from_secs(3600),
                store_wait: StoreWait {
                    wait: Duration::from_millis(500),
                    read_gap: Duration::from_millis(1),
                },
                call_timeout: Duration::from_secs(1),
                feed: Default::default(),
                arrivals: tokio::sync::mpsc::unbounded_channel().0,
            },
        )
        .await
        .unwrap();
        let children = supervisor
            .call(SupervisorMsg::GetChildren, Some(Duration::from_secs(1)))
            .await
            .unwrap()
            .unwrap();
        // From here on only tokio timers run (the restart backoffs), so the
        // clock is paused and jumps to each timer as soon as all else waits.
        tokio::time::pause();
        (supervisor, done, children, dir)
    }

    async fn replaced(slot: &Slot<ConfigCacheMsg>, old: ractor::ActorId) -> bool {
        for _ in 0..200 {
            if slot.get().get_id() != old && slot.is_alive() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_failed_child_is_restarted() {
        let (supervisor, _done, children, _dir) = start().await;
        let old = children.cache.slot().get();
        old.kill();
        assert!(replaced(children.cache.slot(), old.get_id()).await, "cache restarted");
        let old_pool = children.pool.get();
        old_pool.kill();
        for _ in 0..200 {
            if children.pool.get().get_id() != old_pool.get_id() && children.pool.is_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_ne!(children.pool.get().get_id(), old_pool.get_id(), "pool restarted");
        assert_eq!(supervisor.get_status(), ractor::ActorStatus::Running);
        supervisor.stop(None);
    }

    #[tokio::test]
    async fn too_many_failures_escalate() {
        let (_supervisor, done, children, _dir) = start().await;
        for _ in 0..MAX_RESTARTS {
            let old = children.cache.slot().get();
            old.kill();
            assert!(replaced(children.cache.slot(), old.get_id()).await);
        }
        children.cache.slot().get().kill();
        // Stopping waits on the children, not on timers.
        tokio::time::resume();
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("supervisor stopped")
            .unwrap();
    }
}
