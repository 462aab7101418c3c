//! Groups of a world kept in its own SQLite file, as last committed, held in memory: reading one group (what every
//! `GET /v1/groups/{id}` asks the network for its members) then costs no database read and no JSON decoding.
//!
//! It stays exact because this process is the file's only writer (the world plays the remote side, and its file is
//! in the data directory `convene serve` locks), and every change is written through the batch's commit:
//! - a commit puts the new state of every group its changes created or changed into the cache, before any of them
//!   returns (so a read that starts after a change returned sees it);
//! - a read that missed keeps the row it read from the database only if no commit was counted meanwhile: a row read
//!   just before a commit must not overwrite the state that commit put in;
//! - a commit that failed drops the groups it touched (SQLite may have kept them or not).
//!
//! Past its bounds it lets go of the group read or put least recently: a group read again before 4,096 others were
//! used stays, however many others are created or read meanwhile. (Letting go of an arbitrary one instead, the first
//! in the map's order, made the groups convene-bench reads push each other out: 55% of its reads missed at 4,096
//! groups held.)
//!
//! A world kept in PostgreSQL has no such cache: other nodes change it.

use std::sync::{Mutex, PoisonError};

use convene_core::GroupJid;
use hashlink::LruCache;

use crate::world::GroupState;

/// Most groups kept, and most people named across them (members, people asking to join, who left, who got an add
/// request): past either, groups are let go, the least recently used first, until the new one fits. A group of 4
/// members takes about half a kilobyte, and a person named about 60 bytes: 6 MB at most.
const MOST_GROUPS: usize = 4_096;
const MOST_PEOPLE: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    cached: Mutex<Cached>,
}

#[derive(Debug)]
struct Cached {
    /// Commits counted so far (failed ones too).
    commits: u64,
    /// The least recently read or put first.
    by_jid: LruCache<GroupJid, GroupState>,
    /// The people named across the groups held (see `weight`).
    people: usize,
}

impl Default for Cached {
    fn default() -> Self {
        // Bounded by `put`, which weighs the people in each group too.
        Self { commits: 0, by_jid: LruCache::new_unbounded(), people: 0 }
    }
}

/// What a read that missed must show to keep the row it read: the count of commits before it read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Missed(u64);

impl GroupCache {
    /// The group as last committed, or, when it is not kept, what to hand `keep` with the row read instead.
    pub fn get(&self, jid: &GroupJid) -> Result<GroupState, Missed> {
        let mut cached = self.lock();
        let commits = cached.commits;
        cached.by_jid.get(jid).cloned().ok_or(Missed(commits))
    }

    /// Keeps a row read from the database after `get` missed, unless a commit came between.
    pub fn keep(&self, missed: Missed, state: &GroupState) {
        let mut cached = self.lock();
        if cached.commits == missed.0 {
            cached.put(state.clone());
        }
    }

    /// Call once a commit is done, before its changes return, with the groups they created or changed, oldest
    /// change first.
    pub fn committed(&self, groups: Vec<GroupState>) {
        let mut cached = self.lock();
        cached.commits += 1;
        for state in groups {
            cached.put(state);
        }
    }

