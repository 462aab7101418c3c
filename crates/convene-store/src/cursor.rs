//! Keyset cursors for `list_groups`. A cursor names the last group of a page by `(created_at, id)`, the order the
//! listing uses, so a page never repeats or skips rows even while groups are being added.
//!
//! Callers treat cursors as opaque. The encoding is `"{created_at_ms}.{uuid}"`.

use convene_core::{GroupId, Timestamp};
use uuid::Uuid;

/// The most groups one page holds; `GroupListQuery::limit` is clamped to `1..=MAX_PAGE`.
pub(crate) const MAX_PAGE: u32 = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GroupCursor {
    pub created_at: Timestamp,
    pub id: GroupId,
}

impl GroupCursor {
    pub(crate) fn encode(self) -> String {
        format!("{}.{}", self.created_at.as_millis(), self.id.0.hyphenated())
    }

    pub(crate) fn decode(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('.')?;
        // `i64::from_str` accepts a leading `+`, and `Uuid::parse_str` several spellings: insist on the one we write.
        let created_at = Timestamp::from_millis(ms.parse().ok()?);
        let id = GroupId(Uuid::try_parse(id).ok()?);
        let cursor = Self { created_at, id };
        (cursor.encode() == s).then_some(cursor)
    }
}

/// Whether `s` is a cursor `list_groups` accepts. The API checks this first so that a malformed cursor is the
/// client's error (400), not the database's: `list_groups` itself answers one with `DbError::Other("invalid cursor")`.
pub fn parse_group_cursor(s: &str) -> bool {
    GroupCursor::decode(s).is_some()
}

/// The page size actually used for a requested `limit`.
pub(crate) fn page_size(limit: u32) -> u32 {
    limit.clamp(1, MAX_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_what_was_encoded() {
        let cursor = GroupCursor { created_at: Timestamp::from_millis(1_795_000_000_123), id: GroupId::new() };
        let s = cursor.encode();
        assert_eq!(GroupCursor::decode(&s), Some(cursor));
        assert!(parse_group_cursor(&s));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let id = "a9d1c2e0-6d5e-4c2b-9d27-07c3b2f0a1b2";
        for bad in [
            "".to_owned(),
            "123".to_owned(),
            id.to_owned(),
            format!("x.{id}"),
            format!("+5.{id}"),
            format!("5.{}", id.to_uppercase()),
            format!("5.{}", id.replace('-', "")),
            "5.not-a-uuid".to_owned(),
            format!("5.{id}.7"),
        ] {
            assert!(!parse_group_cursor(&bad), "{bad:?}");
        }
    }

    #[test]
    fn page_sizes_are_clamped_to_one_through_five_hundred() {
        assert_eq!(page_size(0), 1);
        assert_eq!(page_size(3), 3);
        assert_eq!(page_size(500), 500);
        assert_eq!(page_size(u32::MAX), 500);
    }
}
