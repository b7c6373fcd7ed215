//! Supervisor: the root of the actor tree. Spawns the ConfigCache, the
//! EvaluatorPool, the SubscriptionRegistry and the ChangeBus linked to
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
use super::config_cache::{ConfigCache, ConfigCacheHandle, ConfigCacheMsg, FreshSettings, Sources};
use super::evaluator::{self, LiveSettings, PoolMsg};
use super::names::ActorName;
use super::push::{NoticeFeed, RegistryMsg, SubscriptionRegistry};
use super::rollout::{Scheduler, SchedulerArgs, SchedulerMsg};
use crate::cache::RedisCache;
use crate::settings::Redis;

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
    GetSlots(RpcReplyPort<Slots>),
    /// Respawn a child whose backoff has passed.
    Restart(ActorName),
    /// Start the rollout Scheduler with these services; reply with its slot.
    StartScheduler(Box<SchedulerArgs>, RpcReplyPort<Slot<SchedulerMsg>>),
}

#[derive(Clone)]
/// Where each child can be reached; a slot's actor changes on restart.
pub struct Slots {
    /// Configs and versions in memory.
    pub config_cache: Slot<ConfigCacheMsg>,
    /// The sandbox workers.
    pub evaluator_pool: Slot<PoolMsg>,
    /// The WebSocket subscriptions.
    pub subscriptions: Slot<RegistryMsg>,
    /// Change notices between nodes.
    pub change_bus: Slot<BusMsg>,
}

/// What the Supervisor starts its children from, again after a crash.
pub struct SupervisorArgs {
    /// Where the ConfigCache loads from.
    pub sources: Arc<Sources>,
    /// The pool's settings (with counters that outlive pool restarts).
    pub pool: LiveSettings,
    /// Redis settings and cache, for the ChangeBus; `None` on a single node.
    pub bus: Option<(Redis, RedisCache)>,
    /// How often the ChangeBus polls the store while no bus carries changes.
    pub poll: Duration,
    /// How fetches wait on the store.
    pub fresh: FreshSettings,
    /// How long the children's handles wait for a reply.
    pub call_timeout: Duration,
    /// Where the registry passes every notice, whichever incarnation it is.
    pub feed: NoticeFeed,
}

/// The Supervisor's state: its arguments, the slots and recent restarts.
pub struct SupervisorState {
    args: SupervisorArgs,
    slots: Slots,
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
        let (registry, _) =
            Actor::spawn_linked(None, SubscriptionRegistry, args.feed.clone(), myself.get_cell()).await?;
        let (config_cache, subscriptions) = (Slot::new(cache), Slot::new(registry));
        let bus = spawn_bus(&args, &config_cache, &subscriptions, myself.get_cell()).await?;
        let slots = Slots {
            config_cache,
            evaluator_pool: Slot::new(pool),
            subscriptions,
            change_bus: Slot::new(bus),
        };
        Ok(SupervisorState {
            args,
            slots,
            scheduler: None,
            restarts: VecDeque::new(),
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let wait = Some(Duration::from_secs(5));
        if let Some((scheduler, _)) = &state.scheduler {
            let _ = scheduler.get().stop_and_wait(None, wait).await;
        }
        let _ = state.slots.change_bus.get().stop_and_wait(None, wait).await;
        let _ = state.slots.subscriptions.get().stop_and_wait(None, wait).await;
        let _ = state.slots.evaluator_pool.get().stop_and_wait(None, wait).await;
        let _ = state.slots.config_cache.get().stop_and_wait(None, wait).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::GetSlots(reply) => {
                let _ = reply.send(state.slots.clone());
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
        if self.slots.config_cache.get().get_id() == id {
            Some(ActorName::ConfigCache)
        } else if self.slots.evaluator_pool.get().get_id() == id {
            Some(ActorName::EvaluatorPool)
        } else if self.slots.subscriptions.get().get_id() == id {
            Some(ActorName::SubscriptionRegistry)
        } else if self.slots.change_bus.get().get_id() == id {
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
            ActorName::ConfigCache => self
                .slots
                .config_cache
                .set(spawn_cache(&self.args, myself.get_cell()).await?),
            ActorName::EvaluatorPool => self
                .slots
                .evaluator_pool
                .set(evaluator::spawn(&self.args.pool, myself.get_cell()).await?),
            ActorName::SubscriptionRegistry => {
                let (registry, _) =
                    Actor::spawn_linked(None, SubscriptionRegistry, self.args.feed.clone(), myself.get_cell()).await?;
                self.slots.subscriptions.set(registry)
            }
            ActorName::ChangeBus => {
                let (cache, registry) = (&self.slots.config_cache, &self.slots.subscriptions);
                let bus = spawn_bus(&self.args, cache, registry, myself.get_cell()).await?;
                self.slots.change_bus.set(bus);
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
    cache: &Slot<ConfigCacheMsg>,
    registry: &Slot<RegistryMsg>,
    supervisor: ActorCell,
) -> Result<ActorRef<BusMsg>, ActorProcessingErr> {
    let bus_args = BusArgs {
        redis: args.bus.clone(),
        poll: args.poll,
        store: args.sources.store.clone(),
        cache: ConfigCacheHandle::new(cache.clone(), &args.sources, args.call_timeout, args.fresh),
        registry: registry.clone(),
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
    use crate::actors::evaluator::PoolSettings;
    use crate::settings::Sandbox;
    use crate::store;

    async fn start() -> (
        ActorRef<SupervisorMsg>,
        ractor::concurrency::JoinHandle<()>,
        Slots,
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
                    redis: None,
                    published: Arc::default(),
                }),
                pool: PoolSettings::live(&sandbox, Arc::default()),
                bus: None,
                // No store poll while the clock is paused: a query on
                // SQLite's own thread would let the paused clock run ahead.
                poll: Duration::from_secs(3600),
                fresh: FreshSettings {
                    wait: Duration::from_millis(500),
                    read_gap: Duration::from_millis(1),
                },
                call_timeout: Duration::from_secs(1),
                feed: Default::default(),
            },
        )
        .await
        .unwrap();
        let slots = supervisor
            .call(SupervisorMsg::GetSlots, Some(Duration::from_secs(1)))
            .await
            .unwrap()
            .unwrap();
        // From here on only tokio timers run (the restart backoffs), so the
        // clock is paused and jumps to each timer as soon as all else waits.
        tokio::time::pause();
        (supervisor, done, slots, dir)
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
        let (supervisor, _done, slots, _dir) = start().await;
        let old = slots.config_cache.get();
        old.kill();
        assert!(replaced(&slots.config_cache, old.get_id()).await, "cache restarted");
        let old_pool = slots.evaluator_pool.get();
        old_pool.kill();
        for _ in 0..200 {
            if slots.evaluator_pool.get().get_id() != old_pool.get_id() && slots.evaluator_pool.is_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_ne!(slots.evaluator_pool.get().get_id(), old_pool.get_id(), "pool restarted");
        assert_eq!(supervisor.get_status(), ractor::ActorStatus::Running);
        supervisor.stop(None);
    }

    #[tokio::test]
    async fn too_many_failures_escalate() {
        let (_supervisor, done, slots, _dir) = start().await;
        for _ in 0..MAX_RESTARTS {
            let old = slots.config_cache.get();
            old.kill();
            assert!(replaced(&slots.config_cache, old.get_id()).await);
        }
        slots.config_cache.get().kill();
        // Stopping waits on the children, not on timers.
        tokio::time::resume();
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("supervisor stopped")
            .unwrap();
    }
}
