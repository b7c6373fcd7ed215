//! The one path a change takes once it is committed: this node's memory
//! first, then its subscribers, then, for a change made here, the other
//! nodes. Releases, plans and reports announce what they commit; the
//! ChangeBus hands over what other nodes committed (wired in `app.rs`), so
//! a change reaches subscribers the same way wherever it was made.

use crate::actors::CallError;
use crate::actors::change_bus::ChangeBusHandle;
use crate::actors::config_cache::ConfigCacheHandle;
use crate::actors::push::PushHandle;
use crate::domain::Config;
use crate::domain::change::ChangeNotice;
use crate::domain::model::now_millis;
use crate::shared::Shared;

/// Announces changes; cloneable, every clone the same announcer.
#[derive(Clone)]
pub struct Announcer {
    shared: Option<Shared>,
    cache: ConfigCacheHandle,
    push: PushHandle,
    bus: ChangeBusHandle,
}

impl Announcer {
    /// Over this node's memory, subscribers and link to the other nodes.
    pub fn new(shared: Option<Shared>, cache: ConfigCacheHandle, push: PushHandle, bus: ChangeBusHandle) -> Self {
        Self {
            shared,
            cache,
            push,
            bus,
        }
    }

    /// A change committed on this node. The shared copies go first, so no
    /// node reloads the old state; `code_id` names a version whose health
    /// changed.
    pub async fn committed(&self, config: &Config, code_id: Option<&str>) {
        if let Some(shared) = &self.shared {
            shared.forget(&config.id, code_id).await;
        }
        let notice = notice(config, false);
        self.show(&notice).await;
        self.bus.tell_others(notice);
    }

    /// A change another node committed, as the ChangeBus heard of it.
    pub async fn arrived(&self, notice: ChangeNotice) {
        self.show(&notice).await;
    }

    /// Tells every node's subscribers of `config` to fetch again, though
    /// nothing changed (the original's update route).
    pub fn nudge(&self, config: &Config) -> Result<(), CallError> {
        let notice = notice(config, true);
        self.bus.tell_others(notice.clone());
        self.push.notify(notice)
    }

    /// Memory serves the change before anyone is told of it, so a client
    /// told of it never fetches what it replaced from this node.
    async fn show(&self, notice: &ChangeNotice) {
        if let Err(error) = self.cache.refresh(&notice.config_id, notice.revision).await {
            tracing::warn!(config_id = notice.config_id, %error, "change committed but not yet served from memory");
        }
        if let Err(error) = self.push.notify(notice.clone()) {
            tracing::warn!(config_id = notice.config_id, %error, "change not delivered to subscribers");
        }
    }
}

/// Word of `config`'s revision as it stands now.
fn notice(config: &Config, manual: bool) -> ChangeNotice {
    ChangeNotice {
        config_id: config.id.clone(),
        revision: config.revision,
        update_time: now_millis() / 1000,
        manual,
    }
}
