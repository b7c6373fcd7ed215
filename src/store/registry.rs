//! The service registry's shared part: which instances each service has and
//! which node holds each lease. A renewal writes nothing here (leases live in
//! the holding node's memory); a row is written when an instance comes,
//! changes or moves to another node, and deleted when it goes.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::StoreError;
use super::dialect::sql;
use super::rows::corrupt;
use super::sql::SqlStore;
use crate::domain::registry::Instance;

/// An instance as stored, with its service and the node holding its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInstance {
    /// Its service.
    pub service: String,
    /// The instance.
    pub instance: Instance,
    /// The node whose memory holds its lease.
    pub node: String,
}

/// The registry's rows.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Writes an instance held by `node` (new, changed, or moved to it).
    async fn put_instance(&self, service: &str, instance: &Instance, node: &str) -> Result<(), StoreError>;
    /// Deletes an instance, only if `node` holds it when one is given;
    /// whether one was deleted.
    async fn remove_instance(&self, service: &str, instance_id: &str, node: Option<&str>) -> Result<bool, StoreError>;
    /// Moves with every put and remove.
    async fn registry_revision(&self) -> Result<i64, StoreError>;
    /// Says `node` is alive until `until` (unix ms), and forgets nodes dead
    /// before `forget_before` with their instances.
    async fn node_alive(&self, node: &str, until: i64, forget_before: i64) -> Result<(), StoreError>;
    /// The nodes alive at `now`, sorted.
    async fn alive_nodes(&self, now: i64) -> Result<Vec<String>, StoreError>;
    /// Every instance whose node is alive at `now`.
    async fn live_instances(&self, now: i64) -> Result<Vec<StoredInstance>, StoreError>;
}

fn instance_from_row(row: &AnyRow) -> Result<StoredInstance, StoreError> {
    let meta: String = row.try_get("meta")?;
    let port: i64 = row.try_get("port")?;
    Ok(StoredInstance {
        service: row.try_get("service")?,
        node: row.try_get("node")?,
        instance: Instance {
            instance_id: row.try_get("instance_id")?,
            address: row.try_get("address")?,
            port: u16::try_from(port).map_err(|_| corrupt("instance port", &port.to_string()))?,
            meta: serde_json::from_str(&meta).map_err(|e| corrupt("instance meta", &e.to_string()))?,
            registered_at: row.try_get("registered_at")?,
            expires_at: row.try_get("expires_at")?,
        },
    })
}

#[async_trait]
impl Registry for SqlStore {
    async fn put_instance(&self, service: &str, instance: &Instance, node: &str) -> Result<(), StoreError> {
        let meta = serde_json::to_string(&instance.meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql!(
            self.dialect,
            "DELETE FROM service_instances WHERE service = $1 AND instance_id = $2"
        ))
        .bind(service)
        .bind(&instance.instance_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql!(
            self.dialect,
            "INSERT INTO service_instances (service, instance_id, address, port, meta, node, registered_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(service)
        .bind(&instance.instance_id)
        .bind(&instance.address)
        .bind(i64::from(instance.port))
        .bind(meta)
        .bind(node)
        .bind(instance.registered_at)
        .bind(instance.expires_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE registry_state SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_instance(&self, service: &str, instance_id: &str, node: Option<&str>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = match node {
            Some(node) => {
                sqlx::query(sql!(
                    self.dialect,
                    "DELETE FROM service_instances WHERE service = $1 AND instance_id = $2 AND node = $3"
                ))
                .bind(service)
                .bind(instance_id)
                .bind(node)
                .execute(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(sql!(
                    self.dialect,
                    "DELETE FROM service_instances WHERE service = $1 AND instance_id = $2"
                ))
                .bind(service)
                .bind(instance_id)
                .execute(&mut *tx)
                .await?
            }
        };
        let removed = done.rows_affected() > 0;
        if removed {
            sqlx::query("UPDATE registry_state SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn registry_revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT revision FROM registry_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("revision")?)
    }

    async fn node_alive(&self, node: &str, until: i64, forget_before: i64) -> Result<(), StoreError> {
        let updated = sqlx::query(sql!(
            self.dialect,
            "UPDATE registry_nodes SET alive_until = $1 WHERE node = $2"
        ))
        .bind(until)
        .bind(node)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(sql!(
                self.dialect,
                "INSERT INTO registry_nodes (node, alive_until) VALUES ($1, $2)"
            ))
            .bind(node)
            .bind(until)
            .execute(&self.pool)
            .await?;
        }
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query(sql!(
            self.dialect,
            "DELETE FROM service_instances WHERE node IN (SELECT node FROM registry_nodes WHERE alive_until < $1)"
        ))
        .bind(forget_before)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql!(self.dialect, "DELETE FROM registry_nodes WHERE alive_until < $1"))
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() > 0 {
            sqlx::query("UPDATE registry_state SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alive_nodes(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sql!(
            self.dialect,
            "SELECT node FROM registry_nodes WHERE alive_until >= $1 ORDER BY node"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("node")?)).collect()
    }

    async fn live_instances(&self, now: i64) -> Result<Vec<StoredInstance>, StoreError> {
        let rows = sqlx::query(sql!(
            self.dialect,
            "SELECT i.service, i.instance_id, i.address, i.port, i.meta, i.node, i.registered_at, i.expires_at \
             FROM service_instances i JOIN registry_nodes n ON n.node = i.node WHERE n.alive_until >= $1"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(instance_from_row).collect()
    }
}
