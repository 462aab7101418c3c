//! The world in a database of its own: a row per person, number, group, member and message, so that a call reads and
//! writes what it touches and nothing else is held in memory.
//!
//! The sandbox plays the remote side, so its database is not Convene's: a file beside it (`sandbox.db`), SQLite in
//! WAL mode. Each change is one transaction, begun `IMMEDIATE` so that it holds the write lock from its first read
//! (a change is read, decided, then written; it never has to upgrade a read lock another connection blocks).
//! `synchronous = FULL`: a change that returned survives the machine losing power as well as `kill -9`. NORMAL would
//! save an `fsync` per change but could roll the world back behind Convene's own database, which already stores
//! what it returned: the generator would then issue a group id a second time. States are stored as JSON in their
//! rows (the same shapes an older Convene's world file held); the columns beside them are what is looked up.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::str::FromStr as _;

use convene_core::{GroupJid, PhoneNumber};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::SqliteConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

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

    pub fn and_people(mut self, people: impl IntoIterator<Item = PhoneNumber>) -> Self {
        self.people.extend(people);
        self
    }
}

fn db_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Io(format!("sandbox database: {e}"))
}

fn to_json(value: &impl Serialize) -> Result<String, SandboxError> {
    serde_json::to_string(value).map_err(db_error)
}

/// Reads what the sandbox wrote itself: numbers in it are checked for shape only.
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, SandboxError> {
    convene_core::phone::reading_stored(|| serde_json::from_str(text)).map_err(db_error)
}

fn stored_phone(text: &str) -> Result<PhoneNumber, SandboxError> {
    PhoneNumber::from_stored(text).ok_or_else(|| db_error(format!("a stored number is damaged: {text:?}")))
}

pub(crate) struct WorldStore {
    pool: SqlitePool,
}

