//! The service registry on one node: the leases this node holds (renewed
//! in memory, so a heartbeat writes nothing shared), the cluster's
//! membership as the store last said plus this node's own changes, and a
//! watch per followed service. Upkeep ends this node's expired leases every
//! 250 ms, reads the store when its registry revision or the set of live
//! nodes moved (every 500 ms), and says this node is alive every second.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::model::now_millis;
use crate::domain::registry::{Instance, Membership, Registration, instance_hash};
use crate::store::{Store, StoreError};

/// How often expired leases are ended.
const SWEEP: Duration = Duration::from_millis(250);
/// How often the store is asked whether other nodes changed anything.
const POLL: Duration = Duration::from_millis(500);
/// How often a node says it is alive, and for how long it counts as alive.
const ALIVE_EVERY: Duration = Duration::from_secs(1);
const ALIVE_FOR_MS: i64 = 3_000;
/// A node dead this long is forgotten, with its rows.
const FORGET_AFTER_MS: i64 = 60_000;

/// A lease this node holds.
#[derive(Debug, Clone)]
struct Lease {
    registration: Registration,
    registered_at: i64,
    expires_at: i64,
}

#[derive(Default)]
struct State {
    /// This node's leases, by (service, instance id).
    leases: HashMap<(String, String), Lease>,
    /// Every live instance in the cluster, by service and id.
    view: BTreeMap<String, BTreeMap<String, Instance>>,
    /// Each service's revision, kept as instances come and go (the XOR of
    /// their hashes), so a renewal costs no pass over a large service.
    revisions: HashMap<String, i64>,
    /// Followed services.
    watchers: HashMap<String, watch::Sender<Arc<Membership>>>,
    /// The store's registry revision and live nodes when last read.
    seen: Option<(i64, Vec<String>)>,
}

impl State {
    fn membership(&self, service: &str) -> Membership {
        let instances = self
            .view
            .get(service)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        Membership::of(service, instances)
    }

    fn revision(&self, service: &str) -> i64 {
        self.revisions.get(service).copied().unwrap_or(0)
    }

    /// Lists `instance` (replacing one of its id).
    fn put(&mut self, service: &str, instance: Instance) {
        let hash = instance_hash(service, &instance);
        let members = self.view.entry(service.to_owned()).or_default();
        let old = members.insert(instance.instance_id.clone(), instance);
        let old = old.map_or(0, |o| instance_hash(service, &o));
        *self.revisions.entry(service.to_owned()).or_default() ^= hash ^ old;
    }

    /// Unlists an instance; whether it was listed.
    fn remove(&mut self, service: &str, id: &str) -> bool {
        let Some(old) = self.view.get_mut(service).and_then(|m| m.remove(id)) else {
            return false;
        };
        *self.revisions.entry(service.to_owned()).or_default() ^= instance_hash(service, &old);
        if self.view.get(service).is_some_and(BTreeMap::is_empty) {
            self.view.remove(service);
            self.revisions.remove(service);
        }
        true
    }

    /// Tells followers of `service` if its members moved.
    fn tell(&self, service: &str) {
        let Some(sender) = self.watchers.get(service) else {
            return;
        };
        if sender.borrow().revision == self.revision(service) {
            return;
        }
        sender.send_replace(Arc::new(self.membership(service)));
    }
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The service's revision after it.
    pub revision: i64,
    /// When the lease ends unless renewed, unix ms.
    pub expires_at: i64,
}

