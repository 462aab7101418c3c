//! The shared network: the world behind a mutex, saved to its file after every change.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use convene_core::{
    Clock, ConnectorError, ConnectorEvent, ConnectorEvents, GroupChangeEvent, GroupJid, InstanceId, InstanceState,
    PhoneNumber,
};

use crate::connector::SandboxConnector;
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
    /// The file's current content, to skip rewriting an unchanged world and to roll back a change that could not
    /// be saved.
    saved: Vec<u8>,
}

impl std::fmt::Debug for SandboxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxNetwork").field("path", &self.path).field("config", &self.config).finish()
    }
}

impl SandboxNetwork {
    /// `path: None` keeps the world in memory only; otherwise it is loaded from that file if it exists, and the file
    /// is rewritten (atomically, synced) after every change, before the call returns.
    pub fn open(
        path: Option<PathBuf>,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, SandboxError> {
        config.faults.validate()?;
        let fresh = || World::new(config.seed, config.faults.clone(), config.network_limits.clone());
        let (world, saved) = match &path {
            Some(p) if p.exists() => {
                let bytes = fs::read(p).map_err(|e| io_error(p, &e))?;
                (World::from_json(&bytes).map_err(|e| SandboxError::Io(format!("{}: {e}", p.display())))?, bytes)
            }
            _ => (fresh(), Vec::new()),
        };
        let network = Arc::new(Self {
            config,
            clock,
            path,
            state: Mutex::new(State { world, saved }),
            listeners: Mutex::default(),
        });
        // Writes a new world's file now, so that a bad path fails at start-up rather than on the first group; a
        // world seeded unreachable starts its outage now.
        network.mutate(|w, env| {
            w.note_outage(env.now);
            Ok::<_, SandboxError>(())
        })?;
        Ok(network)
    }

    /// A connector acting as `account`, which becomes a registered WhatsApp user of the world.
    pub fn connector(self: &Arc<Self>, account: PhoneNumber) -> SandboxConnector {
        let registered = self.mutate(|w, env| {
            w.register(&account, env);
            Ok::<_, SandboxError>(())
        });
        if let Err(e) = registered {
            tracing::error!(error = %e, %account, "could not save the sandbox account");
        }
        SandboxConnector::new(Arc::clone(self), account)
    }

    pub fn upsert_person(&self, phone: &PhoneNumber, patch: &PersonPatch) -> Result<Person, SandboxError> {
        self.mutate(|w, env| Ok(w.upsert_person(phone, patch, env)))
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
    pub fn person_leaves(&self, jid: &GroupJid, phone: &PhoneNumber) -> Result<(), SandboxError> {
        self.mutate(|w, env| w.person_leaves(jid, phone, env))?;
        self.notify_members(jid, phone, GroupChangeEvent::ParticipantsLeft(vec![phone.clone()]));
        Ok(())
    }

    /// The person accepts the private invite (the add request of a 403 refusal) to the group.
    pub fn accept_invite(&self, phone: &PhoneNumber, jid: &GroupJid) -> Result<JoinResult, SandboxError> {
        let result = self.mutate(|w, env| w.accept_invite(phone, jid, env))?;
        if result == JoinResult::Joined {
            self.notify_members(jid, phone, GroupChangeEvent::ParticipantsJoined(vec![phone.clone()]));
        }
        Ok(result)
    }

    /// The person opens `https://chat.whatsapp.com/<code>` (the code or the whole link).
    pub fn join_by_link(&self, phone: &PhoneNumber, invite_code: &str) -> Result<JoinResult, SandboxError> {
        let (result, jid) = self.mutate(|w, env| {
            let jid = w.group_by_invite_code(invite_code);
            Ok::<_, SandboxError>((w.join_by_link(phone, invite_code, env)?, jid))
        })?;
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
    pub fn set_faults(&self, faults: Faults) -> Result<(), SandboxError> {
        let was_unreachable = self.mutate(|w, env| {
            let was = w.faults().unreachable;
            w.set_faults(faults, env.now).map(|()| was)
        })?;
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

    pub fn set_network_limits(&self, limits: NetworkLimits) -> Result<(), SandboxError> {
        self.mutate(|w, _| {
            w.set_network_limits(limits);
            Ok(())
        })
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

    /// Runs a change and saves the world if it changed, whatever `f` returned (a failed call may still have moved
    /// the generator, and a lost reply still created its group). If saving fails, the change is undone and the
    /// call fails: the file is the truth.
    pub(crate) fn mutate<T, E: From<SandboxError>>(
        &self,
        f: impl FnOnce(&mut World, &Env) -> Result<T, E>,
    ) -> Result<T, E> {
        let env = Env::new(&self.config, self.clock.now());
        let mut state = self.lock();
        let result = f(&mut state.world, &env);
        let Some(path) = &self.path else { return result };
        let bytes = serde_json::to_vec_pretty(&state.world).map_err(|e| SandboxError::Io(e.to_string()))?;
        if bytes != state.saved {
            if let Err(e) = write_atomically(path, &bytes) {
                if !state.saved.is_empty() {
                    state.world = World::from_json(&state.saved)?;
                }
                return Err(io_error(path, &e).into());
            }
            state.saved = bytes;
        }
        result
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> SandboxError {
    SandboxError::Io(format!("{}: {e}", path.display()))
}

/// Temp file in the same directory, fsync, rename over the old file, fsync the directory: after a crash the file
/// holds either the old world or the new one, never a torn mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}
