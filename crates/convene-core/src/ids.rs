//! Identifiers: our instance and group ids, WhatsApp group JIDs, and creation keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An instance (one connected number). Numeric, so it also works as Green API's `idInstance`, Z-API's instance id
/// and Wawp's `instance_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct InstanceId(pub i64);

/// A JSON number with no fraction is an integer to JSON Schema (`7103000001.0`), so it is read as one.
impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = InstanceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an instance id (an integer)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<InstanceId, E> {
                Ok(InstanceId(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<InstanceId, E> {
                i64::try_from(v).map(InstanceId).map_err(|_| E::custom("instance id out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<InstanceId, E> {
                if v.fract() == 0.0 && v.abs() < 1e18 {
                    Ok(InstanceId(v as i64))
                } else {
                    Err(E::custom("an instance id is an integer"))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InstanceId, E> {
                v.parse().map(InstanceId).map_err(|_| E::custom("an instance id is an integer"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for InstanceId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .description(Some("An instance id: ten digits."))
            .minimum(Some(Self::MIN))
            .maximum(Some(Self::MAX))
            .examples([serde_json::json!(7_103_000_001_i64)])
            .into()
    }
}

impl utoipa::ToSchema for InstanceId {}

impl InstanceId {
    /// Instance ids are ten digits, like Green API's.
    pub const MIN: i64 = 1_000_000_000;
    pub const MAX: i64 = 9_999_999_999;

    pub fn parse(s: &str) -> Option<Self> {
        let n: i64 = s.trim().parse().ok()?;
        (Self::MIN..=Self::MAX).contains(&n).then_some(Self(n))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Our id for a group as one instance knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct GroupId(pub Uuid);

impl GroupId {
    /// Time-ordered (UUID v7), so groups created in the same millisecond still list in creation order.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for GroupId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A WhatsApp group JID, `<digits>@g.us`. Also accepted as Z-API's `<digits>-group`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "120363043968066561@g.us")]
pub struct GroupJid(String);

impl GroupJid {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (user, spelled_as_kept) = match s.strip_suffix("@g.us") {
            Some(user) => (user, true),
            None => (s.strip_suffix("-group")?, false),
        };
        // Older group JIDs are `<creator>-<timestamp>@g.us`.
        let valid = !user.is_empty()
            && user.len() <= 64
            && user.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        // Stored ids are read back through here, 50 a page: those need no formatting.
        valid.then(|| Self(if spelled_as_kept { s.to_owned() } else { format!("{user}@g.us") }))
    }

    /// The part before `@g.us`.
    pub fn user(&self) -> &str {
        self.0.trim_end_matches("@g.us")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for GroupJid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("`{s}` is not a group id (expected digits followed by @g.us)"))
    }
}

impl From<GroupJid> for String {
    fn from(j: GroupJid) -> String {
        j.0
    }
}

impl FromStr for GroupJid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

/// A key chosen before a creation reaches the network, so that an attempt whose reply was lost can be found on the
/// network afterwards instead of creating the group again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreationKey(pub String);

impl CreationKey {
    /// Time-ordered (UUID v7), so that each new key lands at the end of the indexes that hold it (a job's, the
    /// sandbox's groups by creator) rather than on a page anywhere in them.
    pub fn new() -> Self {
        Self(Uuid::now_v7().simple().to_string())
    }
}

impl Default for CreationKey {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_jids_accept_both_spellings() {
        assert_eq!(GroupJid::parse("120363043968066561@g.us").unwrap().as_str(), "120363043968066561@g.us");
        assert_eq!(GroupJid::parse("120363019502650977-group").unwrap().as_str(), "120363019502650977@g.us");
        assert_eq!(GroupJid::parse("5511999999999-1447960339@g.us").unwrap().user(), "5511999999999-1447960339");
        for bad in ["", "@g.us", "abc@g.us", "17137157533@c.us", "12-@g.us", "a9d1c2e0-6d5e-4c2b-9d27-07c3b2f0a1b2"] {
            assert!(GroupJid::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn instance_ids_are_ten_digits() {
        assert_eq!(InstanceId::parse("7103000001"), Some(InstanceId(7_103_000_001)));
        assert_eq!(InstanceId::parse("12"), None);
        assert_eq!(InstanceId::parse("x"), None);
    }
}
