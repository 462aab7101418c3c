//! Rows read from SQLite, kept in memory so that reading them costs no database round trip (each is a hop to a
//! blocking thread and back): groups by id (the largest cost of `GET /v1/groups/{id}` in convene-bench), and each
//! number's record, settings and pause (read by every creation).
//!
//! Each kind stays exact by counting, like a sequence lock. Before a batch with a statement that may change a kept
//! row of that kind, the committer makes its count odd; after the commit, and before any of its writers hears back,
//! even again. While the count is odd nothing is read from or put in that kind's cache; when it has moved, the cache
//! is emptied; and a row read from the database is kept only when the count did not move while it was read. So no
//! read returns a row older than the last commit that may have changed it.
//!
//! Lists of groups are not kept here, but a second count, moved the same way by any commit that may change what a
//! list holds (adding a group too), lets a cache of lists elsewhere tell whether one is still current: see
//! `GroupCache::listing_count`.
//!
//! That holds while this process is SQLite's only writer: `convene serve` takes the file for itself, `convene
//! migrate` refuses to run beside it, and `convene key` writes keys only (a newer build's would first apply its
//! migrations, which is why none may rewrite the rows kept here). PostgreSQL, which several nodes may share,
//! has no such cache.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use convene_core::store::{DbResult, GroupRecord, InstancePause, InstanceRecord, InstanceSettings};
use convene_core::{GroupId, InstanceId};

use crate::sql::Statement;

/// Most groups kept; past it, the cache starts over. About 3 MB of records.
const MOST_GROUPS: usize = 10_000;

/// Most numbers whose record, settings and pause are kept; past it, each cache starts over.
const MOST_INSTANCES: usize = 10_000;

/// Every cache of rows the committer keeps exact: call `writing` before running a batch of writes, and `written`
/// with what it returned after the batch's commit (or its failure), before answering its writers.
#[derive(Debug, Default)]
pub(crate) struct RowCaches {
    pub(crate) groups: GroupCache,
    pub(crate) instances: InstanceCache,
}

/// What a batch of writes may change, from `RowCaches::writing`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Changing {
    groups: bool,
    listing: bool,
    instances: bool,
    instance_settings: bool,
}

impl RowCaches {
    pub(crate) fn writing<'a>(&self, statements: impl IntoIterator<Item = &'a Statement> + Clone) -> Changing {
        let any = |may_change: fn(&Statement) -> bool| statements.clone().into_iter().any(may_change);
        let changing = Changing {
            groups: any(may_change_groups),
            listing: any(may_change_listing),
            instances: any(may_change_instances),
            instance_settings: any(may_change_instance_settings),
        };
        self.count(changing);
        changing
    }

    pub(crate) fn written(&self, changing: Changing) {
        self.count(changing);
    }

    fn count(&self, changing: Changing) {
        self.groups.rows.count(changing.groups);
        if changing.listing {
            self.groups.listing_changes.fetch_add(1, Ordering::SeqCst);
        }
        self.instances.records.count(changing.instances);
        self.instances.settings.count(changing.instance_settings);
        self.instances.pauses.count(changing.instance_settings);
    }
}

/// Whether a statement may change a group that is stored: any that names `groups`, or `instances` (deleting an
/// instance deletes its groups), except a plain `INSERT`, which adds a row no one has read yet. There is no trigger,
/// and no other foreign key leads to `groups` (a test in `tests/store/sqlite.rs` keeps it so).
pub(crate) fn may_change_groups(statement: &Statement) -> bool {
    let sql = statement.sql();
    let plain_insert = sql.starts_with("INSERT INTO ") && !sql.contains("ON CONFLICT");
    may_change_listing(statement) && !plain_insert
}

/// Whether a statement may change what a list of groups holds: any that names `groups` or `instances`.
pub(crate) fn may_change_listing(statement: &Statement) -> bool {
    let sql = statement.sql();
    sql.contains("groups") || sql.contains("instances")
}

/// Whether a statement may change a number's record: any that names `instances`. A plain `INSERT` counts too: a
/// read of a number not yet added finds nothing and keeps nothing, but counting it costs nothing (numbers are added
/// rarely).
fn may_change_instances(statement: &Statement) -> bool {
    statement.sql().contains("instances")
}

