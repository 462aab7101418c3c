//! Which numbers this node runs (issue 14). Alone (SQLite, where the file's lock makes it the only node): all of
//! them. Leased (PostgreSQL): those it holds a lease on, in the database. Every fifth of the lease's length a node
//! says it is alive, renews its leases in one statement, takes free numbers up to its fair share (the numbers over
//! the nodes alive, rounded up) and gives up what it holds beyond it, so that a node joining gets its share and a
//! node dying has its numbers taken by the others once its leases expire.
//!
//! A number's connection is open on the node holding its lease and nowhere else: opened when the lease is taken,
//! closed when it is lost or given up. A node that was paused past its leases' end (a frozen VM) does not act for a
//! number on waking: its hold is checked against this process's monotonic clock before every use of a connection,
//! and its next renewal finds the lease gone and closes the connection.
//!
//! Lease times are wall-clock times shared by every node (their clocks must agree to well under a lease's length,
//! as NTP keeps them); they are not the service's clock, which tests and simulations move at will.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::store::InstanceRecord;
use convene_core::{Clock, ClusterNode, InstanceId, Lease, SystemClock};
use tokio_util::sync::CancellationToken;

use super::Instances;
use crate::error::{ApiError, Result};

/// Where a node stands among the nodes on its database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The only node (SQLite): it runs every number.
    Alone,
    /// One of the nodes on a PostgreSQL database, under the id `node`: it runs the numbers it holds a lease on, and
    /// calls the others with `token` for theirs.
    Leased { node: String, lease_ttl: Duration, token: NodeToken, key_tag: String, home: String },
}

/// The secret the nodes on one database share (derived from the sealing key), kept out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeToken(pub String);

impl std::fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeToken(…)")
    }
}

/// The most numbers one round gives up: each closes its connection first, and a round that took long would renew
/// the leases it keeps late.
const GIVEN_UP_PER_ROUND: usize = 8;

/// A lease this node holds, and until when this process may act on it by its own monotonic clock.
#[derive(Clone, Debug)]
pub(super) struct Hold {
    lease: Lease,
    usable_until: Instant,
}

/// The leases this node holds, by instance.
pub(super) type Holds = Arc<std::sync::Mutex<HashMap<InstanceId, Hold>>>;

impl Instances {
    /// Whether this node runs `id` now: always when alone; when leased, while it holds the number's lease.
    pub fn runs_here(&self, id: InstanceId) -> bool {
        match &self.placement {
            Placement::Alone => true,
            Placement::Leased { .. } => {
                let holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                holds.get(&id).is_some_and(|hold| hold.usable_until > Instant::now())
            }
        }
    }

    /// The node's id among the nodes on its database, when it shares it.
    pub fn node(&self) -> Option<&str> {
        match &self.placement {
            Placement::Alone => None,
            Placement::Leased { node, .. } => Some(node),
        }
    }

    /// Where the other nodes reach this one (its API's base URL), told the others from the next round on.
    pub fn advertise(&self, address: String) {
        *self.advertised.write().unwrap_or_else(std::sync::PoisonError::into_inner) = address;
    }

    /// Opens the connections of the numbers this node runs: every one when alone; when leased, those it takes in
    /// its first round.
    pub(super) async fn open_connections(&self) -> Result<()> {
        match &self.placement {
            Placement::Alone => {
                let instances = self.store.list_instances().await?;
                self.open_all(&instances).await;
                Ok(())
            }
            Placement::Leased { .. } => self.keep_leases_once().await,
        }
    }

