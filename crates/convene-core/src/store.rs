//! The store port: the gateway's own durable records. Implemented for SQLite (and later PostgreSQL) in
//! `convene-store`; the network's own state is not here.

use async_trait::async_trait;
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::connector::ConnectorKind;
use crate::group::GroupSettings;
use crate::ids::{GroupId, GroupJid, InstanceId};
use crate::phone::PhoneNumber;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,
    #[error("conflicts with an existing record")]
    Conflict,
    #[error("database error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type DbResult<T> = Result<T, DbError>;

/// An account API key. Only the SHA-256 of the secret is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to tell keys apart in listings.
    pub prefix: String,
    pub secret_hash: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    pub id: InstanceId,
    pub kind: ConnectorKind,
    pub name: String,
    pub phone: Option<PhoneNumber>,
    /// SHA-256 of the instance token (Green API `apiTokenInstance`, Z-API token, Wawp `access_token`).
    pub token_hash: String,
    pub created_at: Timestamp,
}

/// A group as one instance knows it: our id, the network's JID and the last metadata we saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: GroupId,
    pub instance_id: InstanceId,
    pub jid: GroupJid,
    pub subject: String,
    pub description: Option<String>,
    pub settings: GroupSettings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when the instance left the group; the record stays for history.
    pub left_at: Option<Timestamp>,
}

/// A page of groups in creation order, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPage {
    pub groups: Vec<GroupRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupListQuery {
    pub instance_id: Option<InstanceId>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> DbResult<()>;
    async fn find_api_key(&self, secret_hash: &str) -> DbResult<Option<ApiKeyRecord>>;
    async fn count_api_keys(&self) -> DbResult<u64>;

    /// Fails with `Conflict` when the id is taken.
    async fn insert_instance(&self, instance: &InstanceRecord) -> DbResult<()>;
    async fn get_instance(&self, id: InstanceId) -> DbResult<InstanceRecord>;
    async fn list_instances(&self) -> DbResult<Vec<InstanceRecord>>;
    /// Deletes the instance and its group records.
    async fn delete_instance(&self, id: InstanceId) -> DbResult<()>;

    /// Fails with `Conflict` when the instance already has a record for this JID.
    async fn insert_group(&self, group: &GroupRecord) -> DbResult<()>;
    async fn get_group(&self, id: GroupId) -> DbResult<GroupRecord>;
    /// The records for `jid`, one per instance that knows it, optionally for one instance only.
    async fn find_groups_by_jid(&self, jid: &GroupJid, instance_id: Option<InstanceId>) -> DbResult<Vec<GroupRecord>>;
    async fn list_groups(&self, query: &GroupListQuery) -> DbResult<GroupPage>;
    /// Replaces subject, description, settings, updated_at and left_at.
    async fn update_group(&self, group: &GroupRecord) -> DbResult<()>;
}