/// Whether a statement may change a number's settings or pause: any that names `instance_settings`, or `instances`
/// (deleting a number deletes its settings). No trigger or other foreign key leads to `instance_settings` (a test in
/// `tests/store/sqlite.rs` keeps it so).
fn may_change_instance_settings(statement: &Statement) -> bool {
    let sql = statement.sql();
    sql.contains("instance_settings") || sql.contains("instances")
}

/// Rows of one kind, by key, with the count of commits that may have changed them.
#[derive(Debug)]
pub(crate) struct CountedRows<K, V> {
    /// Twice the commits that may have changed a row of this kind, plus one while such a commit is under way.
    changes: AtomicU64,
    kept: Mutex<Kept<K, V>>,
    most: usize,
}

#[derive(Debug)]
struct Kept<K, V> {
    /// The count of changes the rows below were read under.
    changes: u64,
    rows: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> CountedRows<K, V> {
    fn new(most: usize) -> Self {
        Self { changes: AtomicU64::new(0), kept: Mutex::new(Kept { changes: 0, rows: HashMap::new() }), most }
    }

    fn count(&self, changing: bool) {
        if changing {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Call before reading a row from the database; `put` the row with what this returned.
    pub(crate) fn reading(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.current()?.rows.get(key).cloned()
    }

    /// Keeps a row read from the database, unless a row of this kind may have changed since `reading` said
    /// `changes`.
    pub(crate) fn put(&self, changes: u64, key: K, row: &V) {
        let Some(mut kept) = self.current() else { return };
        if kept.changes != changes {
            return;
        }
        if kept.rows.len() >= self.most {
            kept.rows.clear();
        }
        kept.rows.insert(key, row.clone());
    }

    /// The rows kept, emptied first when one may have changed since they were read; `None` while a change is under
    /// way.
    fn current(&self) -> Option<std::sync::MutexGuard<'_, Kept<K, V>>> {
        let mut kept = self.kept.lock().expect("a row cache's lock is not poisoned");
        let now = self.changes.load(Ordering::SeqCst);
        if now % 2 == 1 {
            return None;
        }
        if kept.changes != now {
            kept.rows.clear();
            kept.changes = now;
        }
        Some(kept)
    }
}

/// Groups by id, and the count that tells a list of groups whether it is current.
#[derive(Debug)]
pub(crate) struct GroupCache {
    pub(crate) rows: CountedRows<GroupId, GroupRecord>,
    /// Twice the commits that may have changed what a list of groups holds (those that may change a group, and any
    /// that adds one), plus one while such a commit is under way.
    listing_changes: AtomicU64,
}

impl Default for GroupCache {
    fn default() -> Self {
        Self { rows: CountedRows::new(MOST_GROUPS), listing_changes: AtomicU64::new(0) }
    }
}

impl GroupCache {
    /// The count of commits that may have changed what a list of groups holds; `None` while one is under way. Read
    /// it before reading a list: the list is current for as long as this still says the same.
    pub(crate) fn listing_count(&self) -> Option<u64> {
        let now = self.listing_changes.load(Ordering::SeqCst);
        now.is_multiple_of(2).then_some(now)
    }
}

/// Reads a row through `rows`, when the backend keeps rows of its kind, else from the database alone: `read` reads
/// it from the database.
pub(crate) async fn read_through<K, V, R, F>(rows: Option<&CountedRows<K, V>>, key: K, read: R) -> DbResult<V>
where
    K: Eq + Hash,
    V: Clone,
    R: FnOnce() -> F,
    F: Future<Output = DbResult<V>>,
{
    let Some(rows) = rows else { return read().await };
    if let Some(row) = rows.get(&key) {
        return Ok(row);
    }
    let changes = rows.reading();
    let row = read().await?;
    rows.put(changes, key, &row);
    Ok(row)
}

/// Each number's record, settings and pause, by its id.
#[derive(Debug)]
pub(crate) struct InstanceCache {
    pub(crate) records: CountedRows<InstanceId, InstanceRecord>,
    pub(crate) settings: CountedRows<InstanceId, InstanceSettings>,
    pub(crate) pauses: CountedRows<InstanceId, Option<InstancePause>>,
}

impl Default for InstanceCache {
    fn default() -> Self {
        Self {
            records: CountedRows::new(MOST_INSTANCES),
            settings: CountedRows::new(MOST_INSTANCES),
            pauses: CountedRows::new(MOST_INSTANCES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupRecord {
        GroupRecord {
            id: GroupId::new(),
            instance_id: convene_core::InstanceId(7_103_000_001),
            jid: convene_core::GroupJid::parse("120363043968066561@g.us").unwrap(),
            subject: "s".into(),
            description: None,
            settings: Default::default(),
            created_at: convene_core::Timestamp::from_millis(1),
            updated_at: convene_core::Timestamp::from_millis(1),
            left_at: None,
            creation_job_id: None,
        }
    }

    #[test]
    fn a_row_read_while_a_change_was_under_way_or_before_it_is_not_kept() {
        let (cache, group) = (RowCaches::default(), group());
        let update = [Statement::new("UPDATE groups SET subject = $2 WHERE id = $1")];

        // Read before a change that then commits: not kept.
        let read = cache.groups.rows.reading();
        let changed = cache.writing(&update);
        cache.groups.rows.put(read, group.id, &group);
        assert!(cache.groups.rows.get(&group.id).is_none());
        cache.written(changed);
        cache.groups.rows.put(read, group.id, &group);
        assert!(cache.groups.rows.get(&group.id).is_none(), "read under the old count");

        // Read while the change is under way: neither served nor kept.
        cache.groups.rows.put(cache.groups.rows.reading(), group.id, &group);
        assert!(cache.groups.rows.get(&group.id).is_some());
        let changed = cache.writing(&update);
        assert!(cache.groups.rows.get(&group.id).is_none(), "no answer from memory while a change is under way");
        cache.groups.rows.put(cache.groups.rows.reading(), group.id, &group);
        cache.written(changed);
        assert!(cache.groups.rows.get(&group.id).is_none());
    }

    #[test]
    fn the_listing_count_moves_for_an_added_group_and_says_nothing_while_a_change_is_under_way() {
        let cache = RowCaches::default();
        let before = cache.groups.listing_count().expect("no change is under way");
        let insert = [Statement::new("INSERT INTO groups (id) VALUES ($1)")];
        let changing = cache.writing(&insert);
        assert_eq!(cache.groups.listing_count(), None);
        cache.written(changing);
        let after = cache.groups.listing_count().expect("the change is over");
        assert_ne!(before, after, "a list read before the insert is not current after it");

        let other = [Statement::new("UPDATE jobs SET state = $2 WHERE id = $1")];
        cache.written(cache.writing(&other));
        assert_eq!(cache.groups.listing_count(), Some(after), "a write that names no group leaves lists current");
    }

    #[test]
    fn only_statements_that_may_change_a_stored_group_count() {
        let counts = |sql: &'static str| may_change_groups(&Statement::new(sql));
        assert!(counts("UPDATE groups SET subject = $2 WHERE id = $1"));
        assert!(counts("DELETE FROM instances WHERE id = $1"));
        assert!(counts("INSERT INTO groups (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET subject = $2"));
        assert!(counts("INSERT OR REPLACE INTO groups (id) VALUES ($1)"));
        assert!(!counts("INSERT INTO groups (id) VALUES ($1)"));
        assert!(!counts("UPDATE jobs SET state = $2 WHERE id = $1"));
    }

    #[test]
    fn a_numbers_rows_count_for_the_statements_that_name_their_tables() {
        let pause = crate::jobs::set_instance_pause_statement(convene_core::InstanceId(1), None);
        assert!(may_change_instance_settings(&pause));
        assert!(!may_change_instances(&pause), "a pause leaves the record as it was");
        let settings = |sql: &'static str| may_change_instance_settings(&Statement::new(sql));
        assert!(settings("DELETE FROM instances WHERE id = $1"), "deleting a number deletes its settings");
        assert!(!settings("UPDATE number_leases SET node = $2 WHERE instance_id = $1"));
        assert!(may_change_instances(&Statement::new("UPDATE instances SET phone = $2 WHERE id = $1")));
    }
}
