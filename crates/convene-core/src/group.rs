//! Groups: validated subject and description, settings, pictures and the metadata a connector reports.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::GroupJid;
use crate::phone::PhoneNumber;

/// A name as people read it, the rule for group subjects and for instance and key names: at most `max` characters as
/// sent, no control characters, not all spaces. The name is the text without the spaces around it. (The native API's
/// OpenAPI document states the same rule as a pattern, `NAME_PATTERN`; a test there holds the two together.)
pub fn plain_name(s: &str, max: usize) -> Result<&str, String> {
    let n = s.chars().count();
    if n > max {
        return Err(format!("must be at most {max} characters (got {n})"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters such as line breaks".into());
    }
    match s.trim() {
        "" => Err("must not be empty or only spaces".into()),
        name => Ok(name),
    }
}

/// A group's name: 1 to 100 characters (WhatsApp's limit), no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupSubject(String);

impl TryFrom<String> for GroupSubject {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<GroupSubject> for String {
    fn from(subject: GroupSubject) -> Self {
        subject.0
    }
}

impl GroupSubject {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, String> {
        plain_name(s, Self::MAX_CHARS).map(|name| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group's description: at most 2048 characters (WhatsApp's limit), line breaks and tabs allowed but no other
/// control characters. Empty means none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupDescription(String);

impl TryFrom<String> for GroupDescription {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<GroupDescription> for String {
    fn from(description: GroupDescription) -> Self {
        description.0
    }
}

impl GroupDescription {
    pub const MAX_CHARS: usize = 2048;

    pub fn parse(s: &str) -> Result<Self, String> {
        let n = s.chars().count();
        if n > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters (got {n})", Self::MAX_CHARS));
        }
        if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err("must not contain control characters other than line breaks and tabs".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Disappearing messages: the timers WhatsApp offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Disappearing {
    #[default]
    #[serde(rename = "off")]
    Off,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "90d")]
    NinetyDays,
}

impl Disappearing {
    pub fn seconds(self) -> u32 {
        match self {
            Self::Off => 0,
            Self::Day => 86_400,
            Self::Week => 604_800,
            Self::NinetyDays => 7_776_000,
        }
    }

    pub fn from_seconds(s: u32) -> Option<Self> {
        [Self::Off, Self::Day, Self::Week, Self::NinetyDays].into_iter().find(|d| d.seconds() == s)
    }
}

/// Group settings as WhatsApp has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupSettings {
    /// Only admins can send messages.
    pub announce_only: bool,
    /// Only admins can edit the subject, description and picture.
    pub locked_info: bool,
    /// New members joining by link need an admin's approval.
    pub join_approval: bool,
    /// Disappearing-messages timer.
    pub disappearing_messages: Disappearing,
}

/// A change to some settings; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSettingsPatch {
    pub announce_only: Option<bool>,
    pub locked_info: Option<bool>,
    pub join_approval: Option<bool>,
    pub disappearing_messages: Option<Disappearing>,
}

impl GroupSettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn apply(&self, s: &mut GroupSettings) {
        if let Some(v) = self.announce_only {
            s.announce_only = v;
        }
        if let Some(v) = self.locked_info {
            s.locked_info = v;
        }
        if let Some(v) = self.join_approval {
            s.join_approval = v;
        }
        if let Some(v) = self.disappearing_messages {
            s.disappearing_messages = v;
        }
    }
}

/// A member's role in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// The creator ("super admin"): no other admin can remove or demote them.
    Creator,
    Admin,
    Member,
}

impl MemberRole {
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Creator | Self::Admin)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupMember {
    pub phone: PhoneNumber,
    pub role: MemberRole,
}

/// A group as the network reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMetadata {
    pub jid: GroupJid,
    pub subject: String,
    pub description: Option<String>,
    pub creator: Option<PhoneNumber>,
    pub created_at: Timestamp,
    pub settings: GroupSettings,
    pub members: Vec<GroupMember>,
}

/// A group picture: a JPEG or PNG image, size-checked. In JSON (between nodes), its bytes in base64, checked again
/// when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PictureJson", into = "PictureJson")]
pub struct GroupPicture {
    bytes: Vec<u8>,
    format: PictureFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PictureFormat {
    Jpeg,
    Png,
}

impl GroupPicture {
    /// The largest picture accepted, in bytes.
    pub const MAX_BYTES: usize = 5 * 1024 * 1024;

    /// Checks the size and the file signature (not the declared content type, which clients get wrong).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.is_empty() {
            return Err("is empty".into());
        }
        if bytes.len() > Self::MAX_BYTES {
            return Err(format!("is {} bytes; the limit is {} bytes", bytes.len(), Self::MAX_BYTES));
        }
        let format = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            PictureFormat::Jpeg
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            PictureFormat::Png
        } else {
            return Err("is not a JPEG or PNG image".into());
        };
        Ok(Self { bytes, format })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn format(&self) -> PictureFormat {
        self.format
    }
}

