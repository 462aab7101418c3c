//! The network's rules over a view of the world. No I/O, no clock, no locks: the caller passes the time in [`Env`].
//!
//! A [`World`] holds what one call needs (the small state, and the people, numbers' limits and groups the call
//! names), loaded from the sandbox's database (`store.rs`); every change notes what it touched, and
//! [`World::take_changes`] hands those parts over to be written back. A world file of an older Convene is a whole
//! world in this shape, read once to be imported (`legacy.rs`, which replays its journal with [`World::apply`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use convene_core::connector::{CreateGroupRequest, CreatedGroup};
use convene_core::{
    AddRequest, ConnectorError, GroupDescription, GroupJid, GroupMember, GroupMetadata, GroupSubject, InstanceState,
    MemberRole, ParticipantChange, ParticipantResult, PhoneNumber, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::{
    Faults, GroupAddPrivacy, InboxKind, InboxMessage, JoinResult, NetworkLimits, NetworkStats, Person, PersonPatch,
    SandboxConfig, SandboxError, SandboxGroup,
};

/// What a call needs besides the world: the configuration and the time.
pub(crate) struct Env<'a> {
    pub config: &'a SandboxConfig,
    pub now: Timestamp,
    /// How the world sees a number it has never been told about.
    pub unknown: PersonState,
}

impl<'a> Env<'a> {
    pub fn new(config: &'a SandboxConfig, now: Timestamp) -> Self {
        let unknown = PersonState { registered: config.unknown_numbers_registered, ..PersonState::default() };
        Self { config, now, unknown }
    }
}

