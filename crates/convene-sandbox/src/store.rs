//! The world in a database of its own: a row per person, number, group, member and message, so that a call reads and
//! writes what it touches and nothing else is held in memory.
//!
//! The sandbox plays the remote side, so its database is not Convene's: a file beside it (`sandbox.db`), SQLite in
//! WAL mode. Changes are written in transactions begun `IMMEDIATE`, so that they hold the write lock from their first
//! read (a change is read, decided, then written; it never has to upgrade a read lock another connection blocks).
//!
//! This module works on a connection synchronously (rusqlite): a change is a dozen short statements on rows in the
//! page cache, and through sqlx each would be a round trip to a thread of its own — under load the sandbox spent its
//! time switching threads, with creation at half its rate on a world kept in memory. The network decides on which
//! thread each runs (see `network.rs`); the sync that ends a transaction never runs on the async runtime.
//! `synchronous = FULL`: a change that returned survives the machine losing power as well as `kill -9`. NORMAL would
//! save an `fsync` per change but could roll the world back behind Convene's own database, which already stores
//! what it returned: the generator would then issue a group id a second time. Checkpoints run beside the writer, on
//! a thread of their own (`convene_sqlite`), so that a change never waits for the WAL to be copied into the file.
//! States are stored as JSON in their rows (the same shapes an older Convene's world file held); the columns beside
//! them are what is looked up.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use convene_core::{GroupJid, PhoneNumber};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::world::{AccountLimits, Changes, GroupState, Meta, PersonState, World, WorldParts};
use crate::{InboxMessage, SandboxError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (phone TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS people (phone TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    position INTEGER PRIMARY KEY,
    jid TEXT NOT NULL UNIQUE,
    invite_code TEXT NOT NULL,
    creator TEXT NOT NULL,
    creation_key TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_by_invite_code ON groups (invite_code);
CREATE INDEX IF NOT EXISTS groups_by_creation_key ON groups (creator, creation_key);
CREATE TABLE IF NOT EXISTS members (
    phone TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (phone, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_group ON members (position);
CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, id);
";

/// Which groups a call needs.
#[derive(Clone, Debug, Default)]
pub(crate) enum GroupsNeeded {
    #[default]
    None,
    Jid(GroupJid),
    /// The group an invite code (or link) opens.
    InviteCode(String),
    /// The group a number created with a creation key.
    CreationKey(PhoneNumber, String),
    /// Every group the number is a member of.
    MemberOf(PhoneNumber),
    All,
}

/// What a call reads of the world besides its small state: a view holding exactly these is all it can see (a
/// person left out reads as a number the world has never seen).
#[derive(Clone, Debug, Default)]
pub(crate) struct Needs {
    pub accounts: Vec<PhoneNumber>,
    pub people: Vec<PhoneNumber>,
    pub groups: GroupsNeeded,
}

impl Needs {
    pub fn group(jid: &GroupJid) -> Self {
        Self { groups: GroupsNeeded::Jid(jid.clone()), ..Self::default() }
    }

    pub fn people(people: impl IntoIterator<Item = PhoneNumber>) -> Self {
        Self { people: people.into_iter().collect(), ..Self::default() }
    }

    pub fn account(account: &PhoneNumber) -> Self {
        Self { accounts: vec![account.clone()], ..Self::default() }
    }

    /// The group's id, when that group is all these name.
    pub fn only_group(&self) -> Option<&GroupJid> {
        match &self.groups {
            GroupsNeeded::Jid(jid) if self.accounts.is_empty() && self.people.is_empty() => Some(jid),
            _ => None,
        }
    }

    pub fn and_people(mut self, people: impl IntoIterator<Item = PhoneNumber>) -> Self {
        self.people.extend(people);
        self
    }
}

pub(crate) fn db_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Io(format!("sandbox database: {e}"))
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String, SandboxError> {
    serde_json::to_string(value).map_err(db_error)
}

/// Reads what the sandbox wrote itself: numbers in it are checked for shape only.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, SandboxError> {
    convene_core::phone::reading_stored(|| serde_json::from_str(text)).map_err(db_error)
}

pub(crate) fn stored_phone(text: &str) -> Result<PhoneNumber, SandboxError> {
    PhoneNumber::from_stored(text).ok_or_else(|| db_error(format!("a stored number is damaged: {text:?}")))
}

pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Prepared statements a connection keeps: every statement of this module, prepared once per connection.
const STATEMENTS_KEPT: usize = 32;

/// Opens (creating) the database at `path`, or one in memory for `None`, with its tables.
pub(crate) fn open(path: Option<&Path>) -> Result<Connection, SandboxError> {
    let conn = match path {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| SandboxError::Io(format!("{}: {e}", dir.display())))?;
            }
            let conn = Connection::open(path).map_err(|e| SandboxError::Io(format!("{}: {e}", path.display())))?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_error)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(db_error)?;
            conn.pragma_update(None, "synchronous", SYNCHRONOUS).map_err(db_error)?;
            convene_sqlite::leave_checkpoints_to_checkpointer(&conn).map_err(db_error)?;
            conn
        }
        None => Connection::open_in_memory().map_err(db_error)?,
    };
    // Each change's savepoint keeps the pages it changes in a sub-journal, which SQLite would spill to a temporary
    // file on disk past 64 KiB: in a batch of changes it does, every batch.
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(db_error)?;
    conn.execute_batch(SCHEMA).map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    Ok(conn)
}

