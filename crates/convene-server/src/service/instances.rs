//! The instances: each number Convene runs, its record, settings and token, and its connection through its kind's
//! driver. The rest of the service reaches an instance's connection through here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use convene_core::group::plain_name;
use convene_core::store::InstanceRecord;
use convene_core::{
    Clock, ClusterNode, Connector, ConnectorError, ConnectorKind, ConnectorReports, InstanceId, InstanceState,
    PhoneNumber, Store, SystemClock,
};

use super::placement::{Holds, Placement};
use super::remote::NodeCalls;
use super::{MAX_NAME_CHARS, parse_participants, random_instance_id};
use crate::auth;
use crate::connectors::{ConnectorDriver, Drivers};
use crate::error::{ApiError, FieldError, Result};

/// The instances and their connections.
#[derive(Clone)]
pub struct Instances {
    pub(super) store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Each kind of connector's driver.
    pub(super) drivers: Arc<Drivers>,
    connectors: Arc<RwLock<HashMap<InstanceId, Arc<dyn Connector>>>>,
    /// Where connectors report what the networks tell them (see `reports`).
    reported: Arc<dyn ConnectorReports>,
    /// Held while an instance's number is checked and the instance inserted.
    numbering: Arc<tokio::sync::Mutex<()>>,
    /// Which numbers this node runs: all of them, or those it holds a lease on (`placement`).
    pub(super) placement: Placement,
    /// The leases this node holds, when it leases.
    pub(super) holds: Holds,
    /// Held by a round of the lease keeper, and by a creation or deletion while it takes or gives up a lease.
    pub(super) leasing: Arc<tokio::sync::Mutex<()>>,
    /// Where the other nodes reach this one, once it serves.
    pub(super) advertised: Arc<RwLock<String>>,
    /// How this node calls the others for the numbers they run, when it shares its database.
    calls: Option<NodeCalls>,
}