#[derive(Serialize, Deserialize)]
struct PictureJson {
    base64: String,
}

impl TryFrom<PictureJson> for GroupPicture {
    type Error = String;

    fn try_from(json: PictureJson) -> Result<Self, String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(json.base64).map_err(|e| e.to_string())?;
        Self::parse(bytes).map_err(|e| format!("the picture {e}"))
    }
}

impl From<GroupPicture> for PictureJson {
    fn from(picture: GroupPicture) -> Self {
        use base64::Engine as _;
        Self { base64: base64::engine::general_purpose::STANDARD.encode(picture.bytes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_to_a_hundred_characters() {
        assert!(GroupSubject::parse("").is_err());
        assert!(GroupSubject::parse("   ").is_err());
        assert_eq!(GroupSubject::parse(" War room ").unwrap().as_str(), "War room");
        assert!(GroupSubject::parse(&"é".repeat(100)).is_ok(), "characters, not bytes");
        assert!(GroupSubject::parse(&"a".repeat(101)).unwrap_err().contains("101"));
        assert!(GroupSubject::parse("two\nlines").is_err());
    }

    #[test]
    fn descriptions_are_at_most_2048_characters() {
        assert!(GroupDescription::parse(&"x".repeat(2048)).is_ok());
        assert!(GroupDescription::parse(&"x".repeat(2049)).is_err());
        assert!(GroupDescription::parse("line one\nline two\ttabbed").is_ok());
        assert!(GroupDescription::parse("nul \0 byte").is_err());
    }

    #[test]
    fn pictures_are_checked_by_signature_and_size() {
        assert_eq!(GroupPicture::parse(vec![0xFF, 0xD8, 0xFF, 0xE0]).unwrap().format(), PictureFormat::Jpeg);
        assert_eq!(GroupPicture::parse(b"\x89PNG\r\n\x1a\n....".to_vec()).unwrap().format(), PictureFormat::Png);
        assert!(GroupPicture::parse(b"GIF89a".to_vec()).is_err());
        assert!(GroupPicture::parse(Vec::new()).is_err());
        let mut big = vec![0xFF, 0xD8, 0xFF];
        big.resize(GroupPicture::MAX_BYTES + 1, 0);
        assert!(GroupPicture::parse(big).unwrap_err().contains("limit"));
    }

    #[test]
    fn disappearing_timers_round_trip_through_seconds() {
        for d in [Disappearing::Off, Disappearing::Day, Disappearing::Week, Disappearing::NinetyDays] {
            assert_eq!(Disappearing::from_seconds(d.seconds()), Some(d));
        }
        assert_eq!(Disappearing::from_seconds(3600), None);
    }

    #[test]
    fn a_settings_patch_changes_only_what_it_names() {
        let mut s = GroupSettings { announce_only: true, ..GroupSettings::default() };
        GroupSettingsPatch { join_approval: Some(true), ..Default::default() }.apply(&mut s);
        assert!(s.announce_only && s.join_approval && !s.locked_info);
    }
}