/// How the writer syncs: see the module's comment. Its checkpointer syncs as it does.
const SYNCHRONOUS: &str = "FULL";

/// The connection for the checkpoints of the database at `path`, which `open` made (see `convene_sqlite`).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, SandboxError> {
    convene_sqlite::checkpointer_connection(path, SYNCHRONOUS)
        .map_err(|e| SandboxError::Io(format!("{}: {e}", path.display())))
}

/// Another connection to the database at `path`, which `open` made, for reads.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, SandboxError> {
    let conn = Connection::open(path).map_err(|e| SandboxError::Io(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    Ok(conn)
}

/// The small state, or `None` in a new database.
pub(crate) fn meta(conn: &Connection) -> Result<Option<Meta>, SandboxError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM meta WHERE id = 1")
        .and_then(|mut s| s.query_row([], |row| row.get(0)).optional())
        .map_err(db_error)?;
    state.map(|state| from_json(&state)).transpose()
}

pub(crate) fn write_meta(conn: &Connection, meta: &Meta) -> Result<(), SandboxError> {
    let state = to_json(meta)?;
    conn.prepare_cached(
        "INSERT INTO meta (id, state) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
    )
    .and_then(|mut s| s.execute([state]))
    .map_err(db_error)?;
    Ok(())
}

/// The first of these new groups whose id another group already has.
pub(crate) fn first_taken_id(conn: &Connection, created: &[GroupState]) -> Result<Option<GroupJid>, SandboxError> {
    let mut statement = conn.prepare_cached("SELECT 1 FROM groups WHERE jid = ?1").map_err(db_error)?;
    for group in created {
        let jid = &group.info().jid;
        if statement.exists([jid.as_str()]).map_err(db_error)? {
            return Ok(Some(jid.clone()));
        }
    }
    Ok(None)
}

/// The view of the world a call with these needs works on.
pub(crate) fn load(conn: &Connection, meta: Meta, needs: &Needs) -> Result<World, SandboxError> {
    let mut accounts = BTreeMap::new();
    if !needs.accounts.is_empty() {
        let mut statement = conn.prepare_cached("SELECT state FROM accounts WHERE phone = ?1").map_err(db_error)?;
        for account in &needs.accounts {
            let state: Option<String> =
                statement.query_row([account.e164()], |row| row.get(0)).optional().map_err(db_error)?;
            if let Some(state) = state {
                accounts.insert(account.clone(), from_json::<AccountLimits>(&state)?);
            }
        }
    }
    let mut people = BTreeMap::new();
    if !needs.people.is_empty() {
        // One statement for any number of people (a start registers every account at once).
        let numbers: Vec<String> = needs.people.iter().map(PhoneNumber::e164).collect();
        let mut statement = conn
            .prepare_cached("SELECT phone, state FROM people WHERE phone IN (SELECT value FROM json_each(?1))")
            .map_err(db_error)?;
        let mut rows = statement.query([to_json(&numbers)?]).map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            let (phone, state): (String, String) = (row.get(0).map_err(db_error)?, row.get(1).map_err(db_error)?);
            people.insert(stored_phone(&phone)?, from_json::<PersonState>(&state)?);
        }
    }
    let groups = groups(conn, &needs.groups)?;
    Ok(World::view(meta, accounts, people, groups))
}

/// One group, by its id.
pub(crate) fn group(conn: &Connection, jid: &GroupJid) -> Result<Option<GroupState>, SandboxError> {
    Ok(groups(conn, &GroupsNeeded::Jid(jid.clone()))?.pop())
}

