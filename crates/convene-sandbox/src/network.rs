//! The shared network: the world in the sandbox's database; a change returns once its transaction is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use convene_core::{
    Clock, ConnectorError, ConnectorReport, ConnectorReports, GroupJid, InstanceId, InstanceState, PhoneNumber,
    ReportedGroupChange,
};
use tokio::sync::OwnedMutexGuard;

use crate::connector::SandboxConnector;
use crate::group_cache::GroupCache;
use crate::shared::{self, PersonReport, Versioned};
use crate::store::{self, GroupsNeeded, Needs};
use crate::world::{Env, GroupState, Meta, World};
use crate::{
    Faults, InboxMessage, JoinResult, NetworkLimits, NetworkStats, Person, PersonPatch, SandboxConfig, SandboxError,
    SandboxGroup, legacy,
};

pub struct SandboxNetwork {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    path: Option<PathBuf>,
    backend: Backend,
    /// The world's small state as last committed, for reads that need nothing else (faults, limits, stats).
    meta: Arc<RwLock<Meta>>,
    /// Transactions committed so far: fewer than the changes when changes commit together.
    commits: Arc<AtomicU64>,
    /// Who hears what people do on their own (join, leave): instances by their account number.
    listeners: Mutex<BTreeMap<InstanceId, Listener>>,
}

/// Where the world is kept.
enum Backend {
    /// One node's world: a SQLite file of its own, or memory.
    Local(Local),
    /// The world in PostgreSQL, one network for every node on the database (see `shared.rs`).
    Shared(Shared),
}

struct Local {
    /// The connection changes are written on, held by each change while it reads and writes the world: changes
    /// apply one after another, and queue here rather than on the database's write lock.
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// Connections for reads, beside the writer's (WAL: a read sees the last commit and waits for no change). `None`
    /// for a world in memory, which lives in the writer's one connection.
    readers: Option<Arc<Readers>>,
    /// Copies the WAL into the file beside the writer's commits; stops with the network. `None` in memory.
    _checkpointer: Option<convene_sqlite::Checkpointer>,
    /// Groups as last committed, for reads of one group.
    groups: Arc<GroupCache>,
}

struct Shared {
    pool: sqlx::PgPool,
    /// This process among the nodes, so that it skips its own reports when it follows theirs.
    origin: i64,
    /// The version of the small state the cache holds: a later change's state is never overwritten by an earlier
    /// one's. Written under the cache's lock.
    version: AtomicI64,
    /// Taken by each change of this node while it waits for the world's lock and works (see `mutate_shared`).
    turn: tokio::sync::Mutex<()>,
}

/// How often a node on a shared world reads the small state (another node may have changed the faults) and the
/// reports of what people did on other nodes.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

struct Writer {
    conn: rusqlite::Connection,
    /// The transaction open on `conn`, while one is.
    batch: Option<Batch>,
}

/// Group commit: the changes that queue for the writer while one runs join its transaction (each in a savepoint of
/// its own, so a change that fails leaves the others), and one commit — one sync of the file, on a blocking thread —
/// ends them all. A change returns only once that commit is done, so what it returned is on disk, as when each
/// change committed alone; under concurrent calls (16 numbers creating at once) the sandbox syncs its file once for
/// many changes instead of once each. A world in memory commits each change at once.
struct Batch {
    /// Changes kept in it so far.
    changes: usize,
    /// The small state as the batch's latest change left it, for the cache once committed.
    meta: Option<Meta>,
    /// The groups its changes created or changed, as they left them, for the group cache once committed.
    groups: Vec<GroupState>,
    /// The commit's outcome, once it is known.
    committed: tokio::sync::watch::Sender<Option<Result<(), String>>>,
}

/// Read connections kept idle: reads by index run inline, so at most one per runtime thread is busy at a time, plus
/// the whole-world reads on blocking threads. Each keeps SQLite's page cache (2 MiB): more would cost memory only.
const READERS_KEPT: usize = 4;

/// Idle read connections to the sandbox's file, opened as reads need them.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    /// Runs `read` on an idle connection, or a new one when none is idle.
    fn run<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> Result<T, SandboxError>) -> Result<T, SandboxError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => store::open_reader(&self.path)?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < READERS_KEPT {
            idle.push(conn);
        }
        result
    }
}

