//! The world in PostgreSQL, for nodes that share one database: one network for all of them.
//!
//! When Convene runs on PostgreSQL (one node or several), the sandbox keeps its world in the same database, in a
//! schema of its own (`sandbox`), apart from Convene's tables: it still plays the remote side. The rows are those of
//! the file a single node keeps (`store.rs`), with the same JSON states, so the rules (`world.rs`) are the same.
//!
//! Every change runs in one transaction that first locks the world's small state (`meta`, which holds the
//! generator): changes apply one after another across all nodes, as on one node, so a group id is drawn once and a
//! seeded run stays repeatable. A change returns once its transaction is committed. Nothing is held in memory but
//! the small state, refreshed from the database (see `network.rs`), since another node may change it.
//!
//! What people do on their own (join, leave) is reported to the members' instances on whichever node runs them: a
//! row in `sandbox.reports`, written in turn like the changes, so that its id is in commit order, and followed by
//! every node.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use convene_core::{GroupJid, PhoneNumber};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::store::{GroupsNeeded, Needs, count, db_error, from_json, stored_phone, to_json};
use crate::world::{Changes, GroupState, Meta, World};
use crate::{InboxMessage, SandboxError};

/// Taken while the tables are made, so that nodes starting together do not race `CREATE TABLE IF NOT EXISTS`.
const SCHEMA_LOCK: i64 = 7_103_015;

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS sandbox;
CREATE TABLE IF NOT EXISTS sandbox.meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.accounts (phone TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox.people (phone TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox.groups (
    position BIGSERIAL PRIMARY KEY,
    jid TEXT NOT NULL UNIQUE,
    invite_code TEXT NOT NULL,
    creator TEXT NOT NULL,
    creation_key TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_by_invite_code ON sandbox.groups (invite_code);
CREATE INDEX IF NOT EXISTS groups_by_creation_key ON sandbox.groups (creator, creation_key);
CREATE TABLE IF NOT EXISTS sandbox.members (
    phone TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (phone, position)
);
CREATE INDEX IF NOT EXISTS members_by_group ON sandbox.members (position);
CREATE TABLE IF NOT EXISTS sandbox.messages (id BIGSERIAL PRIMARY KEY, recipient TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON sandbox.messages (recipient, id);
CREATE TABLE IF NOT EXISTS sandbox.reports (
    id BIGSERIAL PRIMARY KEY,
    origin BIGINT NOT NULL,
    report TEXT NOT NULL,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// How long a report is kept for nodes to read: far longer than any node takes between two reads.
const REPORTS_KEPT: &str = "10 minutes";

/// The world's small state as committed, and its version (one more with each change of it).
#[derive(Clone, Debug)]
pub(crate) struct Versioned {
    pub version: i64,
    pub meta: Meta,
}

/// What a person did on their own in a group, for the members' instances on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersonReport {
    pub group: GroupJid,
    pub by: PhoneNumber,
    pub joined: bool,
}

/// Opens a pool on the database at `url`, and makes the sandbox's tables and its world (from `new_world`) unless
/// they are there. Returns the pool and the world's small state as committed.
pub(crate) async fn open(url: &str, new_world: &Meta) -> Result<(PgPool, Versioned), SandboxError> {
    // A node frozen inside a change holds the world's lock: PostgreSQL ends such a transaction after 10 s.
    let options =
        PgConnectOptions::from_str(url).map_err(db_error)?.options([("idle_in_transaction_session_timeout", "10s")]);
    let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.map_err(db_error)?;
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(SCHEMA_LOCK).execute(&mut *tx).await.map_err(db_error)?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    // After the tables' transaction, not in it: `CREATE INDEX IF NOT EXISTS` locks its table against writes until
    // the transaction ends, and a node changing the world updates the small state's row before it writes those
    // tables, so waiting here for that row's update to end deadlocked with it (a node starting while others created
    // groups).
    sqlx::query("INSERT INTO sandbox.meta (id, version, state) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING")
        .bind(to_json(new_world)?)
        .execute(&pool)
        .await
        .map_err(db_error)?;
    let mut conn = pool.acquire().await.map_err(db_error)?;
    let meta = meta(&mut conn, false).await?;
    Ok((pool, meta))
}

/// The small state; with `lock`, locked until the transaction ends, which puts the caller's change in turn.
pub(crate) async fn meta(conn: &mut PgConnection, lock: bool) -> Result<Versioned, SandboxError> {
    let sql = if lock {
        "SELECT version, state FROM sandbox.meta WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT version, state FROM sandbox.meta WHERE id = 1"
    };
    let (version, state): (i64, String) = sqlx::query_as(sql).fetch_one(conn).await.map_err(db_error)?;
    Ok(Versioned { version, meta: from_json(&state)? })
}

/// The first of these new groups whose id another group already has.
pub(crate) async fn first_taken_id(
    conn: &mut PgConnection,
    created: &[GroupState],
) -> Result<Option<GroupJid>, SandboxError> {
    for group in created {
        let jid = &group.info().jid;
        let taken: Option<i32> = sqlx::query_scalar("SELECT 1 FROM sandbox.groups WHERE jid = $1")
            .bind(jid.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        if taken.is_some() {
            return Ok(Some(jid.clone()));
        }
    }
    Ok(None)
}

/// The view of the world a call with these needs works on.
pub(crate) async fn load(conn: &mut PgConnection, meta: Meta, needs: &Needs) -> Result<World, SandboxError> {
    let accounts =
        states_by_phone(conn, "SELECT phone, state FROM sandbox.accounts WHERE phone = ANY($1)", &needs.accounts)
            .await?;
    let people =
        states_by_phone(conn, "SELECT phone, state FROM sandbox.people WHERE phone = ANY($1)", &needs.people).await?;
    let groups = groups(conn, &needs.groups).await?;
    Ok(World::view(meta, accounts, people, groups))
}

/// The states `select` reads (phone and state, of the numbers bound as `$1`) of these numbers, by number.
async fn states_by_phone<T: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    select: &'static str,
    numbers: &[PhoneNumber],
) -> Result<BTreeMap<PhoneNumber, T>, SandboxError> {
    let mut states = BTreeMap::new();
    if numbers.is_empty() {
        return Ok(states);
    }
    let numbers: Vec<String> = numbers.iter().map(PhoneNumber::e164).collect();
    let rows: Vec<(String, String)> =
        sqlx::query_as(select).bind(numbers).fetch_all(&mut *conn).await.map_err(db_error)?;
    for (phone, state) in rows {
        states.insert(stored_phone(&phone)?, from_json::<T>(&state)?);
    }
    Ok(states)
}

async fn groups(conn: &mut PgConnection, needed: &GroupsNeeded) -> Result<Vec<GroupState>, SandboxError> {
    let query = match needed {
        GroupsNeeded::None => return Ok(Vec::new()),
        GroupsNeeded::Jid(jid) => {
            sqlx::query_scalar("SELECT state FROM sandbox.groups WHERE jid = $1").bind(jid.as_str())
        }
        GroupsNeeded::InviteCode(code) => sqlx::query_scalar("SELECT state FROM sandbox.groups WHERE invite_code = $1")
            .bind(crate::world::invite_code_of(code)),
        GroupsNeeded::CreationKey(creator, key) => sqlx::query_scalar(
            "SELECT state FROM sandbox.groups WHERE creator = $1 AND creation_key = $2 ORDER BY position",
        )
        .bind(creator.e164())
        .bind(key.clone()),
        GroupsNeeded::MemberOf(phone) => sqlx::query_scalar(
            "SELECT g.state FROM sandbox.members m JOIN sandbox.groups g ON g.position = m.position \
             WHERE m.phone = $1 ORDER BY m.position",
        )
        .bind(phone.e164()),
        GroupsNeeded::All => sqlx::query_scalar("SELECT state FROM sandbox.groups ORDER BY position"),
    };
    let states: Vec<String> = query.fetch_all(conn).await.map_err(db_error)?;
    states.iter().map(|state| from_json(state)).collect()
}

/// A page of groups, the latest created first, and how many groups there are.
pub(crate) async fn groups_latest_first(
    conn: &mut PgConnection,
    skip: u64,
    take: u64,
) -> Result<(Vec<GroupState>, u64), SandboxError> {
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM sandbox.groups ORDER BY position DESC LIMIT $1 OFFSET $2")
            .bind(i64::try_from(take).unwrap_or(i64::MAX))
            .bind(i64::try_from(skip).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sandbox.groups").fetch_one(&mut *conn).await.map_err(db_error)?;
    let groups = states.iter().map(|state| from_json(state)).collect::<Result<_, _>>()?;
    Ok((groups, u64::try_from(total).unwrap_or(0)))
}

/// A person's latest messages, oldest first.
pub(crate) async fn inbox(conn: &mut PgConnection, phone: &PhoneNumber) -> Result<Vec<InboxMessage>, SandboxError> {
    let messages: Vec<String> =
        sqlx::query_scalar("SELECT message FROM sandbox.messages WHERE recipient = $1 ORDER BY id")
            .bind(phone.e164())
            .fetch_all(conn)
            .await
            .map_err(db_error)?;
    messages.iter().map(|message| from_json(message)).collect()
}

/// Writes back what a change did; returns the small state's new version when the change touched it.
pub(crate) async fn save(
    conn: &mut PgConnection,
    changes: &Changes,
    inbox_limit: usize,
) -> Result<Option<i64>, SandboxError> {
    let mut version = None;
    if let Some(meta) = &changes.meta {
        let written: i64 = sqlx::query_scalar(
            "UPDATE sandbox.meta SET state = $1, version = version + 1 WHERE id = 1 RETURNING version",
        )
        .bind(to_json(meta)?)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        version = Some(written);
    }
    for (phone, limits) in &changes.accounts {
        sqlx::query(
            "INSERT INTO sandbox.accounts (phone, state) VALUES ($1, $2) \
             ON CONFLICT (phone) DO UPDATE SET state = excluded.state",
        )
        .bind(phone.e164())
        .bind(to_json(limits)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    for (phone, state) in &changes.people {
        sqlx::query(
            "INSERT INTO sandbox.people (phone, state) VALUES ($1, $2) \
             ON CONFLICT (phone) DO UPDATE SET state = excluded.state",
        )
        .bind(phone.e164())
        .bind(to_json(state)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    for group in &changes.created {
        let info = group.info();
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO sandbox.groups (jid, invite_code, creator, creation_key, state) VALUES ($1, $2, $3, $4, $5) \
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
        write_members(conn, position, group).await?;
    }
    for group in &changes.groups {
        let info = group.info();
        let position: Option<i64> = sqlx::query_scalar(
            "UPDATE sandbox.groups SET invite_code = $2, state = $3 WHERE jid = $1 RETURNING position",
        )
        .bind(info.jid.as_str())
        .bind(&info.invite_code)
        .bind(to_json(group)?)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let position = position.ok_or_else(|| db_error(format!("group {} is not in the database", info.jid)))?;
        sqlx::query("DELETE FROM sandbox.members WHERE position = $1")
            .bind(position)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        write_members(conn, position, group).await?;
    }
    for (to, message) in &changes.messages {
        sqlx::query("INSERT INTO sandbox.messages (recipient, message) VALUES ($1, $2)")
            .bind(to.e164())
            .bind(to_json(message)?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "DELETE FROM sandbox.messages WHERE recipient = $1 AND id <= \
             (SELECT id FROM sandbox.messages WHERE recipient = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(to.e164())
        .bind(count(inbox_limit))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    Ok(version)
}

async fn write_members(conn: &mut PgConnection, position: i64, group: &GroupState) -> Result<(), SandboxError> {
    let phones: Vec<String> = group.info().members.iter().map(|m| m.phone.e164()).collect();
    sqlx::query(
        "INSERT INTO sandbox.members (phone, position) SELECT phone, $2 FROM UNNEST($1::text[]) AS phone \
         ON CONFLICT DO NOTHING",
    )
    .bind(phones)
    .bind(position)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Writes a report for the nodes following them, in the transaction of the change it reports (which holds the
/// world's lock, so that ids follow commits), and drops reports older than any node still needs.
pub(crate) async fn write_report(
    conn: &mut PgConnection,
    origin: i64,
    report: &PersonReport,
) -> Result<(), SandboxError> {
    sqlx::query("INSERT INTO sandbox.reports (origin, report) VALUES ($1, $2)")
        .bind(origin)
        .bind(to_json(report)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM sandbox.reports WHERE written_at < now() - interval '{REPORTS_KEPT}'"
    )))
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The id of the latest report, or 0: where a node that starts begins following.
pub(crate) async fn latest_report(pool: &PgPool) -> Result<i64, SandboxError> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM sandbox.reports").fetch_one(pool).await.map_err(db_error)
}

/// Reports after `after` written by other nodes than `origin`, in order, with the id of the last one read.
pub(crate) async fn reports_after(
    pool: &PgPool,
    after: i64,
    origin: i64,
) -> Result<(Vec<PersonReport>, i64), SandboxError> {
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT id, origin, report FROM sandbox.reports WHERE id > $1 ORDER BY id LIMIT 1000")
            .bind(after)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
    let last = rows.last().map_or(after, |(id, _, _)| *id);
    let reports = rows
        .into_iter()
        .filter(|(_, from, _)| *from != origin)
        .map(|(_, _, report)| from_json(&report))
        .collect::<Result<_, _>>()?;
    Ok((reports, last))
}