impl Instances {
    pub(super) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        drivers: Drivers,
        reported: Arc<dyn ConnectorReports>,
        placement: Placement,
    ) -> Self {
        let calls = match &placement {
            Placement::Leased { token, .. } => Some(NodeCalls::new(token.0.clone())),
            Placement::Alone => None,
        };
        Self {
            store,
            clock,
            drivers: Arc::new(drivers),
            connectors: Arc::default(),
            reported,
            numbering: Arc::default(),
            placement,
            holds: Holds::default(),
            leasing: Arc::default(),
            advertised: Arc::default(),
            calls,
        }
    }

    /// Ends every connection, flushing what the networks' libraries buffer (their stored state stays), then leaves
    /// the other nodes this node's numbers.
    pub async fn shutdown(&self) {
        for (_, driver) in self.drivers.all() {
            driver.shutdown().await;
        }
        self.connectors.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.leave().await;
    }

    /// Readies each kind's network for its instances among `instances`, before their connections open.
    pub(super) async fn prepare_networks(&self, instances: &[InstanceRecord]) {
        for (kind, driver) in self.drivers.all() {
            let of_kind: Vec<&InstanceRecord> = instances.iter().filter(|i| i.kind == kind).collect();
            if !of_kind.is_empty() {
                driver.prepare(&of_kind).await;
            }
        }
    }

    /// Opens the instance's connection (this node runs it).
    pub(super) fn attach(&self, instance: &InstanceRecord) {
        let connector = self.drivers.of(instance.kind).and_then(|driver| driver.open(instance, &self.reported));
        let mut map = self.connectors.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match connector {
            Some(c) => map.insert(instance.id, c),
            None => map.remove(&instance.id),
        };
    }

    /// Closes the instance's connection here (its lease went to another node); what its kind stores of it stays.
    pub(super) async fn close_connection(&self, id: InstanceId) {
        let closed = self.connectors.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        if let Some(driver) = closed.and_then(|connector| self.drivers.of(connector.kind())) {
            driver.close(id).await;
        }
    }

    /// The instance's connection: this node's own when it runs the instance, or the one on the node that does.
    pub(super) async fn connector(&self, id: InstanceId) -> Result<Arc<dyn Connector>> {
        if self.runs_here(id) {
            return self.local_connector(id);
        }
        match self.runner_elsewhere(id).await? {
            Some((calls, holder)) => {
                let kind = self.record(id).await?.kind;
                Ok(Arc::new(calls.connector(holder, id, kind)))
            }
            None => Err(self.not_run_here(id)),
        }
    }

    /// Forgets a deleted instance's connection here, as its kind forgets a deleted instance.
    pub(super) async fn forget_connection(&self, id: InstanceId) {
        let closed = self.connectors.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        if let Some(driver) = closed.and_then(|connector| self.drivers.of(connector.kind()))
            && let Err(e) = driver.forget(id).await
        {
            tracing::warn!(instance = %id, error = ?e, "a deleted instance was not forgotten here");
        }
    }

    /// Whether this process has the instance's connection open (whether or not it may use it now).
    pub fn has_connection(&self, id: InstanceId) -> bool {
        self.connectors.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(&id)
    }

    /// The other node that runs `id` now and can be called, with how to call it; `None` alone, or when no other
    /// node does.
    async fn runner_elsewhere(&self, id: InstanceId) -> Result<Option<(&NodeCalls, ClusterNode)>> {
        let (Some(calls), Some(me)) = (&self.calls, self.node()) else { return Ok(None) };
        let holder = self.store.lease_holder(id, SystemClock.now()).await?;
        Ok(holder.filter(|n| n.node != me && !n.address.is_empty()).map(|n| (calls, n)))
    }

    /// This node's own connection to the instance, when it runs the instance and its kind can connect it.
    pub(crate) fn local_connector(&self, id: InstanceId) -> Result<Arc<dyn Connector>> {
        if !self.runs_here(id) {
            return Err(self.not_run_here(id));
        }
        let map = self.connectors.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&id).cloned().ok_or_else(|| {
            ConnectorError::NotConnected(format!("instance {id} has no connection in this build")).into()
        })
    }

    fn not_run_here(&self, id: InstanceId) -> ApiError {
        let node = self.node().unwrap_or_default();
        ConnectorError::NotConnected(format!(
            "instance {id} has no connection on this node ({node}), and no other node runs it now; one will once it \
             takes the number's lease (docs/deployment.md)"
        ))
        .into()
    }

    /// Whether `authorization` (an `Authorization` header) is another node's on this database.
    pub(crate) fn admits_node(&self, authorization: Option<&str>) -> bool {
        self.calls.as_ref().is_some_and(|calls| calls.admits(authorization))
    }

    /// Creates an instance and its connection. Returns the record and the instance token (shown once).
    pub async fn create(
        &self,
        kind: ConnectorKind,
        name: Option<&str>,
        phone: Option<&str>,
    ) -> Result<(InstanceRecord, String)> {
        let mut errors = Vec::new();
        let name = match name.map(|n| plain_name(n, MAX_NAME_CHARS)).transpose() {
            Ok(name) => name,
            Err(message) => {
                errors.push(FieldError::new("name", message));
                None
            }
        };
        let driver = self.drivers.of(kind);
        if driver.is_none() {
            errors.push(FieldError::new("kind", crate::connectors::choose_a_kind()));
        }
        let phone = match driver.zip(phone).map(|(driver, asked)| driver.check_phone(asked)) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(message)) => {
                errors.push(FieldError::new("phone", message));
                None
            }
        };
        let (Some(driver), true) = (driver, errors.is_empty()) else {
            return Err(ApiError::Validation(errors));
        };
        // One number check and insert at a time, so that two creations cannot both take a number.
        let _numbering = self.numbering.lock().await;
        let phone = match phone {
            Some(p) if self.store.instance_phone_taken(&p).await? => {
                return Err(ApiError::Conflict(format!("another instance already uses {}", p.e164())));
            }
            Some(p) => Some(p),
            None => driver.assign_phone(self.store.as_ref()).await?,
        };
        let default_name = driver.default_name(phone.as_ref());
        let token = auth::new_instance_token();
        let mut record = InstanceRecord {
            id: InstanceId(0),
            kind,
            name: name.map_or(default_name, str::to_owned),
            phone,
            token_hash: auth::hash_secret(&token),
            created_at: self.clock.now(),
        };
        // Random ten-digit ids; a clash is astronomically rare, so a few tries are plenty.
        for _ in 0..8 {
            record.id = random_instance_id();
            match self.store.insert_instance(&record).await {
                Ok(()) => {
                    self.open_new(&record).await?;
                    return Ok((record, token));
                }
                Err(convene_core::DbError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal(anyhow::anyhow!("could not find a free instance id")))
    }

    /// The instance's record, or a 404 naming it.
    pub(crate) async fn record(&self, id: InstanceId) -> Result<InstanceRecord> {
        self.store.get_instance(id).await.map_err(|e| ApiError::for_instance(e, id))
    }

    pub async fn get(&self, id: InstanceId) -> Result<(InstanceRecord, InstanceState)> {
        let record = self.record(id).await?;
        let state = self.state(id).await;
        Ok((record, state))
    }

    pub async fn state(&self, id: InstanceId) -> InstanceState {
        match self.connector(id).await {
            Ok(c) => c.state().await,
            Err(_) => InstanceState::Disconnected,
        }
    }

    /// Every instance with its state. The states of the numbers other nodes run are asked of each of those nodes
    /// in one call (a node that does not answer: its numbers are listed `disconnected`).
    pub async fn list(&self) -> Result<Vec<(InstanceRecord, InstanceState)>> {
        let records = self.store.list_instances().await?;
        let mut elsewhere: HashMap<InstanceId, InstanceState> = HashMap::new();
        if let (Some(calls), Some(me)) = (&self.calls, self.node()) {
            let now = SystemClock.now();
            let nodes: HashMap<String, ClusterNode> =
                self.store.live_nodes(now).await?.into_iter().map(|n| (n.node.clone(), n)).collect();
            let mut by_node: HashMap<&str, Vec<InstanceId>> = HashMap::new();
            let leases = self.store.leases().await?;
            for lease in leases.iter().filter(|l| l.expires_at > now && l.node != me && !self.runs_here(l.instance)) {
                by_node.entry(lease.node.as_str()).or_default().push(lease.instance);
            }
            for (node, ids) in by_node {
                let Some(node) = nodes.get(node).filter(|n| !n.address.is_empty()) else { continue };
                match calls.states(node, &ids).await {
                    Ok(states) => elsewhere.extend(states.into_iter().map(|(id, state)| (InstanceId(id), state))),
                    Err(e) => {
                        tracing::warn!(node = %node.node, error = %e, "the states of a node's numbers were not read")
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let state = match elsewhere.remove(&record.id) {
                Some(state) => state,
                None if self.runs_here(record.id) => self.state(record.id).await,
                None => InstanceState::Disconnected,
            };
            out.push((record, state));
        }
        Ok(out)
    }

    pub async fn settings(&self, id: InstanceId) -> Result<convene_core::store::InstanceSettings> {
        self.record(id).await?;
        Ok(self.store.instance_settings(id).await?)
    }

    /// Replaces an instance's defaults; every bad field is named.
    pub async fn set_settings(
        &self,
        id: InstanceId,
        pacing: Option<convene_core::PacingPolicy>,
        auto_invite: bool,
        backup_admins: &[String],
    ) -> Result<convene_core::store::InstanceSettings> {
        let instance = self.record(id).await?;
        let mut errors = Vec::new();
        if let Some(Err(e)) = pacing.map(|p| p.validate()) {
            errors.push(FieldError::new("pacing", e));
        }
        let parsed = parse_participants("backup_admins", backup_admins, instance.phone.as_ref())
            .map_err(|mut e| errors.append(&mut e))
            .ok();
        if let Some(parsed) = &parsed {
            errors.extend(
                parsed.invalid.iter().map(|i| FieldError::new("backup_admins", format!("`{i}` is not a valid number"))),
            );
        }
        let (Some(parsed), true) = (parsed, errors.is_empty()) else {
            return Err(ApiError::Validation(errors));
        };
        let settings = convene_core::store::InstanceSettings { pacing, auto_invite, backup_admins: parsed.phones() };
        self.store.put_instance_settings(id, &settings).await?;
        Ok(settings)
    }

    /// Deletes the instance and its records; a real number is unlinked and its keys deleted. An instance of a kind
    /// this build does not have is refused: what that kind keeps of it (a linked phone, device keys) would be left
    /// behind with nothing to remove it.
    pub async fn delete(&self, id: InstanceId) -> Result<()> {
        let instance = self.record(id).await?;
        let driver = self.drivers.of(instance.kind).ok_or_else(|| {
            ApiError::Conflict(format!(
                "instance {id} is a `{}` instance, a kind this build of Convene does not have; delete it with a build \
                 that has, so that what that kind keeps of it is removed too",
                instance.kind
            ))
        })?;
        // The node that runs it, asked before the record goes (its rounds would only close the connection).
        let runner = if self.runs_here(id) { None } else { self.runner_elsewhere(id).await? };
        self.store.delete_instance(id).await.map_err(|e| ApiError::for_instance(e, id))?;
        if let Some((calls, runner)) = runner {
            // Logged, not returned: the instance is deleted, and its keys are deleted here all the same.
            if let Err(e) = calls.forget(&runner, id, instance.kind).await {
                tracing::warn!(instance = %id, node = %runner.node, error = %e, "the node that ran the deleted instance was not told");
            }
        }
        self.forget_here(id, driver).await
    }

    /// Forgets a deleted instance in this process: its connection, its lease, and what its kind keeps of it.
    pub(crate) async fn forget_here(&self, id: InstanceId, driver: &dyn ConnectorDriver) -> Result<()> {
        self.connectors.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        self.let_go(id).await?;
        driver.forget(id).await
    }

    /// `forget_here` for another node that deleted the instance (`kind`'s, a kind this build may not have).
    pub(crate) async fn forget_deleted(&self, id: InstanceId, kind: &str) -> Result<()> {
        match crate::connectors::kind_named(kind).and_then(|kind| self.drivers.of(kind)) {
            Some(driver) => self.forget_here(id, driver).await,
            None => Ok(()),
        }
    }

    /// The instance named by id whose token is `token` (Green API, Z-API, Wawp); `Unauthorized` otherwise, without
    /// saying which part was wrong.
    pub async fn by_token(&self, id: &str, token: &str) -> Result<InstanceRecord> {
        const REFUSED: ApiError = ApiError::Unauthorized("unknown instance or wrong instance token");
        let id = InstanceId::parse(id).ok_or(REFUSED)?;
        match self.store.get_instance(id).await {
            Ok(instance) if instance.token_hash == auth::hash_secret(token) => Ok(instance),
            Ok(_) | Err(convene_core::DbError::NotFound) => Err(REFUSED),
            Err(e) => Err(e.into()),
        }
    }

    /// The instance whose own number is `phone` (2Chat's `from_number`).
    pub async fn by_phone(&self, phone: &str) -> Result<InstanceRecord> {
        let phone = PhoneNumber::parse(phone).map_err(|e| ApiError::field("from_number", format!("`{phone}` {e}")))?;
        self.store
            .list_instances()
            .await?
            .into_iter()
            .find(|i| i.phone.as_ref() == Some(&phone))
            .ok_or_else(|| ApiError::NotFound(format!("no instance is connected with number {}", phone.e164())))
    }

    /// A new token for the instance; the old one is refused from now on. The token is returned once.
    pub async fn rotate_token(&self, id: InstanceId) -> Result<String> {
        let token = auth::new_instance_token();
        self.store
            .set_instance_token_hash(id, &auth::hash_secret(&token))
            .await
            .map_err(|e| ApiError::for_instance(e, id))?;
        Ok(token)
    }
}
