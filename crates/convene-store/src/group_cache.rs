//! Group rows read from SQLite, kept in memory so that reading a group by id costs no database round trip (each is
//! a hop to a blocking thread and back: the largest cost of `GET /v1/groups/{id}` in convene-bench).
//!
//! It stays exact by counting, like a sequence lock. Before a batch with a statement that may change a stored group
//! (see `may_change_groups`), the committer makes the count odd; after its commit, and before any of its writers
//! hears back, even again. While the count is odd nothing is read from or put in the cache; when it has moved, the
//! cache is emptied; and a row read from the database is kept only when the count did not move while it was read.
//! So no read returns a row older than the last commit that may have changed it.
//!
//! Lists of groups are not kept here, but a second count, moved the same way by any commit that may change what a
//! list holds (adding a group too), lets a cache of lists elsewhere tell whether one is still current: see
//! `listing_count`.
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
    /// The same for commits that may have changed what a list of groups holds: those above, and any that adds one.
    listing_changes: AtomicU64,
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
    let plain_insert = sql.starts_with("INSERT INTO ") && !sql.contains("ON CONFLICT");
    may_change_listing(statement) && !plain_insert
}

/// Whether a statement may change what a list of groups holds: any that names `groups` or `instances`.
pub(crate) fn may_change_listing(statement: &Statement) -> bool {
    let sql = statement.sql();
    sql.contains("groups") || sql.contains("instances")
}

/// What a batch of writes may change, from `GroupCache::writing`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Changing {
    groups: bool,
    listing: bool,
}

impl GroupCache {
    /// Call before running a batch of writes; `written` after its commit with what this returned.
    pub(crate) fn writing<'a>(&self, statements: impl IntoIterator<Item = &'a Statement> + Clone) -> Changing {
        let changing = Changing {
            groups: statements.clone().into_iter().any(may_change_groups),
            listing: statements.into_iter().any(may_change_listing),
        };
        self.count(changing);
        changing
    }

    /// Call after the batch's commit (or its failure), before answering its writers.
    pub(crate) fn written(&self, changing: Changing) {
        self.count(changing);
    }

    fn count(&self, changing: Changing) {
        if changing.groups {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        if changing.listing {
            self.listing_changes.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The count of commits that may have changed what a list of groups holds; `None` while one is under way. Read
    /// it before reading a list: the list is current for as long as this still says the same.
    pub(crate) fn listing_count(&self) -> Option<u64> {
        let now = self.listing_changes.load(Ordering::SeqCst);
        now.is_multiple_of(2).then_some(now)
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
    fn the_listing_count_moves_for_an_added_group_and_says_nothing_while_a_change_is_under_way() {
        let cache = GroupCache::default();
        let before = cache.listing_count().expect("no change is under way");
        let insert = [Statement::new("INSERT INTO groups (id) VALUES ($1)")];
        let changing = cache.writing(&insert);
        assert_eq!(cache.listing_count(), None);
        cache.written(changing);
        let after = cache.listing_count().expect("the change is over");
        assert_ne!(before, after, "a list read before the insert is not current after it");

        let other = [Statement::new("UPDATE jobs SET state = $2 WHERE id = $1")];
        cache.written(cache.writing(&other));
        assert_eq!(cache.listing_count(), Some(after), "a write that names no group leaves lists current");
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
