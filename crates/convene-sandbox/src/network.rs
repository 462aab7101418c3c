//! The shared network: the world in the sandbox's database, each change one transaction before its call returns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use convene_core::{
    Clock, ConnectorError, ConnectorEvent, ConnectorEvents, GroupChangeEvent, GroupJid, InstanceId, InstanceState,
    PhoneNumber,
};

use crate::connector::SandboxConnector;
use crate::store::{GroupsNeeded, Needs, WorldStore};
use crate::world::{Env, Meta, World};
use crate::{
    Faults, InboxMessage, JoinResult, NetworkLimits, NetworkStats, Person, PersonPatch, SandboxConfig, SandboxError,
    SandboxGroup, legacy,
};

pub struct SandboxNetwork {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    path: Option<PathBuf>,
    store: WorldStore,
    /// Held by each change from reading the world to committing, so that this process's changes queue here rather
    /// than on the database's write lock (which `BEGIN IMMEDIATE` takes, so changes apply one after another).
    writer: tokio::sync::Mutex<()>,
    /// The world's small state as last committed, for reads that need nothing else (faults, limits, stats).
    meta: RwLock<Meta>,
    /// Who hears what people do on their own (join, leave): instances by their account number.
    listeners: Mutex<BTreeMap<InstanceId, Listener>>,
}

struct Listener {
    account: PhoneNumber,
    events: Arc<dyn ConnectorEvents>,
}

impl std::fmt::Debug for SandboxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxNetwork").field("path", &self.path).field("config", &self.config).finish()
    }
}

impl SandboxNetwork {
    /// `path: None` keeps the world in memory only; otherwise it is the sandbox's database file, created on the first
    /// start. A world file of an older Convene beside it (`path` with the extension `json`, and its journal) is
    /// imported into a new database, then renamed with `.imported` added.
    pub async fn open(
        path: Option<PathBuf>,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, SandboxError> {
        config.faults.validate()?;
        let store = WorldStore::open(path.as_deref()).await?;
        let mut conn = store.acquire().await?;
        let meta = match store.meta(&mut conn).await? {
            Some(meta) => meta,
            None => {
                let legacy_path = path.as_ref().map(|p| p.with_extension("json"));
                let legacy = match &legacy_path {
                    Some(p) => {
                        let (p, inbox_limit) = (p.clone(), config.inbox_limit);
                        tokio::task::spawn_blocking(move || legacy::read(&p, inbox_limit))
                            .await
                            .map_err(|e| SandboxError::Io(format!("reading the old world file: {e}")))??
                    }
                    None => None,
                };
                let meta = match legacy {
                    Some(world) => {
                        let parts = world.into_parts();
                        let meta = parts.meta.clone();
                        store.import(parts, config.inbox_limit).await?;
                        meta
                    }
                    None => {
                        let meta = World::new(config.seed, config.faults.clone(), config.network_limits.clone()).meta();
                        crate::store::write_meta(&mut conn, &meta).await?;
                        meta
                    }
                };
                if let Some(p) = &legacy_path {
                    legacy::set_aside(p)?;
                }
                meta
            }
        };
        drop(conn);
        let network = Arc::new(Self {
            config,
            clock,
            path,
            store,
            writer: tokio::sync::Mutex::new(()),
            meta: RwLock::new(meta),
            listeners: Mutex::default(),
        });
        // A world seeded unreachable starts its outage now.
        network
            .mutate(Needs::default(), |w, env| {
                w.note_outage(env.now);
                Ok::<_, SandboxError>(())
            })
            .await?;
        Ok(network)
    }

    /// Makes the numbers registered WhatsApp users of the world (the accounts connectors act as), in one change.
    pub async fn register(&self, accounts: &[PhoneNumber]) -> Result<(), SandboxError> {
        self.mutate(Needs::people(accounts.iter().cloned()), |w, env| {
            for account in accounts {
                w.register(account, env);
            }
            Ok::<_, SandboxError>(())
        })
        .await
    }

    /// A connector acting as `account` (which [`Self::register`] makes a WhatsApp user of the world).
    pub fn connector(self: &Arc<Self>, account: PhoneNumber) -> SandboxConnector {
        SandboxConnector::new(Arc::clone(self), account)
    }

    pub async fn upsert_person(&self, phone: &PhoneNumber, patch: &PersonPatch) -> Result<Person, SandboxError> {
        self.mutate(Needs::people([phone.clone()]), |w, env| Ok(w.upsert_person(phone, patch, env))).await
    }

    pub async fn person(&self, phone: &PhoneNumber) -> Result<Person, SandboxError> {
        self.read(Needs::people([phone.clone()]), |w, env| w.person(phone, env)).await
    }

    pub async fn group(&self, jid: &GroupJid) -> Result<SandboxGroup, SandboxError> {
        self.read(Needs::group(jid), |w, _| w.group(jid)).await?
    }

    /// All groups, in creation order.
    pub async fn groups(&self) -> Result<Vec<SandboxGroup>, SandboxError> {
        self.read(Needs { groups: GroupsNeeded::All, ..Needs::default() }, |w, _| w.groups()).await
    }

    /// A page of groups, the latest created first, and how many groups there are.
    pub async fn groups_latest_first(&self, skip: u64, take: u64) -> Result<(Vec<SandboxGroup>, u64), SandboxError> {
        let (groups, total) = self.store.groups_latest_first(skip, take).await?;
        Ok((groups.into_iter().map(|g| g.info().clone()).collect(), total))
    }

    /// Reports to `events`, as `instance`, what people do on their own in the groups `account` is a member of —
    /// as WhatsApp notifies every member's devices. A second call for the same instance replaces the first.
    pub fn listen(&self, account: PhoneNumber, instance: InstanceId, events: Arc<dyn ConnectorEvents>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.insert(instance, Listener { account, events });
    }

    pub fn stop_listening(&self, instance: InstanceId) {
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner).remove(&instance);
    }

