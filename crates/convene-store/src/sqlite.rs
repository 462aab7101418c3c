//! `SqliteStore`: the store on one SQLite file, in WAL mode with `synchronous = FULL` so that a write that returned
//! success survives a crash or a power cut, not only a process exit.
//!
//! Migrations are the files in `migrations/sqlite/`, compiled in. Each is applied in its own `BEGIN IMMEDIATE`
//! transaction together with its row in `schema_migrations`, so two processes starting on one file apply it once, and
//! a migration that fails leaves nothing behind.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use convene_core::store::{ApiKeyRecord, DbResult, GroupListQuery, GroupPage, GroupRecord, InstanceRecord};
use convene_core::{DbError, GroupId, GroupJid, GroupSettings, InstanceId, Store, Timestamp};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use crate::cursor::{GroupCursor, page_size};
use crate::error::{db_err, other};
use crate::stored;

/// Schema versions in order. Never edit an applied file: add the next one.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];

/// How long a connection waits for another one's write lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `SELECT` list that `group_from_row` reads, followed by the rest of the query.
macro_rules! select_groups {
    ($rest:literal) => {
        concat!(
            "SELECT id, instance_id, jid, subject, description, announce_only, locked_info, join_approval, ",
            "disappearing_seconds, created_at, updated_at, left_at FROM groups ",
            $rest
        )
    };
}

/// The store on SQLite. Cloning shares the connection pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if missing) and migrates the database at `url`:
    /// `sqlite://data/convene.db` or `sqlite:data/convene.db` (relative to the working directory),
    /// `sqlite:///var/lib/convene.db` (absolute), or `sqlite::memory:` (gone when the store is dropped).
    pub async fn connect(url: &str) -> DbResult<Self> {
        if !url.starts_with("sqlite:") {
            return Err(other(format!(
                "`{url}` is not a SQLite URL (expected sqlite://path/to/file.db or sqlite::memory:)"
            )));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_err)?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full);
        let pool = if is_memory(url) {
            // An in-memory database lives as long as a connection to it: keep exactly one, forever.
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(db_err)?
        } else {
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| other(format!("cannot create the database directory {}: {e}", dir.display())))?;
            }
            let options = options.create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
            SqlitePoolOptions::new().connect_with(options).await.map_err(db_err)?
        };
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// Waits for queries in flight, then closes every connection. Later calls on this store fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a `sqlite:` URL names an in-memory database, read the way `SqliteConnectOptions::from_str` reads it.
fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

async fn migrate(pool: &SqlitePool) -> DbResult<()> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY) STRICT")
        .execute(pool)
        .await
        .map_err(db_err)?;
    let latest = MIGRATIONS.last().map_or(0, |&(version, _)| version);
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(pool).await.map_err(db_err)?;
    if let Some(current) = current.filter(|&v| v > latest) {
        return Err(other(format!(
            "the database schema is at version {current}, newer than this build knows ({latest}): refusing to use it"
        )));
    }
    for &(version, sql) in MIGRATIONS {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .is_some();
        if applied {
            continue; // dropping `tx` rolls it back
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

fn api_key_from_row(row: &SqliteRow) -> DbResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: stored::uuid("api_keys.id", row.try_get("id").map_err(db_err)?)?,
        name: row.try_get("name").map_err(db_err)?,
        prefix: row.try_get("prefix").map_err(db_err)?,
        secret_hash: row.try_get("secret_hash").map_err(db_err)?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db_err)?),
    })
}

fn instance_from_row(row: &SqliteRow) -> DbResult<InstanceRecord> {
    let phone: Option<&str> = row.try_get("phone").map_err(db_err)?;
    Ok(InstanceRecord {
        id: InstanceId(row.try_get("id").map_err(db_err)?),
        kind: stored::kind("instances.kind", row.try_get("kind").map_err(db_err)?)?,
        name: row.try_get("name").map_err(db_err)?,
        phone: phone.map(|p| stored::phone("instances.phone", p)).transpose()?,
        token_hash: row.try_get("token_hash").map_err(db_err)?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db_err)?),
    })
}