impl WorldStore {
    /// Opens (creating) the database at `path`, or one in memory for `None`.
    pub async fn open(path: Option<&Path>) -> Result<Self, SandboxError> {
        let pool = match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| SandboxError::Io(format!("{}: {e}", dir.display())))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(std::time::Duration::from_secs(5));
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(|e| SandboxError::Io(format!("{}: {e}", path.display())))?
            }
            // An in-memory database lives as long as a connection to it: keep exactly one, forever.
            None => SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(SqliteConnectOptions::from_str("sqlite::memory:").map_err(db_error)?)
                .await
                .map_err(db_error)?,
        };
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(db_error)?;
        Ok(Self { pool })
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, SandboxError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
    }

    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, SandboxError> {
        self.pool.acquire().await.map_err(db_error)
    }

    /// The small state, or `None` in a new database.
    pub async fn meta(&self, conn: &mut SqliteConnection) -> Result<Option<Meta>, SandboxError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT state FROM meta WHERE id = 1").fetch_optional(&mut *conn).await.map_err(db_error)?;
        row.map(|(state,)| from_json(&state)).transpose()
    }

    /// The first of these new groups whose id another group already has.
    pub async fn first_taken_id(
        &self,
        conn: &mut SqliteConnection,
        created: &[GroupState],
    ) -> Result<Option<GroupJid>, SandboxError> {
        for group in created {
            let jid = &group.info().jid;
            let taken = sqlx::query("SELECT 1 FROM groups WHERE jid = $1")
                .bind(jid.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_error)?
                .is_some();
            if taken {
                return Ok(Some(jid.clone()));
            }
        }
        Ok(None)
    }

    /// The view of the world a call with these needs works on.
    pub async fn load(&self, conn: &mut SqliteConnection, meta: Meta, needs: &Needs) -> Result<World, SandboxError> {
        let mut accounts = BTreeMap::new();
        for account in &needs.accounts {
            let row: Option<(String,)> = sqlx::query_as("SELECT state FROM accounts WHERE phone = $1")
                .bind(account.e164())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_error)?;
            if let Some((state,)) = row {
                accounts.insert(account.clone(), from_json::<AccountLimits>(&state)?);
            }
        }
        let mut people = BTreeMap::new();
        if !needs.people.is_empty() {
            // One statement for any number of people (a start registers every account at once).
            let numbers: Vec<String> = needs.people.iter().map(PhoneNumber::e164).collect();
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT phone, state FROM people WHERE phone IN (SELECT value FROM json_each($1))")
                    .bind(to_json(&numbers)?)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_error)?;
            for (phone, state) in rows {
                people.insert(stored_phone(&phone)?, from_json::<PersonState>(&state)?);
            }
        }
        let groups = self.groups(conn, &needs.groups).await?;
        Ok(World::view(meta, accounts, people, groups))
    }

    async fn groups(
        &self,
        conn: &mut SqliteConnection,
        needed: &GroupsNeeded,
    ) -> Result<Vec<GroupState>, SandboxError> {
        let query = match needed {
            GroupsNeeded::None => return Ok(Vec::new()),
            GroupsNeeded::Jid(jid) => sqlx::query_as("SELECT state FROM groups WHERE jid = $1").bind(jid.as_str()),
            GroupsNeeded::InviteCode(code) => sqlx::query_as("SELECT state FROM groups WHERE invite_code = $1")
                .bind(crate::world::invite_code_of(code).to_owned()),
            GroupsNeeded::CreationKey(creator, key) => {
                sqlx::query_as("SELECT state FROM groups WHERE creator = $1 AND creation_key = $2 ORDER BY position")
                    .bind(creator.e164())
                    .bind(key.clone())
            }
            GroupsNeeded::MemberOf(phone) => sqlx::query_as(
                "SELECT g.state FROM members m JOIN groups g ON g.position = m.position WHERE m.phone = $1 \
                 ORDER BY m.position",
            )
            .bind(phone.e164()),
            GroupsNeeded::All => sqlx::query_as("SELECT state FROM groups ORDER BY position"),
        };
        let rows: Vec<(String,)> = query.fetch_all(&mut *conn).await.map_err(db_error)?;
        rows.iter().map(|(state,)| from_json(state)).collect()
    }

    /// A page of groups, the latest created first, and how many groups there are.
    pub async fn groups_latest_first(&self, skip: u64, take: u64) -> Result<(Vec<GroupState>, u64), SandboxError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT state FROM groups ORDER BY position DESC LIMIT $1 OFFSET $2")
            .bind(i64::try_from(take).unwrap_or(i64::MAX))
            .bind(i64::try_from(skip).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM groups").fetch_one(&self.pool).await.map_err(db_error)?;
        let groups = rows.iter().map(|(state,)| from_json(state)).collect::<Result<_, _>>()?;
        Ok((groups, u64::try_from(total).unwrap_or(0)))
    }

    /// A person's latest messages, oldest first.
    pub async fn inbox(&self, phone: &PhoneNumber) -> Result<Vec<InboxMessage>, SandboxError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT message FROM messages WHERE recipient = $1 ORDER BY id")
            .bind(phone.e164())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(|(message,)| from_json(message)).collect()
    }

    /// Writes back what a call changed.
    pub async fn save(
        &self,
        conn: &mut SqliteConnection,
        changes: &Changes,
        inbox_limit: usize,
    ) -> Result<(), SandboxError> {
        if let Some(meta) = &changes.meta {
            write_meta(conn, meta).await?;
        }
        for (phone, limits) in &changes.accounts {
            sqlx::query(
                "INSERT INTO accounts (phone, state) VALUES ($1, $2) \
                 ON CONFLICT (phone) DO UPDATE SET state = excluded.state",
            )
            .bind(phone.e164())
            .bind(to_json(limits)?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
        for (phone, state) in &changes.people {
            write_person(conn, phone, state).await?;
        }
        for group in &changes.created {
            insert_group(conn, group).await?;
        }
        for group in &changes.groups {
            let info = group.info();
            let position: Option<(i64,)> =
                sqlx::query_as("UPDATE groups SET invite_code = $2, state = $3 WHERE jid = $1 RETURNING position")
                    .bind(info.jid.as_str())
                    .bind(&info.invite_code)
                    .bind(to_json(group)?)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_error)?;
            let (position,) = position.ok_or_else(|| db_error(format!("group {} is not in the database", info.jid)))?;
            sqlx::query("DELETE FROM members WHERE position = $1")
                .bind(position)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            write_members(conn, position, group).await?;
        }
        for (to, message) in &changes.messages {
            deliver(conn, to, message, inbox_limit).await?;
        }
        Ok(())
    }

    /// Writes a whole world (an older Convene's file) into an empty database, in one transaction.
    pub async fn import(&self, parts: WorldParts, inbox_limit: usize) -> Result<(), SandboxError> {
        let mut tx = self.begin().await?;
        write_meta(&mut tx, &parts.meta).await?;
        for (phone, limits) in &parts.accounts {
            sqlx::query("INSERT INTO accounts (phone, state) VALUES ($1, $2)")
                .bind(phone.e164())
                .bind(to_json(limits)?)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        for (phone, state) in &parts.people {
            write_person(&mut tx, phone, state).await?;
        }
        for group in &parts.groups {
            insert_group(&mut tx, group).await?;
        }
        for (to, inbox) in parts.inboxes {
            let inbox: VecDeque<InboxMessage> = inbox;
            for message in &inbox {
                deliver(&mut tx, &to, message, inbox_limit).await?;
            }
        }
        tx.commit().await.map_err(db_error)
    }
}

pub(crate) async fn write_meta(conn: &mut SqliteConnection, meta: &Meta) -> Result<(), SandboxError> {
    sqlx::query("INSERT INTO meta (id, state) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET state = excluded.state")
        .bind(to_json(meta)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn write_person(
    conn: &mut SqliteConnection,
    phone: &PhoneNumber,
    state: &PersonState,
) -> Result<(), SandboxError> {
    sqlx::query(
        "INSERT INTO people (phone, state) VALUES ($1, $2) ON CONFLICT (phone) DO UPDATE SET state = excluded.state",
    )
    .bind(phone.e164())
    .bind(to_json(state)?)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn insert_group(conn: &mut SqliteConnection, group: &GroupState) -> Result<(), SandboxError> {
    let info = group.info();
    let (position,): (i64,) = sqlx::query_as(
        "INSERT INTO groups (jid, invite_code, creator, creation_key, state) VALUES ($1, $2, $3, $4, $5) \
         RETURNING position",
    )
    .bind(info.jid.as_str())
    .bind(&info.invite_code)
    .bind(info.creator.e164())
    .bind(&info.creation_key)
    .bind(to_json(group)?)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    write_members(conn, position, group).await
}

async fn write_members(conn: &mut SqliteConnection, position: i64, group: &GroupState) -> Result<(), SandboxError> {
    for member in &group.info().members {
        sqlx::query("INSERT INTO members (phone, position) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(member.phone.e164())
            .bind(position)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Puts a message in a person's inbox, dropping the oldest beyond the limit.
async fn deliver(
    conn: &mut SqliteConnection,
    to: &PhoneNumber,
    message: &InboxMessage,
    inbox_limit: usize,
) -> Result<(), SandboxError> {
    sqlx::query("INSERT INTO messages (recipient, message) VALUES ($1, $2)")
        .bind(to.e164())
        .bind(to_json(message)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    sqlx::query(
        "DELETE FROM messages WHERE recipient = $1 AND id <= \
         (SELECT id FROM messages WHERE recipient = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
    )
    .bind(to.e164())
    .bind(i64::try_from(inbox_limit).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each lookup a call makes seeks an index: the cost of a call does not grow with the world.
    #[tokio::test]
    async fn every_lookup_seeks_an_index_instead_of_scanning_the_world() {
        let store = WorldStore::open(None).await.unwrap();
        let mut conn = store.acquire().await.unwrap();
        for sql in [
            "SELECT state FROM accounts WHERE phone = $1",
            "SELECT phone, state FROM people WHERE phone IN (SELECT value FROM json_each($1))",
            "SELECT state FROM groups WHERE jid = $1",
            "SELECT state FROM groups WHERE invite_code = $1",
            "SELECT state FROM groups WHERE creator = $1 AND creation_key = $2 ORDER BY position",
            "SELECT g.state FROM members m JOIN groups g ON g.position = m.position WHERE m.phone = $1 ORDER BY m.position",
            "SELECT message FROM messages WHERE recipient = $1 ORDER BY id",
            "DELETE FROM members WHERE position = $1",
            "DELETE FROM messages WHERE recipient = $1 AND id <= \
             (SELECT id FROM messages WHERE recipient = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        ] {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))).bind("x");
            if sql.contains("$2") {
                query = query.bind("y");
            }
            let plan: Vec<(i64, i64, i64, String)> = query.fetch_all(&mut *conn).await.unwrap();
            for (_, _, _, line) in &plan {
                // Scanning the list of numbers a call names is fine; scanning a table of the world is not.
                assert!(!line.starts_with("SCAN") || line.starts_with("SCAN json_each"), "{sql}: {line}");
            }
        }
    }
}