struct Listener {
    account: PhoneNumber,
    events: Arc<dyn ConnectorReports>,
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
        // Opening, and importing an older world file, read and write files: off the runtime.
        let (opening_path, opening_config) = (path.clone(), config.clone());
        let (conn, meta, checkpoints) = tokio::task::spawn_blocking(move || {
            let (conn, meta) = open_world(opening_path.as_deref(), &opening_config)?;
            let checkpoints = opening_path.as_deref().map(store::open_checkpointer).transpose()?;
            Ok::<_, SandboxError>((conn, meta, checkpoints))
        })
        .await
        .map_err(|e| SandboxError::Io(format!("opening the sandbox's database: {e}")))??;
        let readers = path.clone().map(|path| Arc::new(Readers { path, idle: Mutex::default() }));
        let commits = Arc::<AtomicU64>::default();
        let checkpointer = checkpoints
            .map(|connection| {
                convene_sqlite::Checkpointer::start("sandbox-checkpointer", connection, Arc::clone(&commits))
                    .map_err(|e| SandboxError::Io(format!("starting the sandbox's checkpointer: {e}")))
            })
            .transpose()?;
        let local = Local {
            writer: Arc::new(tokio::sync::Mutex::new(Writer { conn, batch: None })),
            readers,
            _checkpointer: checkpointer,
            groups: Arc::default(),
        };
        let network = Arc::new(Self {
            config,
            clock,
            path,
            backend: Backend::Local(local),
            meta: Arc::new(RwLock::new(meta)),
            commits,
            listeners: Mutex::default(),
        });
        network.start_outage().await?;
        Ok(network)
    }

    /// Opens the world kept in the PostgreSQL database at `url` (schema `sandbox`), made on the first start from
    /// `config`: one network for every node on that database. Changes from all nodes apply in turn; what people do
    /// is reported to members on every node, and the faults another node sets apply here within a fraction of a
    /// second.
    pub async fn open_shared(
        url: &str,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, SandboxError> {
        config.faults.validate()?;
        let new_world = World::new(config.seed, config.faults.clone(), config.network_limits.clone()).meta();
        let (pool, committed) = shared::open(url, &new_world).await?;
        let following_from = shared::latest_report(&pool).await?;
        let shared = Shared {
            pool,
            origin: random_origin(),
            version: AtomicI64::new(committed.version),
            turn: tokio::sync::Mutex::default(),
        };
        let network = Arc::new(Self {
            config,
            clock,
            path: None,
            backend: Backend::Shared(shared),
            meta: Arc::new(RwLock::new(committed.meta)),
            commits: Arc::default(),
            listeners: Mutex::default(),
        });
        network.start_outage().await?;
        tokio::spawn(follow(Arc::downgrade(&network), following_from));
        Ok(network)
    }

    /// A world seeded unreachable starts its outage now.
    async fn start_outage(&self) -> Result<(), SandboxError> {
        self.mutate(Needs::default(), |w, env| {
            w.note_outage(env.now);
            Ok::<_, SandboxError>(())
        })
        .await
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
        let (groups, total) = match &self.backend {
            Backend::Local(local) => {
                local.reading(true, move |conn| store::groups_latest_first(conn, skip, take)).await?
            }
            Backend::Shared(shared) => shared::groups_latest_first(&mut *shared.conn().await?, skip, take).await?,
        };
        Ok((groups.into_iter().map(|g| g.info().clone()).collect(), total))
    }

    /// Reports to `events`, as `instance`, what people do on their own in the groups `account` is a member of —
    /// as WhatsApp notifies every member's devices. A second call for the same instance replaces the first.
    pub fn listen(&self, account: PhoneNumber, instance: InstanceId, events: Arc<dyn ConnectorReports>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.insert(instance, Listener { account, events });
    }

    pub fn stop_listening(&self, instance: InstanceId) {
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner).remove(&instance);
    }

    /// The person leaves the group of their own accord: adding them back answers 408 for a while.
    pub async fn person_leaves(&self, jid: &GroupJid, phone: &PhoneNumber) -> Result<(), SandboxError> {
        let left = PersonReport { group: jid.clone(), by: phone.clone(), joined: false };
        self.act(Needs::group(jid), |w, env| w.person_leaves(jid, phone, env).map(|()| ((), Some(left.clone())))).await
    }

    /// The person accepts the private invite (the add request of a 403 refusal) to the group.
    pub async fn accept_invite(&self, phone: &PhoneNumber, jid: &GroupJid) -> Result<JoinResult, SandboxError> {
        let needs = Needs::group(jid).and_people([phone.clone()]);
        let joined = PersonReport { group: jid.clone(), by: phone.clone(), joined: true };
        self.act(needs, |w, env| {
            let result = w.accept_invite(phone, jid, env)?;
            Ok((result, (result == JoinResult::Joined).then(|| joined.clone())))
        })
        .await
    }

    /// The person opens `https://chat.whatsapp.com/<code>` (the code or the whole link).
    pub async fn join_by_link(&self, phone: &PhoneNumber, invite_code: &str) -> Result<JoinResult, SandboxError> {
        let needs = Needs {
            people: vec![phone.clone()],
            groups: GroupsNeeded::InviteCode(invite_code.to_owned()),
            ..Needs::default()
        };
        self.act(needs, |w, env| {
            let jid = w.group_by_invite_code(invite_code);
            let result = w.join_by_link(phone, invite_code, env)?;
            let report = match (result, jid) {
                (JoinResult::Joined, Some(group)) => Some(PersonReport { group, by: phone.clone(), joined: true }),
                _ => None,
            };
            Ok((result, report))
        })
        .await
    }

    /// A change a person makes on their own, and what the members' instances hear of it: those listening here once
    /// it is committed; on a shared world, those on the other nodes from a report written in the change's own
    /// transaction (so that none is lost, and the reports of one group follow its changes' order).
    async fn act<T>(
        &self,
        needs: Needs,
        f: impl FnMut(&mut World, &Env) -> Result<(T, Option<PersonReport>), SandboxError>,
    ) -> Result<T, SandboxError> {
        let (result, report) = match &self.backend {
            Backend::Local(local) => self.mutate_local(local, needs, f).await?,
            Backend::Shared(shared) => self.mutate_shared(shared, needs, f, |(_, report)| report.as_ref()).await?,
        };
        if let Some(report) = report {
            self.notify_listeners(&report).await;
        }
        Ok(result)
    }

    /// Tells the members of the group listening here (not the person themselves) what a person did.
    async fn notify_listeners(&self, report: &PersonReport) {
        let PersonReport { group: jid, by, joined } = report;
        let change = if *joined {
            ReportedGroupChange::ParticipantsJoined(vec![by.clone()])
        } else {
            ReportedGroupChange::ParticipantsLeft(vec![by.clone()])
        };
        let Ok(group) = self.group(jid).await else { return };
        let listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        for (instance, listener) in listeners.iter() {
            if &listener.account != by && group.members.iter().any(|m| m.phone == listener.account) {
                let event = ConnectorReport::Group { group: jid.clone(), change: change.clone(), by: Some(by.clone()) };
                listener.events.report(*instance, event);
            }
        }
    }

    /// Messages connectors sent to the person, oldest first.
    pub async fn inbox(&self, phone: &PhoneNumber) -> Result<Vec<InboxMessage>, SandboxError> {
        match &self.backend {
            Backend::Local(local) => {
                let phone = phone.clone();
                local.reading(false, move |conn| store::inbox(conn, &phone)).await
            }
            Backend::Shared(shared) => shared::inbox(&mut *shared.conn().await?, phone).await,
        }
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
        // On a shared world, the cache reports it as it takes the new state in (see `cache`): this change may reach it
        // after another node's.
        if matches!(self.backend, Backend::Local(_)) && was_unreachable != self.faults().unreachable {
            self.report_states(self.meta()).await;
        }
        Ok(())
    }

    /// Reports to every listening instance its state under `meta` (the small state whose change is reported, not
    /// whatever the cache holds by the time each is read).
    async fn report_states(&self, meta: Meta) {
        let listeners: Vec<(PhoneNumber, InstanceId, Arc<dyn ConnectorReports>)> = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(instance, l)| (l.account.clone(), *instance, Arc::clone(&l.events)))
            .collect();
        for (account, instance, events) in listeners {
            let state = self.state_in(meta.clone(), &account).await;
            events.report(instance, ConnectorReport::StateChanged(state));
        }
    }

    /// `account`'s connection: unreachable while that fault is on (or while the sandbox cannot read its database),
    /// banned while a ban runs, otherwise connected.
    pub async fn state(&self, account: &PhoneNumber) -> InstanceState {
        self.state_in(self.meta(), account).await
    }

    async fn state_in(&self, meta: Meta, account: &PhoneNumber) -> InstanceState {
        match self.read_in(meta, Needs::account(account), |w, env| w.state(account, env.now)).await {
            Ok(state) => state,
            Err(e) => InstanceState::Unreachable { error: e.to_string(), since: self.clock.now(), next_retry_at: None },
        }
    }

    /// Waits the injected latency, then refuses a call that needs the network while it cannot be reached. The fault
    /// is read from the small state kept in memory, not from the database: every call of every number passes here.
    pub(crate) async fn reach(&self) -> Result<(), ConnectorError> {
        self.delay().await;
        let unreachable = self.meta.read().unwrap_or_else(PoisonError::into_inner).unreachable(self.clock.now());
        match unreachable {
            Some(state) => Err(ConnectorError::NotConnected(state.not_connected_reason().unwrap_or_default())),
            None => Ok(()),
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

    /// Transactions the sandbox has committed since it opened: fewer than its changes when changes commit together.
    pub fn transactions_committed(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
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
        self.read_in(self.meta(), needs, f).await
    }

    /// `read`, with this small state.
    async fn read_in<T>(&self, meta: Meta, needs: Needs, f: impl FnOnce(&World, &Env) -> T) -> Result<T, SandboxError> {
        let world = match &self.backend {
            Backend::Local(local) => match needs.only_group() {
                Some(jid) => {
                    let group = local.group(jid).await?;
                    World::view(meta, BTreeMap::new(), BTreeMap::new(), group.into_iter().collect())
                }
                None => {
                    let bulk = matches!(needs.groups, GroupsNeeded::All);
                    local.reading(bulk, move |conn| store::load(conn, meta, &needs)).await?
                }
            },
            Backend::Shared(shared) => shared::load(&mut *shared.conn().await?, meta, &needs).await?,
        };
        let env = Env::new(&self.config, self.clock.now());
        Ok(f(&world, &env))
    }

    /// Runs a change on a view of the world holding what `needs` names, and returns once what it touched is
    /// committed, whatever `f` returned (a failed call may still have moved the generator, and a lost reply still
    /// created its group). Changes apply one at a time, and those that queue meanwhile commit together (see
    /// [`Batch`]); on a shared world, one after another across all nodes. Nothing of a change is written when the
    /// database fails.
    pub(crate) async fn mutate<T, E: From<SandboxError>>(
        &self,
        needs: Needs,
        f: impl FnMut(&mut World, &Env) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Local(local) => self.mutate_local(local, needs, f).await,
            Backend::Shared(shared) => self.mutate_shared(shared, needs, f, |_| None).await,
        }
    }

    async fn mutate_local<T, E: From<SandboxError>>(
        &self,
        local: &Local,
        needs: Needs,
        mut f: impl FnMut(&mut World, &Env) -> Result<T, E>,
    ) -> Result<T, E> {
        let env = Env::new(&self.config, self.clock.now());
        let mut writer = Arc::clone(&local.writer).lock_owned().await;
        if writer.batch.is_some() && writer.conn.is_autocommit() {
            // SQLite undid the open transaction by itself (a full disk, an I/O error): its changes are gone.
            if let Some(lost) = writer.batch.take() {
                lost.committed.send_replace(Some(Err("SQLite undid the transaction after an error".to_owned())));
            }
        }
        if writer.batch.is_none() {
            writer = self.begin(local, writer).await?;
        }
        let result = match self.apply(&mut writer, &needs, &env, &mut f) {
            Ok(result) => result,
            Err(e) => {
                // Nothing of a batch that met a database error is kept, so that no half-written change is committed:
                // the others in it fail too (none of them has returned yet).
                let _ = writer.conn.execute_batch("ROLLBACK");
                if let Some(batch) = writer.batch.take() {
                    batch.committed.send_replace(Some(Err(e.to_string())));
                }
                return Err(e.into());
            }
        };
        let mut committed = writer.batch.as_ref().expect("a batch is open").committed.subscribe();
        if local.readers.is_none() {
            // In memory there is nothing to sync: commit now.
            let batch = writer.batch.take().expect("a batch is open");
            commit(&writer.conn, batch, &self.meta, &self.commits, &local.groups);
        }
        drop(writer);
        let outcome = match committed.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            Err(_) => Err("the commit was cut off".to_owned()),
        };
        outcome.map_err(store::db_error)?;
        result
    }

    /// Begins a batch on the writer; with a file, on a blocking thread (another connection holding the file's write
    /// lock would make `BEGIN IMMEDIATE` wait), and with its committer queued. A transaction open with no batch is
    /// undone first: a change dropped while it waited for that thread (its caller gone) let the writer go with the
    /// transaction begun, and a `ROLLBACK` that failed after an error would leave a batch's writes in one, which no
    /// later commit may keep (their changes were told they failed).
    async fn begin(
        &self,
        local: &Local,
        writer: OwnedMutexGuard<Writer>,
    ) -> Result<OwnedMutexGuard<Writer>, SandboxError> {
        let begin = |conn: &rusqlite::Connection| match conn.is_autocommit() {
            true => conn.execute_batch("BEGIN IMMEDIATE"),
            false => conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE"),
        };
        let (mut writer, begun) = match local.readers {
            None => {
                let begun = begin(&writer.conn);
                (writer, begun)
            }
            Some(_) => tokio::task::spawn_blocking(move || {
                let begun = begin(&writer.conn);
                (writer, begun)
            })
            .await
            .map_err(|e| SandboxError::Io(format!("beginning a sandbox transaction: {e}")))?,
        };
        begun.map_err(store::db_error)?;
        writer.batch = Some(Batch {
            changes: 0,
            meta: None,
            groups: Vec::new(),
            committed: tokio::sync::watch::Sender::new(None),
        });
        if local.readers.is_some() {
            self.commit_when_joined(local);
        }
        Ok(writer)
    }

    /// Commits the batch just opened once the changes queued for the writer before this task have joined it: the
    /// task queues behind them (the writer's lock is fair). A task of its own, so that the batch is committed even
    /// when the call that opened it is dropped; the sync runs on a blocking thread, holding the writer.
    fn commit_when_joined(&self, local: &Local) {
        let (writer, meta, commits) = (Arc::clone(&local.writer), Arc::clone(&self.meta), Arc::clone(&self.commits));
        let groups = Arc::clone(&local.groups);
        tokio::spawn(async move {
            let mut writer = writer.lock_owned().await;
            let Some(batch) = writer.batch.take() else { return };
            // Should the blocking thread fail, the batch's changes hear that their commit was cut off.
            let _ = tokio::task::spawn_blocking(move || commit(&writer.conn, batch, &meta, &commits, &groups)).await;
        });
    }

    /// One change in a savepoint of the open batch. A new group's id is drawn from the generator and checked against
    /// the database: when it is taken (by a group the view did not load), the savepoint is rolled back and the change
    /// runs again from the same state, drawing past that id, so `f` may run more than once. The database, not this
    /// process, knows which ids are in use: nothing of the world is read into memory to start.
    fn apply<T, E>(
        &self,
        writer: &mut Writer,
        needs: &Needs,
        env: &Env<'_>,
        f: &mut impl FnMut(&mut World, &Env) -> Result<T, E>,
    ) -> Result<Result<T, E>, SandboxError> {
        let batch = writer.batch.as_mut().expect("a batch is open");
        let mut known_taken = BTreeSet::new();
        loop {
            // Dropped before its commit (an error, a taken id, a panic in `f`), the savepoint is rolled back.
            let change = writer.conn.savepoint().map_err(store::db_error)?;
            let meta = store::meta(&change)?.ok_or_else(|| store::db_error("no world"))?;
            if batch.changes == 0 {
                // As committed: a change that committed may have been dropped before the cache heard of it.
                *self.meta.write().unwrap_or_else(PoisonError::into_inner) = meta.clone();
            }
            let mut world = store::load(&change, meta, needs)?;
            world.known_taken.clone_from(&known_taken);
            let result = f(&mut world, env);
            let changes = world.take_changes();
            if let Some(taken) = store::first_taken_id(&change, &changes.created)? {
                known_taken.insert(taken);
                continue;
            }
            store::save(&change, &changes, self.config.inbox_limit)?;
            change.commit().map_err(store::db_error)?;
            batch.changes += 1;
            if let Some(meta) = changes.meta {
                batch.meta = Some(meta);
            }
            batch.groups.extend(changes.created);
            batch.groups.extend(changes.groups);
            return Ok(result);
        }
    }

    /// A change on a shared world: one transaction that locks the small state first, so that changes from every
    /// node apply in turn. As on one node, a new group's id taken already (here: by a group the view did not load)
    /// makes the change run again from the same state, drawing past it; nothing is written before that check.
    async fn mutate_shared<T, E: From<SandboxError>>(
        &self,
        shared: &Shared,
        needs: Needs,
        mut f: impl FnMut(&mut World, &Env) -> Result<T, E>,
        report_of: impl Fn(&T) -> Option<&PersonReport>,
    ) -> Result<T, E> {
        // One change of this node at a time waits for the world's lock, holding one connection: the others wait
        // here, leaving the pool's other connections to reads. The time is read once it is this change's turn.
        let _turn = shared.turn.lock().await;
        let env = Env::new(&self.config, self.clock.now());
        let mut tx = shared.pool.begin().await.map_err(store::db_error)?;
        let current = shared::meta(&mut tx, true).await?;
        let mut known_taken = BTreeSet::new();
        loop {
            let mut world = shared::load(&mut tx, current.meta.clone(), &needs).await?;
            world.known_taken.clone_from(&known_taken);
            let result = f(&mut world, &env);
            let changes = world.take_changes();
            if let Some(taken) = shared::first_taken_id(&mut tx, &changes.created).await? {
                known_taken.insert(taken);
                continue;
            }
            let version = shared::save(&mut tx, &changes, self.config.inbox_limit).await?;
            if let Some(report) = result.as_ref().ok().and_then(&report_of) {
                shared::write_report(&mut tx, shared.origin, report).await?;
            }
            tx.commit().await.map_err(store::db_error)?;
            self.commits.fetch_add(1, Ordering::Relaxed);
            let committed = match (version, changes.meta) {
                (Some(version), Some(meta)) => Versioned { version, meta },
                _ => current,
            };
            if let Some(flipped) = self.cache(shared, committed) {
                self.report_states(flipped).await;
            }
            return result;
        }
    }

    /// Keeps a shared world's small state in the cache unless the cache holds a later one. Returns it when an
    /// outage started or ended with it: the caller reports that to the instances here, once, whichever change or
    /// read of the state brought it in. (An outage that starts and ends between two reads of another node's change
    /// is not seen here.)
    fn cache(&self, shared: &Shared, committed: Versioned) -> Option<Meta> {
        let mut meta = self.meta.write().unwrap_or_else(PoisonError::into_inner);
        if committed.version <= shared.version.load(Ordering::Relaxed) {
            return None;
        }
        let flipped = meta.faults.unreachable != committed.meta.faults.unreachable;
        shared.version.store(committed.version, Ordering::Relaxed);
        *meta = committed.meta;
        flipped.then(|| meta.clone())
    }
}