    /// Keeps the node's leases until `shutdown`, one round every fifth of their length. A round that fails is
    /// logged and tried again at the next; a lease that could not be renewed in time is closed by the round that
    /// finds it gone.
    pub async fn keep_leases(&self, shutdown: CancellationToken) {
        let Placement::Leased { node, lease_ttl, .. } = &self.placement else { return };
        let every = *lease_ttl / 5;
        // At once first: the other nodes learn where this one is as soon as it serves.
        loop {
            // Bounded: a database that hangs rather than refuses must not keep the holds below from ending.
            match tokio::time::timeout(*lease_ttl / 2, self.keep_leases_once()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(node = %node, error = ?e, "could not keep the node's leases this round"),
                Err(_) => tracing::warn!(node = %node, "a round of the node's leases took too long and was cut short"),
            }
            // Whatever the round did: a hold whose time is up here closes, even while the database cannot be reached
            // (another node may be taking the number).
            self.close_expired_holds().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One round: alive, renew, drop what was lost or deleted, take up to the fair share, give up the surplus.
    async fn keep_leases_once(&self) -> Result<()> {
        let Placement::Leased { node, lease_ttl, key_tag, home, .. } = &self.placement else { return Ok(()) };
        let (node, lease_ttl) = (node.as_str(), *lease_ttl);
        // One round, creation or deletion at a time: each reads the leases and changes them after.
        let _turn = self.leasing.lock().await;
        let started = Instant::now();
        let now = SystemClock.now();
        let until = now.plus(lease_ttl);
        let alive = ClusterNode {
            node: node.to_owned(),
            address: self.advertised.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            key_tag: key_tag.clone(),
            home: home.clone(),
        };
        let live_nodes = self.store.live_nodes(now).await?;
        if let Some(other) = live_nodes.iter().find(|n| n.key_tag != alive.key_tag) {
            return Err(ApiError::Conflict(format!(
                "node {} on this database has another sealing key than this node: every node must have the same \
                 webhooks.secret_key (docs/deployment.md)",
                other.node
            )));
        }
        if !self.store.node_alive(&alive, now, until).await? {
            return Err(ApiError::Conflict(format!(
                "another process runs as node {node} elsewhere than here ({home}): give each node a data directory of \
                 its own, and cluster.node_id only where it is unique (docs/deployment.md)"
            )));
        }
        let renewed = self.store.renew_leases(node, now, until).await?;
        let usable_until = started + lease_ttl;
        let renewed: HashMap<InstanceId, Lease> = renewed.into_iter().map(|lease| (lease.instance, lease)).collect();
        let instances = self.store.list_instances().await?;
        let existing: HashSet<InstanceId> = instances.iter().map(|i| i.id).collect();

        // What was lost (expired or taken, or still held under an older fence) closes; what is held again after a
        // restart under the same id (its leases outlived the process) opens.
        let (lost, adopted) = {
            let mut holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let lost: Vec<InstanceId> = holds
                .iter()
                .filter(|(id, hold)| renewed.get(id).is_none_or(|lease| lease.fence != hold.lease.fence))
                .map(|(id, _)| *id)
                .collect();
            for id in &lost {
                holds.remove(id);
            }
            let mut adopted = HashSet::new();
            for (id, lease) in &renewed {
                match holds.get_mut(id) {
                    Some(hold) => *hold = Hold { lease: lease.clone(), usable_until },
                    None if existing.contains(id) => {
                        holds.insert(*id, Hold { lease: lease.clone(), usable_until });
                        adopted.insert(*id);
                    }
                    None => {}
                }
            }
            (lost, adopted)
        };
        for id in &lost {
            if existing.contains(id) {
                tracing::warn!(node = %node, instance = %id, "lost the number's lease: its connection closes here");
                self.close_connection(*id).await;
            } else {
                // Deleted (its lease went with it): forgotten, not only closed (a real number unlinks).
                self.forget_connection(*id).await;
            }
        }
        // Held and not open: adopted after a restart, or left so by a round cut short.
        let unopened: Vec<InstanceRecord> = {
            let holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            instances
                .iter()
                .filter(|i| adopted.contains(&i.id) || (holds.contains_key(&i.id) && !self.has_connection(i.id)))
                .cloned()
                .collect()
        };
        self.open_all(&unopened).await;

        // Numbers deleted meanwhile (on any node) are given up.
        let deleted: Vec<Lease> = {
            let mut holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let gone: Vec<InstanceId> = holds.keys().filter(|id| !existing.contains(id)).copied().collect();
            gone.iter().filter_map(|id| holds.remove(id)).map(|hold| hold.lease).collect()
        };
        for lease in deleted {
            // Deleted for certain: forgotten, not only closed (a real number unlinks and its keys go).
            self.forget_connection(lease.instance).await;
            self.store.release_lease(&lease, SystemClock.now()).await?;
        }

        // The nodes alive as read at the round's start, this one counted once (its first round finds itself absent).
        let live = live_nodes.iter().filter(|n| n.node != node).count() + 1;
        let fair = instances.len().div_ceil(live);
        let holding = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        if holding < fair {
            let wanted = u32::try_from(fair - holding).unwrap_or(u32::MAX);
            let taken = self.store.take_free_leases(node, now, until, wanted).await?;
            let mut opening = Vec::new();
            for lease in taken {
                tracing::info!(node = %node, instance = %lease.instance, fence = lease.fence, "took the number's lease");
                // An instance made since the list was read is taken too: read it.
                let record = match instances.iter().find(|i| i.id == lease.instance) {
                    Some(record) => record.clone(),
                    None => match self.store.get_instance(lease.instance).await {
                        Ok(record) => record,
                        Err(e) => {
                            tracing::warn!(instance = %lease.instance, error = %e, "a number taken could not be read");
                            self.store.release_lease(&lease, SystemClock.now()).await?;
                            continue;
                        }
                    },
                };
                self.holds
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(lease.instance, Hold { lease, usable_until });
                opening.push(record);
            }
            self.open_all(&opening).await;
        } else if holding > fair {
            self.give_up((holding - fair).min(GIVEN_UP_PER_ROUND)).await?;
        }
        Ok(())
    }

    /// Closes the connections of the numbers whose hold has run out by this process's clock (its renewals failed).
    async fn close_expired_holds(&self) {
        let expired: Vec<InstanceId> = {
            let mut holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let expired: Vec<InstanceId> =
                holds.iter().filter(|(_, hold)| hold.usable_until <= now).map(|(id, _)| *id).collect();
            for id in &expired {
                holds.remove(id);
            }
            expired
        };
        for id in expired {
            tracing::warn!(instance = %id, "the number's lease ran out unrenewed: its connection closes here");
            self.close_connection(id).await;
        }
    }

    /// Gives up `count` of the numbers held, the highest ids first, so that the nodes with fewer than their share
    /// take them: each connection closes before its lease is released, so no two nodes run a number at once.
    async fn give_up(&self, count: usize) -> Result<()> {
        let surplus: Vec<Lease> = {
            let mut holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut ids: Vec<InstanceId> = holds.keys().copied().collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.into_iter().take(count).filter_map(|id| holds.remove(&id)).map(|hold| hold.lease).collect()
        };
        for lease in surplus {
            tracing::info!(instance = %lease.instance, "giving the number's lease to a node with fewer");
            self.close_connection(lease.instance).await;
            self.store.release_lease(&lease, SystemClock.now()).await?;
        }
        Ok(())
    }

    /// Opens the connection of an instance this node just created: alone, at once; leased, once it has taken the
    /// instance's lease, so that it runs here at once (the rounds balance it later). Another node's round may have
    /// taken it first: that node opens it.
    pub(super) async fn open_new(&self, record: &InstanceRecord) -> Result<()> {
        let Placement::Leased { node, lease_ttl, .. } = &self.placement else {
            self.open_all(std::slice::from_ref(record)).await;
            return Ok(());
        };
        // Under the keeper's lock until the connection is open: a round cannot give the lease up in between.
        let _turn = self.leasing.lock().await;
        let started = Instant::now();
        let now = SystemClock.now();
        let Some(lease) = self.store.take_lease(record.id, node, now, now.plus(*lease_ttl)).await? else {
            return Ok(());
        };
        let hold = Hold { lease, usable_until: started + *lease_ttl };
        self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(record.id, hold);
        self.open_all(std::slice::from_ref(record)).await;
        Ok(())
    }

    /// Lets go of a deleted instance's lease.
    pub(super) async fn let_go(&self, id: InstanceId) -> Result<()> {
        let _turn = self.leasing.lock().await;
        let hold = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        if let Some(hold) = hold {
            self.store.release_lease(&hold.lease, SystemClock.now()).await?;
        }
        Ok(())
    }

    /// Leaves the other nodes every number at once (on a clean stop, after the connections closed).
    pub(super) async fn leave(&self) {
        let Placement::Leased { node, .. } = &self.placement else { return };
        self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        if let Err(e) = self.store.leave_cluster(node, SystemClock.now()).await {
            tracing::warn!(node = %node, error = ?e, "could not give up the node's leases; they end on their own");
        }
    }

    /// Readies the networks for `instances` and opens their connections.
    async fn open_all(&self, instances: &[InstanceRecord]) {
        if instances.is_empty() {
            return;
        }
        self.prepare_networks(instances).await;
        for instance in instances {
            self.attach(instance);
        }
    }
}