fn groups(conn: &Connection, needed: &GroupsNeeded) -> Result<Vec<GroupState>, SandboxError> {
    let states = |sql: &str, params: &[&dyn rusqlite::ToSql]| json_rows(conn, sql, params);
    match needed {
        GroupsNeeded::None => Ok(Vec::new()),
        GroupsNeeded::Jid(jid) => states("SELECT state FROM groups WHERE jid = ?1", params![jid.as_str()]),
        GroupsNeeded::InviteCode(code) => {
            states("SELECT state FROM groups WHERE invite_code = ?1", params![crate::world::invite_code_of(code)])
        }
        GroupsNeeded::CreationKey(creator, key) => states(
            "SELECT state FROM groups WHERE creator = ?1 AND creation_key = ?2 ORDER BY position",
            params![creator.e164(), key],
        ),
        GroupsNeeded::MemberOf(phone) => states(
            "SELECT g.state FROM members m JOIN groups g ON g.position = m.position WHERE m.phone = ?1 \
             ORDER BY m.position",
            params![phone.e164()],
        ),
        GroupsNeeded::All => states("SELECT state FROM groups ORDER BY position", params![]),
    }
}

/// A page of groups, the latest created first, and how many groups there are.
pub(crate) fn groups_latest_first(
    conn: &Connection,
    skip: u64,
    take: u64,
) -> Result<(Vec<GroupState>, u64), SandboxError> {
    let take = i64::try_from(take).unwrap_or(i64::MAX);
    let skip = i64::try_from(skip).unwrap_or(i64::MAX);
    let groups =
        json_rows(conn, "SELECT state FROM groups ORDER BY position DESC LIMIT ?1 OFFSET ?2", params![take, skip])?;
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM groups", [], |row| row.get(0)).map_err(db_error)?;
    Ok((groups, u64::try_from(total).unwrap_or(0)))
}

/// A person's latest messages, oldest first.
pub(crate) fn inbox(conn: &Connection, phone: &PhoneNumber) -> Result<Vec<InboxMessage>, SandboxError> {
    json_rows(conn, "SELECT message FROM messages WHERE recipient = ?1 ORDER BY id", params![phone.e164()])
}

/// The rows of a statement whose one column is a state or message as JSON, decoded.
fn json_rows<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<T>, SandboxError> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = statement.query_map(params, |row| row.get::<_, String>(0)).map_err(db_error)?;
    rows.map(|json| from_json(&json.map_err(db_error)?)).collect()
}

/// Writes back what a call changed.
pub(crate) fn save(conn: &Connection, changes: &Changes, inbox_limit: usize) -> Result<(), SandboxError> {
    if let Some(meta) = &changes.meta {
        write_meta(conn, meta)?;
    }
    for (phone, limits) in &changes.accounts {
        let state = to_json(limits)?;
        conn.prepare_cached(
            "INSERT INTO accounts (phone, state) VALUES (?1, ?2) \
             ON CONFLICT (phone) DO UPDATE SET state = excluded.state",
        )
        .and_then(|mut s| s.execute([phone.e164(), state]))
        .map_err(db_error)?;
    }
    for (phone, state) in &changes.people {
        write_person(conn, phone, state)?;
    }
    for group in &changes.created {
        insert_group(conn, group)?;
    }
    for group in &changes.groups {
        let info = group.info();
        let state = to_json(group)?;
        let position: Option<i64> = conn
            .prepare_cached("UPDATE groups SET invite_code = ?2, state = ?3 WHERE jid = ?1 RETURNING position")
            .and_then(|mut s| {
                s.query_row(params![info.jid.as_str(), info.invite_code, state], |row| row.get(0)).optional()
            })
            .map_err(db_error)?;
        let position = position.ok_or_else(|| db_error(format!("group {} is not in the database", info.jid)))?;
        conn.prepare_cached("DELETE FROM members WHERE position = ?1")
            .and_then(|mut s| s.execute([position]))
            .map_err(db_error)?;
        write_members(conn, position, group)?;
    }
    for (to, message) in &changes.messages {
        deliver(conn, to, message, inbox_limit)?;
    }
    Ok(())
}

/// Writes a whole world (an older Convene's file) into an empty database, in one transaction.
pub(crate) fn import(conn: &mut Connection, parts: WorldParts, inbox_limit: usize) -> Result<(), SandboxError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_error)?;
    write_meta(&tx, &parts.meta)?;
    for (phone, limits) in &parts.accounts {
        tx.execute("INSERT INTO accounts (phone, state) VALUES (?1, ?2)", [phone.e164(), to_json(limits)?])
            .map_err(db_error)?;
    }
    for (phone, state) in &parts.people {
        write_person(&tx, phone, state)?;
    }
    for group in &parts.groups {
        insert_group(&tx, group)?;
    }
    for (to, inbox) in parts.inboxes {
        let inbox: VecDeque<InboxMessage> = inbox;
        for message in &inbox {
            deliver(&tx, &to, message, inbox_limit)?;
        }
    }
    tx.commit().map_err(db_error)
}

