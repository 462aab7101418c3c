//! The shared network: the world behind a mutex, each change journaled to disk before its call returns.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use convene_core::{
    Clock, ConnectorError, ConnectorEvent, ConnectorEvents, GroupChangeEvent, GroupJid, InstanceId, InstanceState,
    PhoneNumber,
};

use crate::connector::SandboxConnector;
use crate::journal::{Durability, Journal};
use crate::world::{Env, World};
use crate::{
    Faults, InboxMessage, JoinResult, NetworkLimits, NetworkStats, Person, PersonPatch, SandboxConfig, SandboxError,
    SandboxGroup,
};

pub struct SandboxNetwork {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    path: Option<PathBuf>,
    state: Mutex<State>,
    /// Who hears what people do on their own (join, leave): instances by their account number.
    listeners: Mutex<Vec<Listener>>,
}

struct Listener {
    account: PhoneNumber,
    instance: InstanceId,
    events: Arc<dyn ConnectorEvents>,
}

struct State {
    world: World,
    /// None for a world kept in memory only.
    journal: Option<Journal>,
}

impl std::fmt::Debug for SandboxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxNetwork").field("path", &self.path).field("config", &self.config).finish()
    }
}

impl SandboxNetwork {
    /// `path: None` keeps the world in memory only; otherwise it is loaded from that file (the snapshot) and the
    /// journal beside it, and every change is journaled before its call returns.
    pub fn open(
        path: Option<PathBuf>,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, SandboxError> {
        config.faults.validate()?;
        let fresh = || World::new(config.seed, config.faults.clone(), config.network_limits.clone());
        let (world, journal) = match &path {
            Some(p) => {
                let (world, journal) = Journal::open(p, config.inbox_limit, fresh)?;
                (world, Some(journal))
            }
            None => (fresh(), None),
        };
        let network = Arc::new(Self {
            config,
            clock,
            path,
            state: Mutex::new(State { world, journal }),
            listeners: Mutex::default(),
        });
        // A world seeded unreachable starts its outage now (journaled soon after: nothing waits on it).
        network.change_unawaited(|w, env| {
            w.note_outage(env.now);
            Ok::<_, SandboxError>(())
        })?;
        Ok(network)
    }

    /// A connector acting as `account`, which becomes a registered WhatsApp user of the world. Nothing waits for
    /// the registration to reach the disk: every start registers its accounts again.
    pub fn connector(self: &Arc<Self>, account: PhoneNumber) -> SandboxConnector {
        let registered = self.change_unawaited(|w, env| {
            w.register(&account, env);
            Ok::<_, SandboxError>(())
        });
        if let Err(e) = registered {
            tracing::error!(error = %e, %account, "could not save the sandbox account");
        }
        SandboxConnector::new(Arc::clone(self), account)
    }

    pub async fn upsert_person(&self, phone: &PhoneNumber, patch: &PersonPatch) -> Result<Person, SandboxError> {
        self.mutate(|w, env| Ok(w.upsert_person(phone, patch, env))).await
    }

    pub fn person(&self, phone: &PhoneNumber) -> Person {
        self.read(|w, env| w.person(phone, env))
    }

    pub fn group(&self, jid: &GroupJid) -> Result<SandboxGroup, SandboxError> {
        self.read(|w, _| w.group(jid))
    }

    /// All groups, in creation order.
    pub fn groups(&self) -> Vec<SandboxGroup> {
        self.read(|w, _| w.groups())
    }

    /// Reports to `events`, as `instance`, what people do on their own in the groups `account` is a member of —
    /// as WhatsApp notifies every member's devices. A second call for the same instance replaces the first.
    pub fn listen(&self, account: PhoneNumber, instance: InstanceId, events: Arc<dyn ConnectorEvents>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| l.instance != instance);
        listeners.push(Listener { account, instance, events });
    }