    /// The person leaves the group of their own accord: adding them back answers 408 for a while.
    pub async fn person_leaves(&self, jid: &GroupJid, phone: &PhoneNumber) -> Result<(), SandboxError> {
        self.mutate(Needs::group(jid), |w, env| w.person_leaves(jid, phone, env)).await?;
        self.notify_members(jid, phone, GroupChangeEvent::ParticipantsLeft(vec![phone.clone()])).await;
        Ok(())
    }

    /// The person accepts the private invite (the add request of a 403 refusal) to the group.
    pub async fn accept_invite(&self, phone: &PhoneNumber, jid: &GroupJid) -> Result<JoinResult, SandboxError> {
        let needs = Needs::group(jid).and_people([phone.clone()]);
        let result = self.mutate(needs, |w, env| w.accept_invite(phone, jid, env)).await?;
        if result == JoinResult::Joined {
            self.notify_members(jid, phone, GroupChangeEvent::ParticipantsJoined(vec![phone.clone()])).await;
        }
        Ok(result)
    }

    /// The person opens `https://chat.whatsapp.com/<code>` (the code or the whole link).
    pub async fn join_by_link(&self, phone: &PhoneNumber, invite_code: &str) -> Result<JoinResult, SandboxError> {
        let needs = Needs {
            people: vec![phone.clone()],
            groups: GroupsNeeded::InviteCode(invite_code.to_owned()),
            ..Needs::default()
        };
        let (result, jid) = self
            .mutate(needs, |w, env| {
                let jid = w.group_by_invite_code(invite_code);
                Ok::<_, SandboxError>((w.join_by_link(phone, invite_code, env)?, jid))
            })
            .await?;
        if let (JoinResult::Joined, Some(jid)) = (result, jid) {
            self.notify_members(&jid, phone, GroupChangeEvent::ParticipantsJoined(vec![phone.clone()])).await;
        }
        Ok(result)
    }

    /// Tells the listening members of `jid` (not `by` themselves) what `by` did.
    async fn notify_members(&self, jid: &GroupJid, by: &PhoneNumber, change: GroupChangeEvent) {
        let Ok(group) = self.group(jid).await else { return };
        let listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        for (instance, listener) in listeners.iter() {
            if &listener.account != by && group.members.iter().any(|m| m.phone == listener.account) {
                let event = ConnectorEvent::Group { group: jid.clone(), change: change.clone(), by: Some(by.clone()) };
                listener.events.emit(*instance, event);
            }
        }
    }

    /// Messages connectors sent to the person, oldest first.
    pub async fn inbox(&self, phone: &PhoneNumber) -> Result<Vec<InboxMessage>, SandboxError> {
        self.store.inbox(phone).await
    }

