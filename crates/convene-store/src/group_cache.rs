//! Group rows read from SQLite, kept in memory so that reading a group by id costs no database round trip (each is
//! a hop to a blocking thread and back: the largest cost of `GET /v1/groups/{id}` in convene-bench).
//!
//! It stays exact by counting, like a sequence lock. Before a batch with a statement that may change a stored group
//! (see `may_change_groups`), the committer makes the count odd; after its commit, and before any of its writers
//! hears back, even again. While the count is odd nothing is read from or put in the cache; when it has moved, the
//! cache is emptied; and a row read from the database is kept only when the count did not move while it was read.
//! So no read returns a row older than the last commit that may have changed it.
//!
//! That holds while this process is SQLite's only writer: `convene serve` takes the file for itself, `convene
//! migrate` refuses to run beside it, and `convene key` writes keys only. PostgreSQL, which several nodes may share,
//! has no such cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use convene_core::GroupId;
use convene_core::store::GroupRecord;

use crate::sql::Statement;

/// Most groups kept; past it, the cache starts over. About 3 MB of records.
const MOST_GROUPS: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    /// Twice the commits that may have changed a group, plus one while such a commit is under way.
    changes: AtomicU64,
    cached: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    /// The count of changes the groups below were read under.
    changes: u64,
    by_id: HashMap<GroupId, GroupRecord>,
}

/// Whether a statement may change a group that is stored: any that names `groups`, or `instances` (deleting an
/// instance deletes its groups), except a plain `INSERT`, which adds a row no one has read yet. There is no trigger,
/// and no other foreign key leads to `groups` (a test in `tests/store/sqlite.rs` keeps it so).
pub(crate) fn may_change_groups(statement: &Statement) -> bool {
    let sql = statement.sql();
    let names_them = sql.contains("groups") || sql.contains("instances");
    let plain_insert = sql.starts_with("INSERT INTO ") && !sql.contains("ON CONFLICT");
    names_them && !plain_insert
}

impl GroupCache {
    /// Call before running a batch of writes; `written` after its commit with what this returned.
    pub(crate) fn writing<'a>(&self, statements: impl IntoIterator<Item = &'a Statement>) -> bool {
        let changes = statements.into_iter().any(may_change_groups);
        if changes {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        changes
    }

    /// Call after the batch's commit (or its failure), before answering its writers.
    pub(crate) fn written(&self, changed: bool) {
        if changed {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Call before reading a group from the database; `put` the row with what this returned.
    pub(crate) fn reading(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, id: GroupId) -> Option<GroupRecord> {
        self.current()?.by_id.get(&id).cloned()
    }

    /// Keeps a group read from the database, unless a group may have changed since `reading` said `changes`.
    pub(crate) fn put(&self, changes: u64, group: &GroupRecord) {
        let Some(mut cached) = self.current() else { return };
        if cached.changes != changes {
            return;
        }
        if cached.by_id.len() >= MOST_GROUPS {
            cached.by_id.clear();
        }
        cached.by_id.insert(group.id, group.clone());
    }

    /// The cache, emptied first when a group may have changed since it was filled; `None` while a change is under
    /// way.
    fn current(&self) -> Option<std::sync::MutexGuard<'_, Cached>> {
        let mut cached = self.cached.lock().expect("the group cache's lock is not poisoned");
        let now = self.changes.load(Ordering::SeqCst);
        if now % 2 == 1 {
            return None;
        }
        if cached.changes != now {
            cached.by_id.clear();
            cached.changes = now;
        }
        Some(cached)
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
        let (cache, group) = (GroupCache::default(), group());
        let update = [Statement::new("UPDATE groups SET subject = $2 WHERE id = $1")];

        // Read before a change that then commits: not kept.
        let read = cache.reading();
        let changed = cache.writing(&update);
        cache.put(read, &group);
        assert!(cache.get(group.id).is_none());
        cache.written(changed);
        cache.put(read, &group);
        assert!(cache.get(group.id).is_none(), "read under the old count");

        // Read while the change is under way: neither served nor kept.
        cache.put(cache.reading(), &group);
        assert!(cache.get(group.id).is_some());
        let changed = cache.writing(&update);
        assert!(cache.get(group.id).is_none(), "no answer from memory while a change is under way");
        cache.put(cache.reading(), &group);
        cache.written(changed);
        assert!(cache.get(group.id).is_none());
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
}
