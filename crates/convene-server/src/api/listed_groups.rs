//! Pages of `GET /v1/groups` kept as the bytes that were sent, so that asking again for a page that nothing has
//! changed costs neither a database read nor writing 50 groups as JSON (the two were half of that route's cost in
//! convene-bench; a dashboard that polls the first page asks for the same page over and over).
//!
//! A page stays current while the store's `group_listing_count` says what it said before the page was read: the
//! count moves with every commit that may change what a list holds (a group added, changed, left or deleted, an
//! instance deleted) and is `None` while one is under way, so no page older than the last such commit is sent. Where
//! the store cannot say (PostgreSQL, which several nodes may share), nothing is kept.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use convene_core::InstanceId;
use convene_core::store::GroupListQuery;

/// Most bytes of pages and their keys kept; past it, the cache starts over. About 200 pages of 50 groups.
const MOST_BYTES: usize = 4 << 20;
/// Most pages kept, however small (an empty page is 30 bytes).
const MOST_PAGES: usize = 1024;
/// What a kept page costs besides its body and the text in its key: the map's entry, the key's fields.
const PAGE_OVERHEAD: usize = 160;

/// What a page depends on besides the stored groups: the query, and the instances the caller's key sees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub query: GroupListQuery,
    /// `None`: every instance (an account-wide key).
    pub scope: Option<Vec<InstanceId>>,
}

impl PageKey {
    /// The bytes a kept page costs besides its body: a search or a cursor may be long.
    fn size(&self) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        let scope = self.scope.as_ref().map_or(0, |ids| ids.len() * size_of::<InstanceId>());
        PAGE_OVERHEAD + text(&self.query.subject_contains) + text(&self.query.cursor) + scope
    }
}

#[derive(Debug, Default)]
pub struct ListedGroups {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The store's listing count the pages below were read under.
    count: u64,
    bytes: usize,
    pages: HashMap<PageKey, Bytes>,
}

impl ListedGroups {
    /// The page as it was sent, when it was read under `count`: the store's listing count now.
    pub fn get(&self, count: u64, key: &PageKey) -> Option<Bytes> {
        let mut kept = self.kept.lock().expect("the listed groups' lock is not poisoned");
        if count > kept.count {
            // Every page kept is older than a commit that may have changed it.
            *kept = Kept { count, ..Kept::default() };
        }
        match count == kept.count {
            true => kept.pages.get(key).cloned(),
            false => None, // a request that read the count before others saw it move
        }
    }

    /// Keeps a page read after the store's listing count said `count`.
    pub fn put(&self, count: u64, key: PageKey, page: Bytes) {
        let mut kept = self.kept.lock().expect("the listed groups' lock is not poisoned");
        if count < kept.count {
            return; // read before a commit that others have already seen
        }
        let size = key.size() + page.len();
        if count > kept.count || kept.bytes + size > MOST_BYTES || kept.pages.len() >= MOST_PAGES {
            *kept = Kept { count, ..Kept::default() };
        }
        if size > MOST_BYTES {
            return;
        }
        if let Some(replaced) = kept.pages.remove(&key) {
            kept.bytes -= key.size() + replaced.len();
        }
        kept.bytes += size;
        kept.pages.insert(key, page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(limit: u32) -> PageKey {
        PageKey { query: GroupListQuery { limit, ..GroupListQuery::default() }, scope: None }
    }

    #[test]
    fn a_page_is_sent_again_only_under_the_count_it_was_read_under() {
        let listed = ListedGroups::default();
        listed.put(2, key(50), Bytes::from_static(b"[1]"));
        assert_eq!(listed.get(2, &key(50)).as_deref(), Some(&b"[1]"[..]));
        assert_eq!(listed.get(2, &key(49)), None, "another query is another page");

        assert_eq!(listed.get(4, &key(50)), None, "a commit may have changed it");
        listed.put(2, key(50), Bytes::from_static(b"[1]"));
        assert_eq!(listed.get(4, &key(50)), None, "read before that commit: not kept");
        listed.put(4, key(50), Bytes::from_static(b"[1,2]"));
        assert_eq!(listed.get(4, &key(50)).as_deref(), Some(&b"[1,2]"[..]));
    }

    #[test]
    fn a_scoped_key_is_not_sent_a_page_read_for_another_scope() {
        let listed = ListedGroups::default();
        listed.put(0, key(50), Bytes::from_static(b"everything"));
        let scoped = PageKey { scope: Some(vec![InstanceId(7_103_000_001)]), ..key(50) };
        assert_eq!(listed.get(0, &scoped), None);
    }

    #[test]
    fn a_request_that_read_an_older_count_neither_gets_nor_empties_what_is_kept() {
        let listed = ListedGroups::default();
        listed.put(4, key(50), Bytes::from_static(b"[1,2]"));
        assert_eq!(listed.get(2, &key(50)), None);
        listed.put(2, key(49), Bytes::from_static(b"[1]"));
        assert_eq!(listed.get(4, &key(50)).as_deref(), Some(&b"[1,2]"[..]));
        assert_eq!(listed.get(4, &key(49)), None);
    }

    #[test]
    fn long_searches_count_against_the_size_and_small_pages_against_the_number_kept() {
        let listed = ListedGroups::default();
        let search = |text: String| PageKey {
            query: GroupListQuery { subject_contains: Some(text), limit: 50, ..GroupListQuery::default() },
            scope: None,
        };
        let long = "x".repeat(MOST_BYTES / 2);
        listed.put(0, search(long.clone() + "a"), Bytes::from_static(b"[]"));
        listed.put(0, search(long.clone() + "b"), Bytes::from_static(b"[]"));
        assert_eq!(listed.get(0, &search(long + "a")), None, "two such keys do not fit");

        for limit in 0..MOST_PAGES as u32 + 1 {
            listed.put(0, key(limit), Bytes::from_static(b"[]"));
        }
        assert!(listed.kept.lock().unwrap().pages.len() <= MOST_PAGES);
    }

    #[test]
    fn past_its_size_the_cache_starts_over() {
        let listed = ListedGroups::default();
        let big = Bytes::from(vec![b' '; MOST_BYTES / 2 + 1]);
        listed.put(0, key(1), big.clone());
        listed.put(0, key(2), big);
        assert_eq!(listed.get(0, &key(1)), None);
        assert!(listed.get(0, &key(2)).is_some());
    }
}