    /// Changes the faults. Switching `unreachable` on or off is reported to every listening instance, as its new
    /// state: once when the outage begins, once when it ends.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SandboxError> {
        let was_unreachable = self
            .mutate(Needs::default(), |w, env| {
                let was = w.faults().unreachable;
                w.set_faults(faults.clone(), env.now).map(|()| was)
            })
            .await?;
        if was_unreachable != self.faults().unreachable {
            let listeners: Vec<(PhoneNumber, InstanceId, Arc<dyn ConnectorEvents>)> = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(instance, l)| (l.account.clone(), *instance, Arc::clone(&l.events)))
                .collect();
            for (account, instance, events) in listeners {
                let state = self.state(&account).await;
                events.emit(instance, ConnectorEvent::StateChanged(state));
            }
        }
        Ok(())
    }

    /// `account`'s connection: unreachable while that fault is on (or while the sandbox cannot read its database),
    /// banned while a ban runs, otherwise connected.
    pub async fn state(&self, account: &PhoneNumber) -> InstanceState {
        match self.read(Needs::account(account), |w, env| w.state(account, env.now)).await {
            Ok(state) => state,
            Err(e) => InstanceState::Unreachable { error: e.to_string(), since: self.clock.now(), next_retry_at: None },
        }
    }

    /// Waits the injected latency, then refuses a call that needs the network while it cannot be reached.
    pub(crate) async fn reach(&self, account: &PhoneNumber) -> Result<(), ConnectorError> {
        self.delay().await;
        match self.state(account).await {
            state @ InstanceState::Unreachable { .. } => {
                Err(ConnectorError::NotConnected(state.not_connected_reason().unwrap_or_default()))
            }
            _ => Ok(()),
        }
    }

    fn meta(&self) -> Meta {
        self.meta.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn faults(&self) -> Faults {
        self.meta().faults
    }

    /// WhatsApp's creation limits as the sandbox applies them.
    pub fn network_limits(&self) -> NetworkLimits {
        self.meta().limits
    }

    pub async fn set_network_limits(&self, limits: NetworkLimits) -> Result<(), SandboxError> {
        self.mutate(Needs::default(), |w, _| {
            w.set_network_limits(limits.clone());
            Ok(())
        })
        .await
    }

    /// Rate-limit refusals, bans and creations so far.
    pub fn stats(&self) -> NetworkStats {
        self.meta().stats
    }

    /// The end of `account`'s temporary ban, while one runs.
    pub async fn ban(&self, account: &PhoneNumber) -> Result<Option<convene_core::Timestamp>, SandboxError> {
        self.read(Needs::account(account), |w, env| w.ban(account, env.now)).await
    }

    /// The injected latency, slept before every connector call.
    pub(crate) async fn delay(&self) {
        let ms = self.meta.read().unwrap_or_else(PoisonError::into_inner).faults.latency_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Runs `f` on a view of the world holding what `needs` names, as last committed.
    pub(crate) async fn read<T>(&self, needs: Needs, f: impl FnOnce(&World, &Env) -> T) -> Result<T, SandboxError> {
        let mut conn = self.store.acquire().await?;
        let world = self.store.load(&mut conn, self.meta(), &needs).await?;
        drop(conn);
        let env = Env::new(&self.config, self.clock.now());
        Ok(f(&world, &env))
    }

    /// Runs a change on a view of the world holding what `needs` names, and returns once what it touched is
    /// committed, whatever `f` returned (a failed call may still have moved the generator, and a lost reply still
    /// created its group). Changes apply one at a time. Nothing is written when the database fails.
    ///
    /// A new group's id is drawn from the generator and checked against the database before the change commits:
    /// when it is taken (by a group the view did not load), the change is rolled back and run again from the same
    /// state, drawing past that id, so `f` may run more than once. The database, not this process, knows which
    /// ids are in use: nothing of the world is held in memory to start, and processes sharing a database agree.
    pub(crate) async fn mutate<T, E: From<SandboxError>>(
        &self,
        needs: Needs,
        mut f: impl FnMut(&mut World, &Env) -> Result<T, E>,
    ) -> Result<T, E> {
        let _turn = self.writer.lock().await;
        let env = Env::new(&self.config, self.clock.now());
        let mut known_taken = BTreeSet::new();
        loop {
            let mut tx = self.store.begin().await?;
            let meta =
                self.store.meta(&mut tx).await?.ok_or_else(|| SandboxError::Io("sandbox database: no world".into()))?;
            // The committed meta, in case a change that committed was dropped before it could refresh the cache.
            *self.meta.write().unwrap_or_else(PoisonError::into_inner) = meta.clone();
            let mut world = self.store.load(&mut tx, meta, &needs).await?;
            world.known_taken.clone_from(&known_taken);
            let result = f(&mut world, &env);
            let changes = world.take_changes();
            if let Some(taken) = self.store.first_taken_id(&mut tx, &changes.created).await? {
                // Dropping `tx` rolls the try back.
                known_taken.insert(taken);
                continue;
            }
            self.store.save(&mut tx, &changes, self.config.inbox_limit).await?;
            tx.commit().await.map_err(|e| SandboxError::Io(format!("sandbox database: {e}")))?;
            if let Some(meta) = changes.meta {
                *self.meta.write().unwrap_or_else(PoisonError::into_inner) = meta;
            }
            return result;
        }
    }
}