    /// Call when a commit failed, with the groups its changes touched.
    pub fn failed(&self, groups: &[GroupState]) {
        let mut cached = self.lock();
        cached.commits += 1;
        for state in groups {
            cached.remove(&state.info().jid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Cached {
    fn put(&mut self, state: GroupState) {
        self.remove(&state.info().jid);
        let people = weight(&state);
        if people > MOST_PEOPLE {
            return;
        }
        while self.by_jid.len() >= MOST_GROUPS || self.people + people > MOST_PEOPLE {
            let Some((_, least_recent)) = self.by_jid.remove_lru() else { break };
            self.people -= weight(&least_recent);
        }
        self.people += people;
        self.by_jid.insert(state.info().jid.clone(), state);
    }

    fn remove(&mut self, jid: &GroupJid) {
        if let Some(old) = self.by_jid.remove(jid) {
            self.people -= weight(&old);
        }
    }
}

/// What a group holds that grows with the people in it.
fn weight(state: &GroupState) -> usize {
    let info = state.info();
    info.members.len() + info.pending_join_requests.len() + state.people_remembered()
}

#[cfg(test)]
mod tests {
    use convene_core::{GroupMember, GroupSettings, MemberRole, PhoneNumber, Timestamp};

    use super::*;
    use crate::SandboxGroup;

    fn group(n: u32, subject: &str, members: usize) -> GroupState {
        let member = |m: usize| GroupMember {
            phone: PhoneNumber::parse(&format!("+49151{m:08}")).unwrap(),
            role: MemberRole::Member,
        };
        GroupState::of(SandboxGroup {
            jid: GroupJid::parse(&format!("1203630{n:08}@g.us")).unwrap(),
            subject: subject.to_owned(),
            description: None,
            creator: member(0).phone,
            created_at: Timestamp::from_millis(1_795_000_000_000),
            settings: GroupSettings::default(),
            members: (0..members).map(member).collect(),
            invite_code: String::new(),
            creation_key: String::new(),
            pending_join_requests: Vec::new(),
            has_picture: false,
        })
    }

    fn subject(cache: &GroupCache, of: &GroupState) -> Option<String> {
        cache.get(&of.info().jid).ok().map(|g| g.info().subject.clone())
    }

    #[test]
    fn a_row_read_before_a_commit_is_not_kept_over_what_the_commit_put_in() {
        let cache = GroupCache::default();
        let (before, after) = (group(1, "before", 1), group(1, "after", 1));
        let missed = cache.get(&before.info().jid).unwrap_err();

        cache.committed(vec![after.clone()]);
        cache.keep(missed, &before);

        assert_eq!(subject(&cache, &before).as_deref(), Some("after"));
    }

    #[test]
    fn a_row_read_with_no_commit_between_is_kept_and_a_failed_commit_drops_its_groups() {
        let cache = GroupCache::default();
        let row = group(1, "read", 1);
        let missed = cache.get(&row.info().jid).unwrap_err();
        cache.keep(missed, &row);
        assert_eq!(subject(&cache, &row).as_deref(), Some("read"));

        cache.failed(&[group(1, "not committed", 1)]);

        assert_eq!(subject(&cache, &row), None);
    }

    #[test]
    fn the_latest_change_of_a_batch_wins_and_groups_are_let_go_past_the_bounds() {
        let cache = GroupCache::default();
        cache.committed(vec![group(1, "first", 1), group(1, "second", 1)]);
        assert_eq!(subject(&cache, &group(1, "", 1)).as_deref(), Some("second"));

        // A group too large to keep is not kept, and leaves the others.
        cache.committed(vec![group(2, "huge", MOST_PEOPLE + 1)]);
        assert_eq!(subject(&cache, &group(2, "", 1)), None);
        assert_eq!(subject(&cache, &group(1, "", 1)).as_deref(), Some("second"));

        // Past the most people, groups are let go until the new one fits.
        cache.committed(vec![group(3, "large", MOST_PEOPLE - 1), group(4, "next", 2)]);
        assert_eq!(subject(&cache, &group(3, "", 1)), None);
        assert_eq!(subject(&cache, &group(4, "", 1)).as_deref(), Some("next"));
        let held: usize = cache.lock().by_jid.iter().map(|(_, g)| weight(g)).sum();
        assert_eq!(cache.lock().people, held);
        assert!(held <= MOST_PEOPLE);

        // Past the most groups, one is let go for each new one, and the one just put is held.
        let last = 10 + u32::try_from(MOST_GROUPS).unwrap() + 99;
        cache.committed((10..=last).map(|n| group(n, "many", 1)).collect());
        assert_eq!(cache.lock().by_jid.len(), MOST_GROUPS);
        let held: usize = cache.lock().by_jid.iter().map(|(_, g)| weight(g)).sum();
        assert_eq!(cache.lock().people, held);
        assert_eq!(subject(&cache, &group(last, "", 1)).as_deref(), Some("many"));
    }

    #[test]
    fn groups_read_after_a_miss_do_not_push_each_other_out() {
        let cache = GroupCache::default();
        let most = u32::try_from(MOST_GROUPS).unwrap();
        cache.committed((0..most).map(|n| group(n, "old", 1)).collect());
        // As convene-bench reads 200 groups made long before: each miss reads the row and keeps it.
        let read = || (most..most + 200).map(|n| group(n, "read", 1));
        for row in read() {
            let missed = cache.get(&row.info().jid).unwrap_err();
            cache.keep(missed, &row);
        }

        let missed_again = read().filter(|row| cache.get(&row.info().jid).is_err()).count();

        assert_eq!(missed_again, 0);
        let cached = cache.lock();
        let held: usize = cached.by_jid.iter().map(|(_, g)| weight(g)).sum();
        assert_eq!((cached.by_jid.len(), cached.people), (MOST_GROUPS, held));
    }

    #[test]
    fn the_groups_being_read_stay_while_more_are_created_than_the_cache_holds() {
        let cache = GroupCache::default();
        let most = u32::try_from(MOST_GROUPS).unwrap();
        cache.committed((0..most).map(|n| group(n, "old", 1)).collect());
        // Groups 0..100 are read, then read again between creations, as GET /v1/groups/{id} does while others are
        // created.
        for n in 0..100 {
            assert_eq!(subject(&cache, &group(n, "", 1)).as_deref(), Some("old"));
        }
        for created in most..most * 3 {
            let read = group(created % 100, "", 1);
            assert_eq!(subject(&cache, &read).as_deref(), Some("old"), "group {} was let go", created % 100);
            cache.committed(vec![group(created, "new", 1)]);
        }
        assert_eq!(cache.lock().by_jid.len(), MOST_GROUPS);

        // Next to go is the group used least recently: the oldest of the new ones still held.
        let oldest_held = most * 3 - (most - 100);
        cache.committed(vec![group(most * 3, "new", 1)]);
        assert_eq!(subject(&cache, &group(oldest_held, "", 1)), None);
        assert_eq!(subject(&cache, &group(oldest_held + 1, "", 1)).as_deref(), Some("new"));
    }
}