/// The registry as callers reach it.
#[derive(Clone)]
pub struct RegistryHandle {
    store: Arc<dyn Store>,
    node: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl RegistryHandle {
    /// A registry over `store`, as the node named `node` (unique per process).
    pub fn new(store: Arc<dyn Store>, node: String) -> Self {
        Self {
            store,
            node: node.into(),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves maps that are still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers or renews an instance. A renewal of what this node already
    /// holds touches memory only; anything else is written to the store.
    pub async fn register(
        &self,
        service: &str,
        id: &str,
        registration: Registration,
    ) -> Result<Registered, StoreError> {
        let now = now_millis();
        let expires_at = now + i64::from(registration.ttl_s) * 1000;
        let key = (service.to_owned(), id.to_owned());
        let registered_at = {
            let mut state = self.state();
            let revision = state.revision(service);
            if let Some(lease) = state.leases.get_mut(&key)
                && lease.registration == registration
            {
                lease.expires_at = expires_at;
                if let Some(shown) = state.view.get_mut(service).and_then(|m| m.get_mut(id)) {
                    shown.expires_at = expires_at;
                }
                return Ok(Registered { revision, expires_at });
            }
            // Content unchanged but held elsewhere: it keeps its first time.
            let shown = state.view.get(service).and_then(|m| m.get(id));
            shown
                .filter(|s| {
                    s.address == registration.address && s.port == registration.port && s.meta == registration.meta
                })
                .map_or(now, |s| s.registered_at)
        };
        let instance = Instance {
            instance_id: id.to_owned(),
            address: registration.address.clone(),
            port: registration.port,
            meta: registration.meta.clone(),
            registered_at,
            expires_at,
        };
        self.store.put_instance(service, &instance, &self.node).await?;
        let mut state = self.state();
        state.leases.insert(
            key,
            Lease {
                registration,
                registered_at,
                expires_at,
            },
        );
        state.put(service, instance);
        state.tell(service);
        Ok(Registered {
            revision: state.revision(service),
            expires_at,
        })
    }

    /// Deregisters an instance at once, whichever node holds its lease;
    /// whether there was one.
    pub async fn deregister(&self, service: &str, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove_instance(service, id, None).await?;
        let mut state = self.state();
        let held = state.leases.remove(&(service.to_owned(), id.to_owned())).is_some();
        let shown = state.remove(service, id);
        state.tell(service);
        Ok(removed || held || shown)
    }

    /// Each service with live instances, and how many.
    pub fn services(&self) -> Vec<(String, usize)> {
        let state = self.state();
        state
            .view
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(name, m)| (name.clone(), m.len()))
            .collect()
    }

    /// A service's live instances now.
    pub fn membership(&self, service: &str) -> Membership {
        self.state().membership(service)
    }

    /// Follows a service: the receiver holds its membership now, and is
    /// marked changed whenever the members move (a burst of moves between
    /// two reads is one change: watches keep only the newest).
    pub fn follow(&self, service: &str) -> watch::Receiver<Arc<Membership>> {
        let mut state = self.state();
        let now = Arc::new(state.membership(service));
        let sender = state
            .watchers
            .entry(service.to_owned())
            .or_insert_with(|| watch::Sender::new(now));
        sender.subscribe()
    }

    /// Ends this node's leases that expired; the rows go from the store
    /// (only if this node still holds them: an agent may have moved on).
    async fn sweep(&self) {
        let now = now_millis();
        let expired: Vec<(String, String)> = {
            let state = self.state();
            state
                .leases
                .iter()
                .filter(|(_, l)| l.expires_at < now)
                .map(|(k, _)| k.clone())
                .collect()
        };
        for (service, id) in expired {
            let removed = match self.store.remove_instance(&service, &id, Some(&self.node)).await {
                Ok(removed) => removed,
                Err(e) => {
                    tracing::warn!(service, id, error = %e, "an expired instance stays listed until the store answers");
                    continue;
                }
            };
            let mut state = self.state();
            let key = (service.clone(), id.clone());
            if state.leases.get(&key).is_some_and(|l| l.expires_at < now) {
                state.leases.remove(&key);
                // Not removed: another node holds the lease now, and lists it.
                if removed {
                    state.remove(&service, &id);
                }
                state.tell(&service);
            }
        }
        // Followers that hung up.
        self.state().watchers.retain(|_, sender| sender.receiver_count() > 0);
    }

    /// Reads the store again when another node may have changed something.
    async fn poll(&self) -> Result<(), StoreError> {
        let now = now_millis();
        let revision = self.store.registry_revision().await?;
        let alive = self.store.alive_nodes(now).await?;
        let seen = Some((revision, alive));
        if self.state().seen == seen {
            return Ok(());
        }
        let rows = self.store.live_instances(now).await?;
        let mut state = self.state();
        let mut view: BTreeMap<String, BTreeMap<String, Instance>> = BTreeMap::new();
        let mut held = std::collections::HashSet::new();
        for row in rows {
            let mut instance = row.instance;
            let key = (row.service.clone(), instance.instance_id.clone());
            if let Some(lease) = state.leases.get(&key).filter(|_| *row.node == *self.node) {
                instance.expires_at = lease.expires_at;
                instance.registered_at = lease.registered_at;
                held.insert(key);
            }
            view.entry(row.service)
                .or_default()
                .insert(instance.instance_id.clone(), instance);
        }
        // Leases another node took over (or that are gone) are no longer
        // this node's: a heartbeat back here must write the row again, or
        // the other node would end it when its own lease runs out.
        state.leases.retain(|key, _| held.contains(key));
        let services: Vec<String> = state.view.keys().chain(view.keys()).cloned().collect();
        state.revisions = view
            .iter()
            .map(|(service, members)| {
                let revision = members.values().fold(0, |acc, i| acc ^ instance_hash(service, i));
                (service.clone(), revision)
            })
            .collect();
        state.view = view;
        state.seen = seen;
        for service in services {
            state.tell(&service);
        }
        Ok(())
    }

    /// Starts the upkeep; it runs until the handle's task is aborted.
    pub fn spawn_upkeep(&self) -> JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            // Alive first: the store lists only live nodes' instances.
            let now = now_millis();
            let _ = registry
                .store
                .node_alive(&registry.node, now + ALIVE_FOR_MS, now - FORGET_AFTER_MS)
                .await;
            let mut sweep = tokio::time::interval(SWEEP);
            let mut poll = tokio::time::interval(POLL);
            let mut alive = tokio::time::interval(ALIVE_EVERY);
            for timer in [&mut sweep, &mut poll, &mut alive] {
                timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            loop {
                tokio::select! {
                    _ = sweep.tick() => registry.sweep().await,
                    _ = poll.tick() => {
                        if let Err(e) = registry.poll().await {
                            tracing::warn!(error = %e, "service registry: the store did not answer; lists may lag");
                        }
                    }
                    _ = alive.tick() => {
                        let now = now_millis();
                        let said = registry.store.node_alive(&registry.node, now + ALIVE_FOR_MS, now - FORGET_AFTER_MS).await;
                        if let Err(e) = said {
                            tracing::warn!(error = %e, "service registry: could not say this node is alive");
                        }
                    }
                }
            }
        })
    }
}

impl crate::actors::push::ServiceFeed for RegistryHandle {
    fn follow(&self, service: &str) -> watch::Receiver<Arc<Membership>> {
        RegistryHandle::follow(self, service)
    }
}