fn group_from_row(row: &SqliteRow) -> DbResult<GroupRecord> {
    let left_at: Option<i64> = row.try_get("left_at").map_err(db_err)?;
    Ok(GroupRecord {
        id: GroupId(stored::uuid("groups.id", row.try_get("id").map_err(db_err)?)?),
        instance_id: InstanceId(row.try_get("instance_id").map_err(db_err)?),
        jid: stored::jid("groups.jid", row.try_get("jid").map_err(db_err)?)?,
        subject: row.try_get("subject").map_err(db_err)?,
        description: row.try_get("description").map_err(db_err)?,
        settings: GroupSettings {
            announce_only: stored::boolean("groups.announce_only", row.try_get("announce_only").map_err(db_err)?)?,
            locked_info: stored::boolean("groups.locked_info", row.try_get("locked_info").map_err(db_err)?)?,
            join_approval: stored::boolean("groups.join_approval", row.try_get("join_approval").map_err(db_err)?)?,
            disappearing_messages: stored::disappearing(
                "groups.disappearing_seconds",
                row.try_get("disappearing_seconds").map_err(db_err)?,
            )?,
        },
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db_err)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db_err)?),
        left_at: left_at.map(Timestamp::from_millis),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> DbResult<()> {
        sqlx::query("INSERT INTO api_keys (id, name, prefix, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(key.id.hyphenated().to_string())
            .bind(key.name.as_str())
            .bind(key.prefix.as_str())
            .bind(key.secret_hash.as_str())
            .bind(key.created_at.as_millis())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn find_api_key(&self, secret_hash: &str) -> DbResult<Option<ApiKeyRecord>> {
        sqlx::query("SELECT id, name, prefix, secret_hash, created_at FROM api_keys WHERE secret_hash = $1")
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    async fn count_api_keys(&self) -> DbResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&self.pool).await.map_err(db_err)?;
        stored::count("COUNT(*) FROM api_keys", n)
    }

    async fn insert_instance(&self, instance: &InstanceRecord) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO instances (id, kind, name, phone, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(instance.id.0)
        .bind(instance.kind.as_str())
        .bind(instance.name.as_str())
        .bind(instance.phone.as_ref().map(|p| p.digits()))
        .bind(instance.token_hash.as_str())
        .bind(instance.created_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_instance(&self, id: InstanceId) -> DbResult<InstanceRecord> {
        let row = sqlx::query("SELECT id, kind, name, phone, token_hash, created_at FROM instances WHERE id = $1")
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        instance_from_row(&row)
    }

    async fn list_instances(&self) -> DbResult<Vec<InstanceRecord>> {
        sqlx::query("SELECT id, kind, name, phone, token_hash, created_at FROM instances ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(instance_from_row)
            .collect()
    }

    async fn delete_instance(&self, id: InstanceId) -> DbResult<()> {
        // The instance's groups go with it: groups.instance_id is ON DELETE CASCADE.
        let done =
            sqlx::query("DELETE FROM instances WHERE id = $1").bind(id.0).execute(&self.pool).await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound);
        }
        Ok(())
    }

    async fn insert_group(&self, group: &GroupRecord) -> DbResult<()> {
        let s = &group.settings;
        sqlx::query(
            "INSERT INTO groups (id, instance_id, jid, subject, description, announce_only, locked_info, \
             join_approval, disappearing_seconds, created_at, updated_at, left_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(group.id.0.hyphenated().to_string())
        .bind(group.instance_id.0)
        .bind(group.jid.as_str())
        .bind(group.subject.as_str())
        .bind(group.description.as_deref())
        .bind(i64::from(s.announce_only))
        .bind(i64::from(s.locked_info))
        .bind(i64::from(s.join_approval))
        .bind(i64::from(s.disappearing_messages.seconds()))
        .bind(group.created_at.as_millis())
        .bind(group.updated_at.as_millis())
        .bind(group.left_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_group(&self, id: GroupId) -> DbResult<GroupRecord> {
        let row = sqlx::query(select_groups!("WHERE id = $1"))
            .bind(id.0.hyphenated().to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        group_from_row(&row)
    }

    async fn find_groups_by_jid(&self, jid: &GroupJid, instance_id: Option<InstanceId>) -> DbResult<Vec<GroupRecord>> {
        sqlx::query(select_groups!("WHERE jid = $1 AND ($2 IS NULL OR instance_id = $2) ORDER BY created_at, id"))
            .bind(jid.as_str())
            .bind(instance_id.map(|i| i.0))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(group_from_row)
            .collect()
    }

    /// A cursor that is not one this store wrote fails with `DbError::Other("invalid cursor")`; check it first with
    /// `parse_group_cursor`.
    async fn list_groups(&self, query: &GroupListQuery) -> DbResult<GroupPage> {
        let after = match query.cursor.as_deref() {
            Some(c) => Some(GroupCursor::decode(c).ok_or_else(|| other("invalid cursor"))?),
            None => None,
        };
        let size = page_size(query.limit);
        // One row more than the page holds tells whether there is a next page.
        let rows = sqlx::query(select_groups!(
            "WHERE ($1 IS NULL OR instance_id = $1) AND ($2 IS NULL OR (created_at, id) > ($2, $3)) \
             ORDER BY created_at, id LIMIT $4"
        ))
        .bind(query.instance_id.map(|i| i.0))
        .bind(after.map(|c| c.created_at.as_millis()))
        .bind(after.map(|c| c.id.0.hyphenated().to_string()))
        .bind(i64::from(size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut groups = rows.iter().map(group_from_row).collect::<DbResult<Vec<_>>>()?;
        let more = groups.len() > size as usize;
        groups.truncate(size as usize);
        let next_cursor =
            more.then(|| groups.last().map(|g| GroupCursor { created_at: g.created_at, id: g.id }.encode())).flatten();
        Ok(GroupPage { groups, next_cursor })
    }

    async fn update_group(&self, group: &GroupRecord) -> DbResult<()> {
        let s = &group.settings;
        let done = sqlx::query(
            "UPDATE groups SET subject = $2, description = $3, announce_only = $4, locked_info = $5, \
             join_approval = $6, disappearing_seconds = $7, updated_at = $8, left_at = $9 WHERE id = $1",
        )
        .bind(group.id.0.hyphenated().to_string())
        .bind(group.subject.as_str())
        .bind(group.description.as_deref())
        .bind(i64::from(s.announce_only))
        .bind(i64::from(s.locked_info))
        .bind(i64::from(s.join_approval))
        .bind(i64::from(s.disappearing_messages.seconds()))
        .bind(group.updated_at.as_millis())
        .bind(group.left_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_are_told_from_file_urls() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite://?mode=memory&cache=private"));
        assert!(!is_memory("sqlite://data/convene.db"));
        assert!(!is_memory("sqlite:data/memory.db"));
    }

    #[tokio::test]
    async fn every_connection_syncs_fully_enforces_foreign_keys_and_waits_five_seconds_for_locks() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("x.db").display())).await.unwrap();

        // Act: hold two connections so that both are checked, not one twice.
        let mut a = store.pool.acquire().await.unwrap();
        let mut b = store.pool.acquire().await.unwrap();

        // Assert
        for conn in [&mut a, &mut b] {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut **conn).await.unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut **conn).await.unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut **conn).await.unwrap();
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut **conn).await.unwrap();
            assert_eq!((sync, fk, busy, journal.as_str()), (2, 1, 5000, "wal"), "2 is FULL");
        }
    }
}