impl Local {
    /// A group as last committed: from the cache, or read (and kept).
    async fn group(&self, jid: &GroupJid) -> Result<Option<GroupState>, SandboxError> {
        match self.groups.get(jid) {
            Ok(group) => Ok(Some(group)),
            Err(missed) => {
                let reading = jid.clone();
                let group = self.reading(false, move |conn| store::group(conn, &reading)).await?;
                if let Some(group) = &group {
                    self.groups.keep(missed, group);
                }
                Ok(group)
            }
        }
    }

    /// Runs `read` on a connection that sees the last commit: inline (a few rows by index, from the page cache), or
    /// on a blocking thread when `bulk` (the whole world, a page of it).
    async fn reading<T: Send + 'static>(
        &self,
        bulk: bool,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, SandboxError> + Send + 'static,
    ) -> Result<T, SandboxError> {
        match &self.readers {
            Some(readers) if bulk => {
                let readers = Arc::clone(readers);
                tokio::task::spawn_blocking(move || readers.run(read))
                    .await
                    .map_err(|e| SandboxError::Io(format!("reading the sandbox's database: {e}")))?
            }
            Some(readers) => readers.run(read),
            // In memory, a change commits before it lets the writer go: what its connection holds is committed.
            None => read(&self.writer.lock().await.conn),
        }
    }
}

