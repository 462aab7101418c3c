//! Which node runs each number (issue 14): several `convene serve` on one database share the numbers, each live number
//! run by one node at a time under a lease kept in the database. A node renews its leases well before they expire;
//! a node that dies stops renewing, and another takes its numbers once their leases have expired.
//!
//! A lease's `fence` grows by one each time the lease changes hands. A node that was paused past its lease's expiry
//! (a long GC pause, a frozen VM) finds on its next renewal that its fence is no longer the current one, and stops
//! the number instead of acting for it alongside the new owner.

use async_trait::async_trait;

use crate::store::DbResult;
use crate::{InstanceId, Timestamp};

/// One node's hold on one number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub instance: InstanceId,
    /// The node holding it (its id: unique per running process).
    pub node: String,
    /// 1 for the number's first lease, one more each time it changes hands.
    pub fence: i64,
    /// When this holder took it.
    pub acquired_at: Timestamp,
    /// Until when it holds without renewing.
    pub expires_at: Timestamp,
}

/// A node alive on the database, and where the others reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub node: String,
    /// The base URL of its API (`http://10.0.0.5:8080`).
    pub address: String,
    /// A tag of its sealing key (`SecretBox::tag`): the nodes on one database must have the same.
    pub key_tag: String,
    /// Where it runs (an id kept in its data directory): two processes alive under one id are one too many.
    pub home: String,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes `instance`'s lease for `node` until `until`, when nobody holds it or its holder's lease has expired at
    /// `now`: the new lease, its fence one past the last one. `None` while another node holds it. Every lease taken
    /// is also written to the number's history, in the same transaction.
    async fn take_lease(
        &self,
        instance: InstanceId,
        node: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> DbResult<Option<Lease>>;

    /// Extends `lease` to `until` while it is still the current one and has not expired at `now`; `false` when it
    /// was lost (expired, or taken by another node), and then the holder must stop acting for the number.
    async fn renew_lease(&self, lease: &Lease, now: Timestamp, until: Timestamp) -> DbResult<bool>;

    /// Gives `lease` up (it expires at `now`), so that another node may take the number at once. Nothing happens
    /// when it is no longer the current one.
    async fn release_lease(&self, lease: &Lease, now: Timestamp) -> DbResult<()>;

    /// Every number's current lease, expired ones included, by instance.
    async fn leases(&self) -> DbResult<Vec<Lease>>;

    /// Takes for `node`, until `until`, up to `limit` numbers that nobody holds at `now` (never taken, released or
    /// expired), lowest instance ids first, each with its history row: the leases taken. Nodes racing for the same
    /// numbers each get their own.
    async fn take_free_leases(&self, node: &str, now: Timestamp, until: Timestamp, limit: u32) -> DbResult<Vec<Lease>>;

    /// Extends every lease `node` still holds at `now` to `until`; the leases it holds after, by instance. A lease
    /// missing from them was lost (expired, or taken by another node).
    async fn renew_leases(&self, node: &str, now: Timestamp, until: Timestamp) -> DbResult<Vec<Lease>>;

    /// Records that `node` is alive until `until` (a heartbeat; the first one is its start), with its address and
    /// key tag; `false`, recording nothing, while a node under the same id in another `home` is alive.
    async fn node_alive(&self, node: &ClusterNode, now: Timestamp, until: Timestamp) -> DbResult<bool>;

    /// The nodes alive at `now`, by id.
    async fn live_nodes(&self, now: Timestamp) -> DbResult<Vec<ClusterNode>>;

    /// The node alive at `now` that holds `instance`'s lease then, if any.
    async fn lease_holder(&self, instance: InstanceId, now: Timestamp) -> DbResult<Option<ClusterNode>>;

    /// `node` stops: its leases expire at `now`, so that the nodes left take its numbers at once, and it no longer
    /// counts among the nodes alive.
    async fn leave_cluster(&self, node: &str, now: Timestamp) -> DbResult<()>;

    /// Every lease ever taken on `instance`, oldest first, as it was taken (`expires_at` its first expiry; a renewed
    /// lease lasted longer, until its holder's last renewal).
    async fn lease_history(&self, instance: InstanceId) -> DbResult<Vec<Lease>>;
}