fn write_person(conn: &Connection, phone: &PhoneNumber, state: &PersonState) -> Result<(), SandboxError> {
    let state = to_json(state)?;
    conn.prepare_cached(
        "INSERT INTO people (phone, state) VALUES (?1, ?2) ON CONFLICT (phone) DO UPDATE SET state = excluded.state",
    )
    .and_then(|mut s| s.execute([phone.e164(), state]))
    .map_err(db_error)?;
    Ok(())
}

fn insert_group(conn: &Connection, group: &GroupState) -> Result<(), SandboxError> {
    let info = group.info();
    let state = to_json(group)?;
    let position: i64 = conn
        .prepare_cached(
            "INSERT INTO groups (jid, invite_code, creator, creation_key, state) VALUES (?1, ?2, ?3, ?4, ?5) \
             RETURNING position",
        )
        .and_then(|mut s| {
            s.query_row(
                params![info.jid.as_str(), info.invite_code, info.creator.e164(), info.creation_key, state],
                |row| row.get(0),
            )
        })
        .map_err(db_error)?;
    write_members(conn, position, group)
}

fn write_members(conn: &Connection, position: i64, group: &GroupState) -> Result<(), SandboxError> {
    let mut statement = conn
        .prepare_cached("INSERT INTO members (phone, position) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
        .map_err(db_error)?;
    for member in &group.info().members {
        statement.execute(params![member.phone.e164(), position]).map_err(db_error)?;
    }
    Ok(())
}

/// Puts a message in a person's inbox, dropping the oldest beyond the limit.
fn deliver(
    conn: &Connection,
    to: &PhoneNumber,
    message: &InboxMessage,
    inbox_limit: usize,
) -> Result<(), SandboxError> {
    let message = to_json(message)?;
    conn.prepare_cached("INSERT INTO messages (recipient, message) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute([to.e164(), message]))
        .map_err(db_error)?;
    conn.prepare_cached(
        "DELETE FROM messages WHERE recipient = ?1 AND id <= \
         (SELECT id FROM messages WHERE recipient = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )
    .and_then(|mut s| s.execute(params![to.e164(), count(inbox_limit)]))
    .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_on_file_syncs_each_commit_journals_its_savepoints_in_memory_and_leaves_checkpoints_to_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.db");
        let conn = open(Some(&path)).unwrap();
        let pragma = |conn: &Connection, name: &str| -> String {
            conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        let settings = ["journal_mode", "synchronous", "temp_store", "wal_autocheckpoint", "journal_size_limit"]
            .map(|name| pragma(&conn, name));
        let (backstop, wal_kept) = (convene_sqlite::WRITER_CHECKPOINTS_PAST, convene_sqlite::WAL_KEPT_BYTES);
        let expected = [
            r#"Text("wal")"#.to_owned(),
            "Integer(2)".to_owned(),
            "Integer(2)".to_owned(),
            format!("Integer({backstop})"),
            format!("Integer({wal_kept})"),
        ];
        assert_eq!(settings, expected, "FULL is 2, MEMORY is 2");
        let checkpoints = open_checkpointer(&path).unwrap();
        assert_eq!(pragma(&checkpoints, "synchronous"), "Integer(2)", "a checkpoint syncs as the commits do");
    }

    /// Each lookup a call makes seeks an index: the cost of a call does not grow with the world.
    #[test]
    fn every_lookup_seeks_an_index_instead_of_scanning_the_world() {
        let conn = open(None).unwrap();
        for sql in [
            "SELECT state FROM accounts WHERE phone = ?1",
            "SELECT phone, state FROM people WHERE phone IN (SELECT value FROM json_each(?1))",
            "SELECT 1 FROM groups WHERE jid = ?1",
            "SELECT state FROM groups WHERE jid = ?1",
            "SELECT state FROM groups WHERE invite_code = ?1",
            "SELECT state FROM groups WHERE creator = ?1 AND creation_key = ?2 ORDER BY position",
            "SELECT g.state FROM members m JOIN groups g ON g.position = m.position WHERE m.phone = ?1 ORDER BY m.position",
            "SELECT message FROM messages WHERE recipient = ?1 ORDER BY id",
            "DELETE FROM members WHERE position = ?1",
            "DELETE FROM messages WHERE recipient = ?1 AND id <= \
             (SELECT id FROM messages WHERE recipient = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        ] {
            let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let params: &[&dyn rusqlite::ToSql] = if sql.contains("?2") { &[&"x", &"y"] } else { &[&"x"] };
            let plan: Vec<String> =
                statement.query_map(params, |row| row.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
            for line in &plan {
                // Scanning the list of numbers a call names is fine; scanning a table of the world is not.
                assert!(!line.starts_with("SCAN") || line.starts_with("SCAN json_each"), "{sql}: {line}");
            }
        }
    }
}
