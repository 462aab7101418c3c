//! The port through which a connector keeps, in Convene's own database, what it holds for each of its instances
//! beside Convene's records: a WhatsApp Web device's identity, its Signal sessions and pre-keys, app-state keys. Kept
//! there, they are backed up with the database and any node that takes a number over reads them, without pairing the
//! phone again.
//!
//! Rows are `(instance, space, scope, key) → value`: the connector names its spaces (`session`, `prekey`, …), a
//! scope groups rows it deletes together (a collection's MACs; `""` when it has none), and `number` is what it orders
//! or expires rows by (0 when it has none). Values arrive sealed (`SecretBox`): the store never sees them in clear.

use async_trait::async_trait;

use crate::InstanceId;
use crate::store::DbResult;

/// One kept row of an instance's space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyRow {
    pub scope: String,
    pub key: String,
    /// Sealed by the connector.
    pub value: String,
    pub number: i64,
}

/// One change in a `write_device_keys` transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKeyWrite {
    /// Inserts the row, or replaces its value and number.
    Put { space: &'static str, scope: String, key: String, value: String, number: i64 },
    /// Sets an existing row's number; inserts nothing when the row is gone.
    Renumber { space: &'static str, scope: String, key: String, number: i64 },
    /// Deletes the space's rows under `scope` with `key`; `None` matches any (no scope and no key: the whole space).
    Delete { space: &'static str, scope: Option<String>, key: Option<String> },
}

#[async_trait]
pub trait DeviceKeyStore: Send + Sync {
    /// One row, or `None`.
    async fn device_key(
        &self,
        instance: InstanceId,
        space: &str,
        scope: &str,
        key: &str,
    ) -> DbResult<Option<DeviceKeyRow>>;

    /// Every row of a space, or of one scope of it, in key order.
    async fn device_keys(&self, instance: InstanceId, space: &str, scope: Option<&str>) -> DbResult<Vec<DeviceKeyRow>>;

    /// Applies `writes` in order, in one transaction: all of them or none survive a crash.
    async fn write_device_keys(&self, instance: InstanceId, writes: Vec<DeviceKeyWrite>) -> DbResult<()>;

    /// Deletes the space's rows whose number is from 1 to `last`; how many there were.
    async fn delete_device_keys_numbered_up_to(&self, instance: InstanceId, space: &str, last: i64) -> DbResult<u64>;

    /// Deletes every row the instance has, in every space.
    async fn forget_device_keys(&self, instance: InstanceId) -> DbResult<()>;
}
