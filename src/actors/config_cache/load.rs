//! Loading a config and the versions its pointers name: from Redis when
//! allowed (the first load of a config), else from the store, refreshing
//! Redis on the way.

use std::sync::Arc;

use super::{Entry, Sources};
use crate::domain::Version;
use crate::store::StoreError;

/// `from_store` skips Redis, whose copy may be older than the store's.
pub(super) async fn load(
    sources: &Sources,
    config_id: &str,
    from_store: bool,
) -> Result<Option<Arc<Entry>>, StoreError> {
    let shared = sources.shared.as_ref().filter(|_| !from_store);
    let cached = match shared {
        Some(redis) => redis.config(config_id).await,
        None => None,
    };
    let config = match cached {
        Some(config) => config,
        None => {
            let Some(config) = sources.store.get_config(config_id).await? else {
                return Ok(None);
            };
            if let Some(redis) = &sources.shared {
                redis.put_config(&config).await;
            }
            config
        }
    };
    let release = match &config.release {
        Some(r) => version(sources, &r.code_id, from_store).await?,
        None => None,
    };
    let gray = match &config.gray {
        Some(g) => version(sources, &g.code_id, from_store).await?,
        None => None,
    };
    Ok(Some(Arc::new(Entry { config, release, gray })))
}

async fn version(sources: &Sources, code_id: &str, from_store: bool) -> Result<Option<Arc<Version>>, StoreError> {
    if let Some(redis) = sources.shared.as_ref().filter(|_| !from_store)
        && let Some(version) = redis.version(code_id).await
    {
        return Ok(Some(Arc::new(version)));
    }
    let version = sources.store.get_version(code_id).await?;
    if let (Some(redis), Some(version)) = (&sources.shared, &version) {
        redis.put_version(version).await;
    }
    Ok(version.map(Arc::new))
}