    pub fn stop_listening(&self, instance: InstanceId) {
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner).retain(|l| l.instance != instance);
    }

    /// The person leaves the group of their own accord: adding them back answers 408 for a while.
    pub async fn person_leaves(&self, jid: &GroupJid, phone: &PhoneNumber) -> Result<(), SandboxError> {
        self.mutate(|w, env| w.person_leaves(jid, phone, env)).await?;
        self.notify_members(jid, phone, GroupChangeEvent::ParticipantsLeft(vec![phone.clone()]));
        Ok(())
    }

    /// The person accepts the private invite (the add request of a 403 refusal) to the group.
    pub async fn accept_invite(&self, phone: &PhoneNumber, jid: &GroupJid) -> Result<JoinResult, SandboxError> {
        let result = self.mutate(|w, env| w.accept_invite(phone, jid, env)).await?;
        if result == JoinResult::Joined {
            self.notify_members(jid, phone, GroupChangeEvent::ParticipantsJoined(vec![phone.clone()]));
        }
        Ok(result)
    }

    /// The person opens `https://chat.whatsapp.com/<code>` (the code or the whole link).
    pub async fn join_by_link(&self, phone: &PhoneNumber, invite_code: &str) -> Result<JoinResult, SandboxError> {
        let (result, jid) = self
            .mutate(|w, env| {
                let jid = w.group_by_invite_code(invite_code);
                Ok::<_, SandboxError>((w.join_by_link(phone, invite_code, env)?, jid))
            })
            .await?;
        if let (JoinResult::Joined, Some(jid)) = (result, jid) {
            self.notify_members(&jid, phone, GroupChangeEvent::ParticipantsJoined(vec![phone.clone()]));
        }
        Ok(result)
    }

    /// Tells the listening members of `jid` (not `by` themselves) what `by` did.
    fn notify_members(&self, jid: &GroupJid, by: &PhoneNumber, change: GroupChangeEvent) {
        let Ok(group) = self.group(jid) else { return };
        let listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        for listener in listeners.iter() {
            if &listener.account != by && group.members.iter().any(|m| m.phone == listener.account) {
                let event = ConnectorEvent::Group { group: jid.clone(), change: change.clone(), by: Some(by.clone()) };
                listener.events.emit(listener.instance, event);
            }
        }
    }

    /// Messages connectors sent to the person, oldest first.
    pub fn inbox(&self, phone: &PhoneNumber) -> Vec<InboxMessage> {
        self.read(|w, _| w.inbox(phone))
    }

    /// Changes the faults. Switching `unreachable` on or off is reported to every listening instance, as its new
    /// state: once when the outage begins, once when it ends.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SandboxError> {
        let was_unreachable = self
            .mutate(|w, env| {
                let was = w.faults().unreachable;
                w.set_faults(faults, env.now).map(|()| was)
            })
            .await?;
        if was_unreachable != self.faults().unreachable {
            let listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
            for listener in listeners.iter() {
                let state = self.state(&listener.account);
                listener.events.emit(listener.instance, ConnectorEvent::StateChanged(state));
            }
        }
        Ok(())
    }

    /// `account`'s connection: unreachable while that fault is on, banned while a ban runs, otherwise connected.
    pub fn state(&self, account: &PhoneNumber) -> InstanceState {
        self.read(|w, env| w.state(account, env.now))
    }

    /// Waits the injected latency, then refuses a call that needs the network while it cannot be reached.
    pub(crate) async fn reach(&self, account: &PhoneNumber) -> Result<(), ConnectorError> {
        self.delay().await;
        match self.state(account) {
            state @ InstanceState::Unreachable { .. } => {
                Err(ConnectorError::NotConnected(state.not_connected_reason().unwrap_or_default()))
            }
            _ => Ok(()),
        }
    }

    pub fn faults(&self) -> Faults {
        self.read(|w, _| w.faults().clone())
    }

    /// WhatsApp's creation limits as the sandbox applies them.
    pub fn network_limits(&self) -> NetworkLimits {
        self.read(|w, _| w.network_limits().clone())
    }

    pub async fn set_network_limits(&self, limits: NetworkLimits) -> Result<(), SandboxError> {
        self.mutate(|w, _| {
            w.set_network_limits(limits);
            Ok(())
        })
        .await
    }

    /// Rate-limit refusals, bans and creations so far.
    pub fn stats(&self) -> NetworkStats {
        self.read(|w, _| w.stats().clone())
    }

    /// The end of `account`'s temporary ban, while one runs.
    pub fn ban(&self, account: &PhoneNumber) -> Option<convene_core::Timestamp> {
        self.read(|w, env| w.ban(account, env.now))
    }

    /// The injected latency, slept before every connector call (without holding the lock).
    pub(crate) async fn delay(&self) {
        let ms = self.read(|w, _| w.faults().latency_ms);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&World, &Env) -> T) -> T {
        let env = Env::new(&self.config, self.clock.now());
        f(&self.lock().world, &env)
    }

    /// A read for a connector, answered once every change it may reflect is on disk: a group found after a lost
    /// reply must not vanish in a crash after the gateway recorded it. Fails once the journal cannot be written.
    pub(crate) async fn read_settled<T>(&self, f: impl FnOnce(&World, &Env) -> T) -> Result<T, SandboxError> {
        self.mutate(|w, env| Ok::<_, SandboxError>(f(w, env))).await
    }

    /// Runs a change and returns once what it touched is on disk, whatever `f` returned (a failed call may still
    /// have moved the generator, and a lost reply still created its group). The lock is held only to change the
    /// world in memory and queue the journal entry, never across the wait for the disk.
    pub(crate) async fn mutate<T, E: From<SandboxError>>(
        &self,
        f: impl FnOnce(&mut World, &Env) -> Result<T, E>,
    ) -> Result<T, E> {
        let (result, durability) = self.change(f)?;
        if let Some(durability) = durability {
            durability.wait().await?;
        }
        result
    }

    /// Runs a change that needs no waiting for the disk: it is journaled soon after, with whatever comes next.
    fn change_unawaited<T, E: From<SandboxError>>(
        &self,
        f: impl FnOnce(&mut World, &Env) -> Result<T, E>,
    ) -> Result<T, E> {
        self.change(f)?.0
    }

    /// Runs a change and queues it for the journal, returning what to await for it to be on disk. Refuses to
    /// change anything once the journal could not be written.
    fn change<T, E: From<SandboxError>>(
        &self,
        f: impl FnOnce(&mut World, &Env) -> Result<T, E>,
    ) -> Result<(Result<T, E>, Option<Durability>), E> {
        let env = Env::new(&self.config, self.clock.now());
        let mut state = self.lock();
        let State { world, journal } = &mut *state;
        if let Some(journal) = journal {
            journal.check()?;
        }
        let result = f(world, &env);
        let changes = world.take_changes();
        let durability = match journal {
            Some(journal) => Some(journal.append(world, changes)?),
            None => None,
        };
        Ok((result, durability))
    }
}