/// SplitMix64: tiny, good enough for ids and fault draws, and its whole state is one persisted number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `rate`; a zero rate draws nothing, so fault-free runs keep their sequence.
    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < rate
    }

    fn code(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| char::from(ALPHABET[self.below(ALPHABET.len() as u64) as usize])).collect()
    }

    /// A group's invite code: 22 letters and digits, as WhatsApp's; the first 6 are the second it was made, in base 62
    /// with digits in ASCII's order, and the other 16 are drawn at random (95 bits). Drawn whole, each new code went
    /// to a page anywhere in the index of every code ever made (`groups_by_invite_code`), and at 100,000 groups
    /// nearly every creation wrote a page of its own there; codes that begin with the time go to the index's end (on
    /// SQLite, which orders text byte by byte; a shared world's PostgreSQL orders it by its collation, near enough).
    fn invite_code(&mut self, now: Timestamp) -> String {
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut second = u64::try_from(now.as_millis() / 1000).unwrap_or(0);
        let mut time = [0u8; 6];
        for digit in time.iter_mut().rev() {
            *digit = DIGITS[(second % 62) as usize];
            second /= 62;
        }
        time.iter().map(|&d| char::from(d)).collect::<String>() + &self.code(16)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersonState {
    registered: bool,
    group_add: GroupAddPrivacy,
    contacts: BTreeSet<PhoneNumber>,
    blocked: BTreeSet<PhoneNumber>,
    name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GroupState {
    info: SandboxGroup,
    /// The add-request code each person got with their latest 403 privacy refusal.
    add_requests: BTreeMap<PhoneNumber, AddRequest>,
    /// When each person last left of their own accord.
    left_at: BTreeMap<PhoneNumber, Timestamp>,
}

impl GroupState {
    pub fn info(&self) -> &SandboxGroup {
        &self.info
    }

    /// People the group remembers besides its members: those who got an add request, and those who left.
    pub fn people_remembered(&self) -> usize {
        self.add_requests.len() + self.left_at.len()
    }

    #[cfg(test)]
    pub fn of(info: SandboxGroup) -> Self {
        Self { info, add_requests: BTreeMap::new(), left_at: BTreeMap::new() }
    }

    fn role(&self, phone: &PhoneNumber) -> Option<MemberRole> {
        self.info.members.iter().find(|m| &m.phone == phone).map(|m| m.role)
    }

    fn is_full(&self, env: &Env) -> bool {
        self.info.members.len() >= env.config.max_group_size
    }

    fn join(&mut self, phone: &PhoneNumber, role: MemberRole) {
        self.info.members.push(GroupMember { phone: phone.clone(), role });
        self.add_requests.remove(phone);
        self.info.pending_join_requests.retain(|p| p != phone);
    }

    fn remove(&mut self, phone: &PhoneNumber) {
        self.info.members.retain(|m| &m.phone != phone);
        self.ensure_admin();
    }

    /// When no admin remains, the longest-standing member becomes one, so that a group is never left without anyone
    /// able to manage it (WhatsApp does much the same).
    fn ensure_admin(&mut self) {
        if !self.info.members.iter().any(|m| m.role.is_admin())
            && let Some(oldest) = self.info.members.first_mut()
        {
            oldest.role = MemberRole::Admin;
        }
    }

    fn metadata(&self) -> GroupMetadata {
        let g = &self.info;
        GroupMetadata {
            jid: g.jid.clone(),
            subject: g.subject.clone(),
            description: g.description.clone(),
            creator: Some(g.creator.clone()),
            created_at: g.created_at,
            settings: g.settings,
            members: g.members.clone(),
        }
    }

    /// The per-person add rule shared by creation and `change_participants(Add)`: a WhatsApp status code and, on a
    /// privacy refusal, the add request the person can accept later.
    fn add(
        &mut self,
        adder: &PhoneNumber,
        phone: &PhoneNumber,
        person: &PersonState,
        rng: &mut Rng,
        env: &Env,
    ) -> (u16, Option<AddRequest>) {
        if !person.registered {
            return (404, None);
        }
        if self.role(phone).is_some() {
            return (409, None);
        }
        if self.is_full(env) {
            return (500, None);
        }
        if person.blocked.contains(adder) {
            return (403, None);
        }
        if let Some(left) = self.left_at.get(phone)
            && left.plus(Duration::from_secs(env.config.recently_left_secs)) > env.now
        {
            return (408, None);
        }
        let allowed = match person.group_add {
            GroupAddPrivacy::Everyone => true,
            GroupAddPrivacy::Contacts => person.contacts.contains(adder),
            GroupAddPrivacy::Nobody => false,
        };
        if !allowed {
            let request = AddRequest {
                code: rng.code(16),
                expires_at: env.now.plus(Duration::from_secs(env.config.add_request_ttl_secs)),
            };
            self.add_requests.insert(phone.clone(), request.clone());
            return (403, Some(request));
        }
        self.join(phone, MemberRole::Member);
        (200, None)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct World {
    /// In a world file of an older Convene, the last journal entry its snapshot includes.
    #[serde(default)]
    pub seq: u64,
    rng: Rng,
    faults: Faults,
    #[serde(default)]
    limits: NetworkLimits,
    /// Per number: creations and limit refusals within the last day, and a ban's end.
    #[serde(default)]
    accounts: BTreeMap<PhoneNumber, AccountLimits>,
    #[serde(default)]
    stats: NetworkStats,
    /// When the `unreachable` fault was switched on, while it is.
    #[serde(default)]
    unreachable_since: Option<Timestamp>,
    people: BTreeMap<PhoneNumber, PersonState>,
    /// In creation order.
    groups: Vec<GroupState>,
    /// In a world file: each person's latest messages, oldest first, at most `inbox_limit` of them. A view holds
    /// none (a message only goes into [`Changes::messages`]).
    #[serde(default)]
    inboxes: BTreeMap<PhoneNumber, VecDeque<InboxMessage>>,
    #[serde(skip)]
    by_jid: HashMap<GroupJid, usize>,
    /// Group ids an earlier try of this change drew and found taken in the database, to draw past them (a view
    /// holds only the groups its call needs, so the database is where an id is known to be in use).
    #[serde(skip)]
    pub known_taken: BTreeSet<GroupJid>,
    /// What changes touched since [`World::take_changes`] last ran.
    #[serde(skip)]
    touched: Touched,
    /// The small state last handed over as [`Change::Meta`], to hand it over again only when it differs.
    #[serde(skip)]
    taken_meta: Option<Meta>,
}

#[derive(Clone, Debug, Default)]
struct Touched {
    accounts: BTreeSet<PhoneNumber>,
    people: BTreeSet<PhoneNumber>,
    /// Positions in `groups` of groups that were there before.
    groups: BTreeSet<usize>,
    /// Positions in `groups` of new groups.
    created: BTreeSet<usize>,
    messages: Vec<(PhoneNumber, InboxMessage)>,
}

/// What a call changed, each part in its new state, to be written back.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub meta: Option<Meta>,
    pub accounts: Vec<(PhoneNumber, AccountLimits)>,
    pub people: Vec<(PhoneNumber, PersonState)>,
    pub created: Vec<GroupState>,
    pub groups: Vec<GroupState>,
    pub messages: Vec<(PhoneNumber, InboxMessage)>,
}

/// The world's small state, all in one journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    rng: Rng,
    pub faults: Faults,
    pub limits: NetworkLimits,
    pub stats: NetworkStats,
    unreachable_since: Option<Timestamp>,
}

/// The new state of one part of the world, as an entry of an older Convene's journal holds it: replaying the
/// entries in order on the snapshot they follow gives the world back.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Change {
    Meta(Meta),
    Account {
        phone: PhoneNumber,
        limits: AccountLimits,
    },
    Person {
        phone: PhoneNumber,
        state: PersonState,
    },
    /// A new group (appended in creation order) or a group's new state.
    Group(Box<GroupState>),
    /// A message into a person's inbox (the oldest dropped beyond the limit).
    Message {
        to: PhoneNumber,
        message: InboxMessage,
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct AccountLimits {
    creations: Vec<Timestamp>,
    hits: Vec<Timestamp>,
    banned_until: Option<Timestamp>,
}

const DAY: Duration = Duration::from_secs(86_400);

/// The error an instance shows while the `unreachable` fault is on.
const UNREACHABLE: &str = "the sandbox network cannot be reached (the `unreachable` fault is on)";

/// Every connection's state while the `unreachable` fault is on (since `since`, or now); `None` while it is off.
fn unreachable(faults: &Faults, since: Option<Timestamp>, now: Timestamp) -> Option<InstanceState> {
    faults.unreachable.then(|| InstanceState::Unreachable {
        error: UNREACHABLE.to_owned(),
        since: since.unwrap_or(now),
        // The sandbox tries again the moment the fault is switched off.
        next_retry_at: None,
    })
}

impl Meta {
    /// Every connection's state while the `unreachable` fault is on; `None` while it is off.
    pub fn unreachable(&self, now: Timestamp) -> Option<InstanceState> {
        unreachable(&self.faults, self.unreachable_since, now)
    }
}

impl AccountLimits {
    fn forget_older_than_a_day(&mut self, now: Timestamp) {
        self.creations.retain(|t| t.plus(DAY) > now);
        self.hits.retain(|t| t.plus(DAY) > now);
    }

    fn ban(&self, now: Timestamp) -> Option<Timestamp> {
        self.banned_until.filter(|until| *until > now)
    }

    /// The limits read only the latest `max_per_day` creations and `ban_after_hits` refusals: keeping no more
    /// bounds what a number's journal entry holds, however fast it creates with the limits off.
    fn keep_what_limits_read(&mut self, limits: &NetworkLimits) {
        fn keep_latest(times: &mut Vec<Timestamp>, n: u32) {
            let excess = times.len().saturating_sub(n.max(1) as usize);
            times.drain(..excess);
        }
        keep_latest(&mut self.creations, limits.max_per_day);
        keep_latest(&mut self.hits, limits.ban_after_hits);
    }

    /// When the limits would next allow a creation, if not now.
    fn refused_until(&self, limits: &NetworkLimits, now: Timestamp) -> Option<Timestamp> {
        let too_soon = self.creations.last().map(|t| t.plus(Duration::from_secs(limits.min_interval_secs)));
        let over_day = (self.creations.len() >= limits.max_per_day as usize)
            .then(|| self.creations[self.creations.len() - limits.max_per_day.max(1) as usize].plus(DAY));
        [too_soon, over_day].into_iter().flatten().filter(|t| *t > now).max()
    }
}

fn rejected(code: u16, text: impl Into<String>) -> ConnectorError {
    ConnectorError::Rejected { code, text: text.into() }
}

impl World {
    pub fn new(seed: u64, faults: Faults, limits: NetworkLimits) -> Self {
        Self {
            seq: 0,
            rng: Rng(seed),
            faults,
            limits,
            accounts: BTreeMap::new(),
            stats: NetworkStats::default(),
            unreachable_since: None,
            people: BTreeMap::new(),
            groups: Vec::new(),
            inboxes: BTreeMap::new(),
            by_jid: HashMap::new(),
            known_taken: BTreeSet::new(),
            touched: Touched::default(),
            taken_meta: None,
        }
    }

    /// The part of the world a call needs, as loaded from the database.
    pub fn view(
        meta: Meta,
        accounts: BTreeMap<PhoneNumber, AccountLimits>,
        people: BTreeMap<PhoneNumber, PersonState>,
        groups: Vec<GroupState>,
    ) -> Self {
        let Meta { rng, faults, limits, stats, unreachable_since } = meta.clone();
        let by_jid = groups.iter().enumerate().map(|(i, g)| (g.info.jid.clone(), i)).collect();
        Self {
            seq: 0,
            rng,
            faults,
            limits,
            accounts,
            stats,
            unreachable_since,
            people,
            groups,
            inboxes: BTreeMap::new(),
            by_jid,
            known_taken: BTreeSet::new(),
            touched: Touched::default(),
            taken_meta: Some(meta),
        }
    }

    /// A whole world (read from an older Convene's file), in parts to write into the database.
    pub fn into_parts(self) -> WorldParts {
        let meta = self.meta();
        WorldParts { meta, accounts: self.accounts, people: self.people, groups: self.groups, inboxes: self.inboxes }
    }

    pub fn meta(&self) -> Meta {
        Meta {
            rng: self.rng.clone(),
            faults: self.faults.clone(),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
            unreachable_since: self.unreachable_since,
        }
    }

    /// What changed since the last call, each part in its new state.
    pub fn take_changes(&mut self) -> Changes {
        let touched = std::mem::take(&mut self.touched);
        let meta = Some(self.meta()).filter(|meta| self.taken_meta.as_ref() != Some(meta));
        if meta.is_some() {
            self.taken_meta.clone_from(&meta);
        }
        Changes {
            meta,
            accounts: touched
                .accounts
                .into_iter()
                .filter_map(|phone| Some((phone.clone(), self.accounts.get(&phone)?.clone())))
                .collect(),
            people: touched
                .people
                .into_iter()
                .filter_map(|phone| Some((phone.clone(), self.people.get(&phone)?.clone())))
                .collect(),
            created: touched.created.iter().map(|&i| self.groups[i].clone()).collect(),
            groups: touched.groups.difference(&touched.created).map(|&i| self.groups[i].clone()).collect(),
            messages: touched.messages,
        }
    }

    /// Replays an entry of an older Convene's journal.
    pub fn apply(&mut self, change: Change, inbox_limit: usize) {
        match change {
            Change::Meta(meta) => {
                let Meta { rng, faults, limits, stats, unreachable_since } = meta.clone();
                (self.rng, self.faults, self.limits, self.stats, self.unreachable_since) =
                    (rng, faults, limits, stats, unreachable_since);
                self.taken_meta = Some(meta);
            }
            Change::Account { phone, limits } => {
                self.accounts.insert(phone, limits);
            }
            Change::Person { phone, state } => {
                self.people.insert(phone, state);
            }
            Change::Group(group) => match self.by_jid.get(&group.info.jid) {
                Some(&i) => self.groups[i] = *group,
                None => {
                    self.by_jid.insert(group.info.jid.clone(), self.groups.len());
                    self.groups.push(*group);
                }
            },
            Change::Message { to, message } => self.deliver(to, message, inbox_limit),
        }
    }

    fn deliver(&mut self, to: PhoneNumber, message: InboxMessage, inbox_limit: usize) {
        let inbox = self.inboxes.entry(to).or_default();
        inbox.push_back(message);
        while inbox.len() > inbox_limit {
            inbox.pop_front();
        }
    }

    /// The group at position `i`, noted as changed.
    fn group_mut(&mut self, i: usize) -> &mut GroupState {
        self.touched.groups.insert(i);
        &mut self.groups[i]
    }

    /// Reads a world file of an older Convene.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SandboxError> {
        let mut world: Self = convene_core::phone::reading_stored(|| serde_json::from_slice(bytes))
            .map_err(|e| SandboxError::Io(format!("unreadable: {e}")))?;
        world.by_jid = world.groups.iter().enumerate().map(|(i, g)| (g.info.jid.clone(), i)).collect();
        world.taken_meta = Some(world.meta());
        Ok(world)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn set_faults(&mut self, faults: Faults, now: Timestamp) -> Result<(), SandboxError> {
        faults.validate()?;
        self.faults = faults;
        self.note_outage(now);
        Ok(())
    }

    /// Starts or ends the outage the `unreachable` fault stands for, keeping when it began.
    pub fn note_outage(&mut self, now: Timestamp) {
        match (self.faults.unreachable, self.unreachable_since) {
            (true, None) => self.unreachable_since = Some(now),
            (false, Some(_)) => self.unreachable_since = None,
            _ => {}
        }
    }

    /// `account`'s connection as the network stands: cut off by the `unreachable` fault, banned, or connected.
    pub fn state(&self, account: &PhoneNumber, now: Timestamp) -> InstanceState {
        if let Some(state) = unreachable(&self.faults, self.unreachable_since, now) {
            return state;
        }
        match self.ban(account, now) {
            Some(until) => InstanceState::TemporarilyBanned { until: Some(until) },
            None => InstanceState::Connected,
        }
    }

    pub fn set_network_limits(&mut self, limits: NetworkLimits) {
        self.limits = limits;
    }

    /// The ban on `account`, if one is running.
    pub fn ban(&self, account: &PhoneNumber, now: Timestamp) -> Option<Timestamp> {
        self.accounts.get(account).and_then(|a| a.ban(now))
    }

    /// The network's creation limits for `account`: a running ban, or a refusal that may start one. Counts the
    /// creation when it is allowed.
    fn admit_creation(&mut self, account: &PhoneNumber, now: Timestamp) -> Result<(), ConnectorError> {
        let limits = self.limits.clone();
        self.touched.accounts.insert(account.clone());
        let state = self.accounts.entry(account.clone()).or_default();
        state.forget_older_than_a_day(now);
        if let Some(until) = state.ban(now) {
            return Err(ConnectorError::TemporarilyBanned { until: Some(until) });
        }
        if limits.enabled
            && let Some(until) = state.refused_until(&limits, now)
        {
            state.hits.push(now);
            state.keep_what_limits_read(&limits);
            self.stats.rate_limit_hits += 1;
            if state.hits.len() >= limits.ban_after_hits.max(1) as usize {
                let until = now.plus(Duration::from_secs(limits.ban_secs));
                state.banned_until = Some(until);
                self.stats.bans += 1;
                return Err(ConnectorError::TemporarilyBanned { until: Some(until) });
            }
            return Err(ConnectorError::RateLimited { retry_after: Some(now.until(until)) });
        }
        state.creations.push(now);
        state.keep_what_limits_read(&limits);
        self.stats.groups_created += 1;
        Ok(())
    }

    /// The error-rate draw every changing connector call makes before it does anything.
    fn inject_error(&mut self) -> Result<(), ConnectorError> {
        if self.rng.chance(self.faults.error_rate) {
            return Err(ConnectorError::Other("injected fault".into()));
        }
        Ok(())
    }

    fn person_state<'a>(&'a self, phone: &PhoneNumber, env: &'a Env) -> &'a PersonState {
        self.people.get(phone).unwrap_or(&env.unknown)
    }

    fn index(&self, jid: &GroupJid) -> Result<usize, SandboxError> {
        self.by_jid.get(jid).copied().ok_or(SandboxError::UnknownGroup)
    }

    /// The group, if `account` is in it: outsiders cannot tell a group they are not in from one that does not exist.
    fn member_group(&self, jid: &GroupJid, account: &PhoneNumber) -> Result<usize, ConnectorError> {
        let i = self.index(jid).map_err(|_| ConnectorError::GroupNotFound)?;
        self.groups[i].role(account).map(|_| i).ok_or(ConnectorError::GroupNotFound)
    }

    fn admin_group(&self, jid: &GroupJid, account: &PhoneNumber) -> Result<usize, ConnectorError> {
        let i = self.member_group(jid, account)?;
        match self.groups[i].role(account) {
            Some(role) if role.is_admin() => Ok(i),
            _ => Err(ConnectorError::NotAdmin),
        }
    }

    // ---- scripting ----

    pub fn register(&mut self, account: &PhoneNumber, env: &Env) {
        if self.people.get(account).is_some_and(|p| p.registered) {
            return;
        }
        self.touched.people.insert(account.clone());
        let person = self.people.entry(account.clone()).or_insert_with(|| env.unknown.clone());
        person.registered = true;
    }

    pub fn person(&self, phone: &PhoneNumber, env: &Env) -> Person {
        let p = self.person_state(phone, env);
        Person {
            phone: phone.clone(),
            registered: p.registered,
            group_add: p.group_add,
            contacts: p.contacts.iter().cloned().collect(),
            blocked: p.blocked.iter().cloned().collect(),
            name: p.name.clone(),
        }
    }

    pub fn upsert_person(&mut self, phone: &PhoneNumber, patch: &PersonPatch, env: &Env) -> Person {
        self.touched.people.insert(phone.clone());
        let p = self.people.entry(phone.clone()).or_insert_with(|| env.unknown.clone());
        if let Some(registered) = patch.registered {
            p.registered = registered;
        }
        if let Some(group_add) = patch.group_add {
            p.group_add = group_add;
        }
        p.contacts.extend(patch.add_contacts.iter().cloned());
        for c in &patch.remove_contacts {
            p.contacts.remove(c);
        }
        p.blocked.extend(patch.block.iter().cloned());
        for b in &patch.unblock {
            p.blocked.remove(b);
        }
        if patch.name.is_some() {
            p.name.clone_from(&patch.name);
        }
        self.person(phone, env)
    }

    pub fn group(&self, jid: &GroupJid) -> Result<SandboxGroup, SandboxError> {
        Ok(self.groups[self.index(jid)?].info.clone())
    }

    pub fn groups(&self) -> Vec<SandboxGroup> {
        self.groups.iter().map(|g| g.info.clone()).collect()
    }

    pub fn person_leaves(&mut self, jid: &GroupJid, phone: &PhoneNumber, env: &Env) -> Result<(), SandboxError> {
        let i = self.index(jid)?;
        let g = self.group_mut(i);
        if g.role(phone).is_none() {
            return Err(SandboxError::NotMember);
        }
        g.remove(phone);
        g.left_at.insert(phone.clone(), env.now);
        Ok(())
    }

    pub fn accept_invite(
        &mut self,
        phone: &PhoneNumber,
        jid: &GroupJid,
        env: &Env,
    ) -> Result<JoinResult, SandboxError> {
        let i = self.index(jid)?;
        if !self.person_state(phone, env).registered {
            return Err(SandboxError::NotRegistered);
        }
        let g = self.group_mut(i);
        if g.role(phone).is_some() {
            return Err(SandboxError::AlreadyMember);
        }
        let request = g.add_requests.get(phone).ok_or(SandboxError::NotInvited)?;
        if request.expires_at <= env.now {
            return Err(SandboxError::InviteExpired);
        }
        if g.is_full(env) {
            return Err(SandboxError::GroupFull);
        }
        // An invite from an admin needs no approval.
        g.join(phone, MemberRole::Member);
        Ok(JoinResult::Joined)
    }

    /// The group an invite link (or its code) opens.
    pub fn group_by_invite_code(&self, code: &str) -> Option<GroupJid> {
        let code = invite_code_of(code);
        self.groups.iter().find(|g| g.info.invite_code == code).map(|g| g.info.jid.clone())
    }

    pub fn join_by_link(&mut self, phone: &PhoneNumber, code: &str, env: &Env) -> Result<JoinResult, SandboxError> {
        let code = invite_code_of(code);
        let g = self.groups.iter().position(|g| g.info.invite_code == code).ok_or(SandboxError::InvalidInviteCode)?;
        if !self.person_state(phone, env).registered {
            return Err(SandboxError::NotRegistered);
        }
        let g = self.group_mut(g);
        if g.role(phone).is_some() {
            return Err(SandboxError::AlreadyMember);
        }
        if g.is_full(env) {
            return Err(SandboxError::GroupFull);
        }
        if g.info.settings.join_approval {
            if !g.info.pending_join_requests.contains(phone) {
                g.info.pending_join_requests.push(phone.clone());
            }
            return Ok(JoinResult::Pending);
        }
        g.join(phone, MemberRole::Member);
        Ok(JoinResult::Joined)
    }

    // ---- connector calls, made as `account` ----

    pub fn create_group(
        &mut self,
        account: &PhoneNumber,
        request: &CreateGroupRequest,
        env: &Env,
    ) -> Result<CreatedGroup, ConnectorError> {
        self.inject_error()?;
        check_subject(request.subject.as_str())?;
        if let Some(d) = &request.description {
            check_description(d.as_str())?;
        }
        self.admit_creation(account, env.now)?;
        // Ids increase with each creation (the count of creations, then three drawn digits): each new group's id
        // lands at the end of the indexes that hold it, in this database and in Convene's, rather than on a page
        // anywhere in them. Ids drawn at random by an older Convene are skipped like any other taken id.
        let jid = loop {
            let number = (self.stats.groups_created % 1_000_000_000) * 1_000 + self.rng.below(1_000);
            let jid = GroupJid::parse(&format!("120363{number:012}@g.us")).expect("digits make a valid group jid");
            if !self.by_jid.contains_key(&jid) && !self.known_taken.contains(&jid) {
                break jid;
            }
        };
        let mut group = GroupState {
            info: SandboxGroup {
                jid: jid.clone(),
                subject: request.subject.as_str().to_owned(),
                description: request.description.as_ref().map(|d| d.as_str().to_owned()).filter(|d| !d.is_empty()),
                creator: account.clone(),
                created_at: env.now,
                settings: request.settings,
                members: vec![GroupMember { phone: account.clone(), role: MemberRole::Creator }],
                invite_code: self.rng.invite_code(env.now),
                creation_key: request.key.0.clone(),
                pending_join_requests: Vec::new(),
                has_picture: false,
            },
            add_requests: BTreeMap::new(),
            left_at: BTreeMap::new(),
        };
        let participants = request
            .participants
            .iter()
            .filter(|p| *p != account)
            .map(|p| {
                let person = self.people.get(p).unwrap_or(&env.unknown);
                let (code, add_request) = group.add(account, p, person, &mut self.rng, env);
                ParticipantResult::from_wa(ParticipantChange::Add, p.clone(), code, add_request)
            })
            .collect();
        let metadata = group.metadata();
        self.by_jid.insert(jid, self.groups.len());
        self.touched.created.insert(self.groups.len());
        self.groups.push(group);
        if self.rng.chance(self.faults.reply_lost_rate) {
            return Err(ConnectorError::OutcomeUnknown);
        }
        Ok(CreatedGroup { metadata, participants })
    }

    pub fn find_created_group(&self, account: &PhoneNumber, key: &str) -> Option<GroupMetadata> {
        self.groups.iter().find(|g| &g.info.creator == account && g.info.creation_key == key).map(GroupState::metadata)
    }

    pub fn group_metadata(&self, account: &PhoneNumber, jid: &GroupJid) -> Result<GroupMetadata, ConnectorError> {
        Ok(self.groups[self.member_group(jid, account)?].metadata())
    }

    pub fn joined_groups(&self, account: &PhoneNumber) -> Vec<GroupMetadata> {
        self.groups.iter().filter(|g| g.role(account).is_some()).map(GroupState::metadata).collect()
    }

    pub fn change_participants(
        &mut self,
        account: &PhoneNumber,
        jid: &GroupJid,
        change: ParticipantChange,
        people: &[PhoneNumber],
        env: &Env,
    ) -> Result<Vec<ParticipantResult>, ConnectorError> {
        self.inject_error()?;
        let i = self.admin_group(jid, account)?;
        self.touched.groups.insert(i);
        let World { groups, people: persons, rng, .. } = self;
        let g = &mut groups[i];
        let results = people
            .iter()
            .map(|p| {
                let (code, add_request) = match (change, g.role(p)) {
                    (ParticipantChange::Add, _) => g.add(account, p, persons.get(p).unwrap_or(&env.unknown), rng, env),
                    (ParticipantChange::Approve, Some(_)) => (409, None),
                    (ParticipantChange::Approve, None) if !g.info.pending_join_requests.contains(p) => (404, None),
                    (ParticipantChange::Approve, None) if g.is_full(env) => (500, None),
                    (ParticipantChange::Approve, None) => {
                        g.join(p, MemberRole::Member);
                        (200, None)
                    }
                    (_, None) => (404, None),
                    (ParticipantChange::Remove | ParticipantChange::Demote, Some(MemberRole::Creator)) => (406, None),
                    (ParticipantChange::Remove, Some(_)) => {
                        g.remove(p);
                        (200, None)
                    }
                    (ParticipantChange::Promote, Some(_)) => {
                        set_role(g, p, |r| if r == MemberRole::Member { MemberRole::Admin } else { r });
                        (200, None)
                    }
                    (ParticipantChange::Demote, Some(_)) => {
                        set_role(g, p, |_| MemberRole::Member);
                        g.ensure_admin();
                        (200, None)
                    }
                };
                ParticipantResult::from_wa(change, p.clone(), code, add_request)
            })
            .collect();
        Ok(results)
    }

    pub fn invite_link(
        &mut self,
        account: &PhoneNumber,
        jid: &GroupJid,
        reset: bool,
        env: &Env<'_>,
    ) -> Result<String, ConnectorError> {
        if reset {
            self.inject_error()?;
        }
        let i = self.admin_group(jid, account)?;
        if reset {
            let code = self.rng.invite_code(env.now);
            self.group_mut(i).info.invite_code = code;
        }
        Ok(format!("https://chat.whatsapp.com/{}", self.groups[i].info.invite_code))
    }

    /// Changes the group's info (`admin_only`, or while the info is locked: admins only). `f` may still refuse.
    pub fn edit(
        &mut self,
        account: &PhoneNumber,
        jid: &GroupJid,
        admin_only: bool,
        f: impl FnOnce(&mut SandboxGroup) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        self.inject_error()?;
        let i = self.member_group(jid, account)?;
        if admin_only || self.groups[i].info.settings.locked_info {
            self.admin_group(jid, account)?;
        }
        f(&mut self.group_mut(i).info)
    }

    pub fn leave(&mut self, account: &PhoneNumber, jid: &GroupJid, env: &Env) -> Result<(), ConnectorError> {
        self.inject_error()?;
        self.member_group(jid, account)?;
        self.person_leaves(jid, account, env).map_err(|_| ConnectorError::GroupNotFound)
    }

    /// Delivers a message. Like WhatsApp, a message to someone who blocked the sender is accepted but never arrives.
    pub fn send(
        &mut self,
        account: &PhoneNumber,
        to: &PhoneNumber,
        kind: InboxKind,
        env: &Env,
    ) -> Result<(), ConnectorError> {
        self.inject_error()?;
        let recipient = self.person_state(to, env);
        if !recipient.registered {
            return Err(rejected(404, format!("{to} is not on WhatsApp")));
        }
        if !recipient.blocked.contains(account) {
            let message = InboxMessage { from: account.clone(), at: env.now, kind };
            self.touched.messages.push((to.clone(), message));
        }
        Ok(())
    }
}

/// The code of an invite link, or the code itself.
pub(crate) fn invite_code_of(link: &str) -> &str {
    link.trim().trim_start_matches("https://chat.whatsapp.com/")
}

/// A whole world, in parts.
pub(crate) struct WorldParts {
    pub meta: Meta,
    pub accounts: BTreeMap<PhoneNumber, AccountLimits>,
    pub people: BTreeMap<PhoneNumber, PersonState>,
    pub groups: Vec<GroupState>,
    pub inboxes: BTreeMap<PhoneNumber, VecDeque<InboxMessage>>,
}

fn set_role(g: &mut GroupState, phone: &PhoneNumber, f: impl FnOnce(MemberRole) -> MemberRole) {
    if let Some(m) = g.info.members.iter_mut().find(|m| &m.phone == phone) {
        m.role = f(m.role);
    }
}

pub(crate) fn check_subject(s: &str) -> Result<(), ConnectorError> {
    let n = s.chars().count();
    if n == 0 || n > GroupSubject::MAX_CHARS {
        return Err(rejected(406, format!("subject must be 1 to {} characters", GroupSubject::MAX_CHARS)));
    }
    Ok(())
}

pub(crate) fn check_description(s: &str) -> Result<(), ConnectorError> {
    if s.chars().count() > GroupDescription::MAX_CHARS {
        return Err(rejected(406, format!("description must be at most {} characters", GroupDescription::MAX_CHARS)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_alphanumeric_and_seed_dependent() {
        let (mut a, mut b) = (Rng(1), Rng(2));
        let code = a.code(22);
        assert_eq!(code.len(), 22);
        assert!(code.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(code, b.code(22));
    }

    #[test]
    fn invite_codes_look_like_whatsapps_and_sort_by_the_second_they_were_made() {
        // Arrange: a second, the next, and one a day later.
        let mut rng = Rng(3);
        let second = Timestamp::from_millis(1_795_000_000_999);
        let next = Timestamp::from_millis(1_795_000_001_000);
        let day_later = Timestamp::from_millis(1_795_086_400_000);

        // Act
        let (first, same_second) = (rng.invite_code(second), rng.invite_code(second));
        let (later, much_later) = (rng.invite_code(next), rng.invite_code(day_later));

        // Assert: 22 letters and digits, different codes, in the order of their seconds byte for byte (the order of
        // SQLite's index); codes of the same second share their first six letters only.
        for code in [&first, &same_second, &later, &much_later] {
            assert_eq!(code.len(), 22, "{code}");
            assert!(code.bytes().all(|c| c.is_ascii_alphanumeric()), "{code}");
        }
        assert_ne!(first, same_second);
        assert_eq!(first[..6], same_second[..6]);
        assert!(first[..6] < later[..6] && later[..6] < much_later[..6], "{first} {later} {much_later}");
    }

    #[test]
    fn a_zero_rate_never_draws_and_a_full_rate_always_hits() {
        let mut rng = Rng(7);
        assert!(!rng.chance(0.0));
        assert_eq!(rng.0, 7, "no draw for a zero rate");
        assert!((0..100).all(|_| rng.chance(1.0)));
    }
}