impl Shared {
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, SandboxError> {
        self.pool.acquire().await.map_err(store::db_error)
    }
}

/// Follows a shared world while the network is open: its small state (faults another node set, reported to the
/// instances here when an outage starts or ends) and what people did through other nodes (reported to the members
/// listening here). A pass that fails is tried again at the next.
async fn follow(network: std::sync::Weak<SandboxNetwork>, mut after: i64) {
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let Some(network) = network.upgrade() else { return };
        let Backend::Shared(shared) = &network.backend else { return };
        let committed = match shared.conn().await {
            Ok(mut conn) => shared::meta(&mut conn, false).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(committed) => {
                if let Some(flipped) = network.cache(shared, committed) {
                    network.report_states(flipped).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read the shared sandbox's state"),
        }
        match shared::reports_after(&shared.pool, after, shared.origin).await {
            Ok((reports, last)) => {
                after = last;
                for report in reports {
                    network.notify_listeners(&report).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read the shared sandbox's reports"),
        }
    }
}

/// A number telling this process apart from the other nodes on a shared world.
fn random_origin() -> i64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    i64::from_ne_bytes(hasher.finish().to_ne_bytes())
}

/// Commits `batch` on `conn` and tells its changes how it went. The cache and the count follow the commit before the
/// writer is let go, so that a later batch's state is never overwritten by an earlier one's.
fn commit(conn: &rusqlite::Connection, batch: Batch, meta: &RwLock<Meta>, commits: &AtomicU64, cache: &GroupCache) {
    let Batch { meta: latest, groups, committed, .. } = batch;
    let outcome = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    match &outcome {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            if let Some(latest) = latest {
                *meta.write().unwrap_or_else(PoisonError::into_inner) = latest;
            }
            cache.committed(groups);
        }
        Err(_) => {
            // A commit that failed may leave its transaction open: end it, for the next batch to begin.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            cache.failed(&groups);
        }
    }
    committed.send_replace(Some(outcome));
}

/// Opens the world's database, importing an older world file beside it into a new one, or starting a new world.
fn open_world(
    path: Option<&std::path::Path>,
    config: &SandboxConfig,
) -> Result<(rusqlite::Connection, Meta), SandboxError> {
    let mut conn = store::open(path)?;
    if let Some(meta) = store::meta(&conn)? {
        return Ok((conn, meta));
    }
    let legacy_path = path.map(|p| p.with_extension("json"));
    let legacy = match &legacy_path {
        Some(p) => legacy::read(p, config.inbox_limit)?,
        None => None,
    };
    let meta = match legacy {
        Some(world) => {
            let parts = world.into_parts();
            let meta = parts.meta.clone();
            store::import(&mut conn, parts, config.inbox_limit)?;
            meta
        }
        None => {
            let meta = World::new(config.seed, config.faults.clone(), config.network_limits.clone()).meta();
            store::write_meta(&conn, &meta)?;
            meta
        }
    };
    if let Some(p) = &legacy_path {
        legacy::set_aside(p)?;
    }
    Ok((conn, meta))
}
