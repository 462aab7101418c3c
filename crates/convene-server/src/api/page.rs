//! How every list of the native API pages: `?limit=&cursor=` in, `{items, next_cursor}` out. Pass a page's
//! `next_cursor` back to get the next page; it is absent on the last page. One definition, so instances, groups, jobs,
//! events, webhooks and deliveries cannot drift apart.
//!
//! Every cursor has one shape, a keyset position: the last item's sort key, a number (a time in milliseconds, a
//! sequence number, an id), followed for lists that sort by time by `.` and the item's uuid to break ties. The next
//! page holds the items after that position, so a page never repeats or skips items while others are added. A cursor
//! of that shape that no page gave out is still a position: the page after it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, Result};

/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
pub const MAX_LIMIT: u32 = 200;

/// The paging half of a list's query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items at most: 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`; absent for the first page.
    #[param(
        pattern = r"^(?:0|-?[1-9][0-9]{0,17})(?:\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"
    )]
    pub cursor: Option<String>,
}

/// A position in a list: the last item's sort key and, for lists sorted by time, its uuid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub id: Option<Uuid>,
}

impl Cursor {
    pub fn new(key: i64, id: Option<Uuid>) -> Self {
        Self { key, id }
    }

    /// `key` or `key.uuid`, exactly as `render` writes them.
    pub fn parse(raw: &str) -> Option<Self> {
        let (key, id) = match raw.split_once('.') {
            Some((key, id)) => (key, Some(Uuid::try_parse(id).ok()?)),
            None => (raw, None),
        };
        let cursor = Self { key: key.parse().ok()?, id };
        (cursor.render() == raw).then_some(cursor)
    }

    pub fn render(&self) -> String {
        match self.id {
            Some(id) => format!("{}.{}", self.key, id.hyphenated()),
            None => self.key.to_string(),
        }
    }

    /// The uuid that breaks ties, the smallest when the cursor has none.
    pub fn id_or_nil(&self) -> Uuid {
        self.id.unwrap_or(Uuid::nil())
    }
}

impl PageParams {
    /// The page size asked for, checked against the bounds.
    pub fn limit(&self) -> Result<u32> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if (1..=MAX_LIMIT).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::field("limit", format!("must be between 1 and {MAX_LIMIT}")))
        }
    }

    /// The cursor; one of another shape is the caller's error, named `cursor`.
    pub fn cursor(&self) -> Result<Option<Cursor>> {
        match self.cursor.as_deref() {
            None => Ok(None),
            Some(raw) => Cursor::parse(raw).map(Some).ok_or_else(|| {
                ApiError::field("cursor", "is not a cursor: pass a page's `next_cursor` as it is, or none to start")
            }),
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page cut from `fetched`, which holds up to `limit + 1` items in list order: the extra one only says that
    /// another page follows, and the cursor is taken from the last item kept.
    pub fn from_lookahead(mut fetched: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = fetched.len() > limit;
        fetched.truncate(limit);
        let next_cursor = if more { fetched.last().map(cursor_of) } else { None };
        Self { items: fetched, next_cursor }
    }

    /// A page of a list held whole in memory (a short one: instances, webhook endpoints): the items after the
    /// cursor in the order of `position`, which gives each item's cursor.
    pub fn from_all(mut all: Vec<T>, params: &PageParams, position: impl Fn(&T) -> Cursor) -> Result<Self> {
        let limit = params.limit()?;
        let after = params.cursor()?;
        let order = |c: Cursor| (c.key, c.id_or_nil());
        all.sort_by_key(|item| order(position(item)));
        let rest: Vec<T> = all
            .into_iter()
            .filter(|item| after.is_none_or(|after| order(position(item)) > order(after)))
            .take(usize::try_from(limit).unwrap_or(usize::MAX) + 1)
            .collect();
        Ok(Self::from_lookahead(rest, limit, |item| position(item).render()))
    }

    /// The page without the items `keep` refuses (what a scoped key may not see), its cursor unchanged: the next
    /// page still starts after the last item read.
    pub fn retain(mut self, keep: impl FnMut(&T) -> bool) -> Self {
        self.items.retain(keep);
        self
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: Option<u32>, cursor: Option<&str>) -> PageParams {
        PageParams { limit, cursor: cursor.map(str::to_owned) }
    }

    #[test]
    fn limits_default_to_50_and_stay_within_1_to_200() {
        assert_eq!(params(None, None).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params(Some(1), None).limit().unwrap(), 1);
        assert_eq!(params(Some(200), None).limit().unwrap(), 200);
        for bad in [0, 201, u32::MAX] {
            let Err(ApiError::Validation(fields)) = params(Some(bad), None).limit() else { panic!("{bad} accepted") };
            assert_eq!(fields[0].field, "limit");
        }
    }

    #[test]
    fn a_lookahead_item_makes_a_cursor_from_the_last_kept_item() {
        let page = Page::from_lookahead(vec![1, 2, 3], 2, i32::to_string);
        assert_eq!((page.items, page.next_cursor), (vec![1, 2], Some("2".to_owned())));
        let last = Page::from_lookahead(vec![1, 2], 2, i32::to_string);
        assert_eq!((last.items, last.next_cursor), (vec![1, 2], None));
    }

    #[test]
    fn an_in_memory_list_pages_after_the_cursor_position() {
        let page = |p: &PageParams| Page::from_all(vec![5, 1, 3, 2, 4], p, |n: &i64| Cursor::new(*n, None));
        let first = page(&params(Some(2), None)).unwrap();
        assert_eq!((first.items, first.next_cursor.as_deref()), (vec![1, 2], Some("2")));
        let third = page(&params(Some(2), Some("4"))).unwrap();
        assert_eq!((third.items, third.next_cursor), (vec![5], None));
        let between = page(&params(Some(1), Some("2.00000000-0000-0000-0000-000000000001"))).unwrap();
        assert_eq!(between.items, vec![3], "a position no page gave out is still a position");
        for bad in ["x", "", "01", "+1", "1.", "1.NOT-A-UUID", "1.00000000-0000-0000-0000-00000000000A"] {
            let Err(ApiError::Validation(fields)) = page(&params(None, Some(bad))) else { panic!("{bad:?} accepted") };
            assert_eq!(fields[0].field, "cursor");
        }
    }

    #[test]
    fn the_documented_cursor_pattern_is_the_shape_cursor_parse_reads() {
        let cursor = <PageParams as utoipa::IntoParams>::into_params(|| None).into_iter().find(|p| p.name == "cursor");
        let schema = serde_json::to_value(cursor.expect("a cursor parameter").schema).unwrap();
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        let id = "0b5b6f6e-1c1e-4d4e-9a0e-2f0e0c6b7a11";
        for raw in ["0", "42", "-7", "1795000000123", &format!("1795000000123.{id}"), "1.", "01", "x", "1.X", "-0"] {
            assert_eq!(pattern.is_match(raw), Cursor::parse(raw).is_some(), "{raw:?}");
        }
    }
}
