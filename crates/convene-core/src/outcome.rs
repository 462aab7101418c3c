//! What happened to each participant of a create or a participant change. A closed set with names: every API
//! reports these, never raw network codes alone.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::phone::PhoneNumber;

/// The participant changes WhatsApp offers. Creation reports like `Add`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantChange {
    Add,
    Remove,
    Promote,
    Demote,
    /// Let in someone who asked to join by link while join approval is on.
    Approve,
}

impl ParticipantChange {
    /// The name as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Promote => "promote",
            Self::Demote => "demote",
            Self::Approve => "approve",
        }
    }
}

/// What happened to one participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantOutcome {
    /// Now a member.
    Added,
    /// Their privacy settings refused the add, and a private invite was sent instead.
    InviteSent,
    /// Their privacy settings refused the add (or they blocked the number); no invite was sent.
    PrivacyBlocked,
    /// They left the group recently and cannot be added back yet.
    RecentlyLeft,
    /// Already a member.
    AlreadyMember,
    /// The number has no WhatsApp account.
    NotOnWhatsapp,
    /// Not a valid phone number.
    InvalidNumber,
    /// Removed from the group.
    Removed,
    /// Made an admin.
    Promoted,
    /// No longer an admin.
    Demoted,
    /// Not a member, so they cannot be removed, promoted or demoted.
    NotMember,
    /// The network refused the change, e.g. removing or demoting the group's creator.
    NotAllowed,
    /// There is no pending request to join from this person to approve.
    NoJoinRequest,
    /// Any other refusal; the raw network code is reported beside it.
    Failed,
}

impl ParticipantOutcome {
    pub const ALL: [Self; 14] = [
        Self::Added,
        Self::InviteSent,
        Self::PrivacyBlocked,
        Self::RecentlyLeft,
        Self::AlreadyMember,
        Self::NotOnWhatsapp,
        Self::InvalidNumber,
        Self::Removed,
        Self::Promoted,
        Self::Demoted,
        Self::NotMember,
        Self::NotAllowed,
        Self::NoJoinRequest,
        Self::Failed,
    ];

    /// The name as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::InviteSent => "invite_sent",
            Self::PrivacyBlocked => "privacy_blocked",
            Self::RecentlyLeft => "recently_left",
            Self::AlreadyMember => "already_member",
            Self::NotOnWhatsapp => "not_on_whatsapp",
            Self::InvalidNumber => "invalid_number",
            Self::Removed => "removed",
            Self::Promoted => "promoted",
            Self::Demoted => "demoted",
            Self::NotMember => "not_member",
            Self::NotAllowed => "not_allowed",
            Self::NoJoinRequest => "no_join_request",
            Self::Failed => "failed",
        }
    }

    /// Did the requested change take effect?
    pub fn is_success(self) -> bool {
        matches!(self, Self::Added | Self::Removed | Self::Promoted | Self::Demoted)
    }

    /// A sentence for people, used in dialects that carry a message.
    pub fn message(self) -> &'static str {
        match self {
            Self::Added => "The participant was added successfully",
            Self::InviteSent => {
                "The participant's privacy settings do not allow adding them; a private invite was sent"
            }
            Self::PrivacyBlocked => "The participant's privacy settings do not allow adding them",
            Self::RecentlyLeft => "The participant left the group recently and cannot be added yet",
            Self::AlreadyMember => "The participant is already in the group",
            Self::NotOnWhatsapp => "The number does not have a WhatsApp account",
            Self::InvalidNumber => "The number is not a valid phone number",
            Self::Removed => "The participant was removed",
            Self::Promoted => "The participant is now an admin",
            Self::Demoted => "The participant is no longer an admin",
            Self::NotMember => "The participant is not in the group",
            Self::NotAllowed => "WhatsApp does not allow this change for this participant",
            Self::NoJoinRequest => "The participant has not asked to join the group",
            Self::Failed => "WhatsApp refused the change",
        }
    }

    /// Maps a WhatsApp per-participant status code for `change` to an outcome. Both connectors use this, so the
    /// sandbox and the real network are read by one rule.
    pub fn from_wa_status(change: ParticipantChange, code: u16) -> Self {
        use ParticipantChange::{Add, Approve, Demote, Promote, Remove};
        match (change, code) {
            (Add | Approve, 200) => Self::Added,
            (Remove, 200) => Self::Removed,
            (Promote, 200) => Self::Promoted,
            (Demote, 200) => Self::Demoted,
            (Add, 403) => Self::PrivacyBlocked,
            (Add, 408) => Self::RecentlyLeft,
            (Add | Approve, 409) => Self::AlreadyMember,
            (Approve, 404) => Self::NoJoinRequest,
            (Add, 404) => Self::NotOnWhatsapp,
            (Remove | Promote | Demote, 404) => Self::NotMember,
            (Remove | Promote | Demote, 403 | 406) => Self::NotAllowed,
            _ => Self::Failed,
        }
    }

    /// The status code WhatsApp gives for this outcome, for a report whose network gave none (the providers' dialects
    /// show one for every participant): `from_wa_status` read the other way, with 400 for an input that is not a
    /// number, which never reached the network, and 403 for a private invite sent after a privacy refusal.
    pub fn wa_status(self) -> u16 {
        match self {
            Self::Added | Self::Removed | Self::Promoted | Self::Demoted => 200,
            Self::InvalidNumber => 400,
            Self::InviteSent | Self::PrivacyBlocked | Self::NotAllowed => 403,
            Self::NotOnWhatsapp | Self::NotMember | Self::NoJoinRequest => 404,
            Self::RecentlyLeft => 408,
            Self::AlreadyMember => 409,
            Self::Failed => 500,
        }
    }
}

/// The private-invite code WhatsApp returns with a 403 privacy refusal (`<add_request>`): sending it in a group
/// invite message lets the person join until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddRequest {
    pub code: String,
    pub expires_at: Timestamp,
}

/// One participant's result from the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantResult {
    pub phone: PhoneNumber,
    pub outcome: ParticipantOutcome,
    /// The raw WhatsApp status code, where the network gave one.
    pub code: Option<u16>,
    pub add_request: Option<AddRequest>,
}

impl ParticipantResult {
    /// A result read from a WhatsApp status code.
    pub fn from_wa(change: ParticipantChange, phone: PhoneNumber, code: u16, add_request: Option<AddRequest>) -> Self {
        Self { phone, outcome: ParticipantOutcome::from_wa_status(change, code), code: Some(code), add_request }
    }
}

#[cfg(test)]
mod tests {
    use super::ParticipantChange::*;
    use super::ParticipantOutcome::*;
    use super::*;

    #[test]
    fn each_outcomes_name_is_its_serialised_name() {
        for outcome in ParticipantOutcome::ALL {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str(), "{outcome:?}");
        }
    }

    #[test]
    fn whatsapp_codes_map_to_named_outcomes() {
        let cases = [
            (Add, 200, Added),
            (Add, 403, PrivacyBlocked),
            (Add, 408, RecentlyLeft),
            (Add, 409, AlreadyMember),
            (Add, 404, NotOnWhatsapp),
            (Add, 500, Failed),
            (Remove, 200, Removed),
            (Remove, 404, NotMember),
            (Remove, 406, NotAllowed),
            (Promote, 200, Promoted),
            (Promote, 404, NotMember),
            (Demote, 200, Demoted),
            (Demote, 403, NotAllowed),
            (Demote, 409, Failed),
            (Approve, 200, Added),
            (Approve, 404, NoJoinRequest),
            (Approve, 409, AlreadyMember),
        ];
        for (change, code, want) in cases {
            assert_eq!(ParticipantOutcome::from_wa_status(change, code), want, "{change:?} {code}");
            // And back: the code an outcome is shown with reads as the same outcome.
            assert_eq!(ParticipantOutcome::from_wa_status(change, want.wa_status()), want, "{want:?} for {change:?}");
        }
        assert_eq!((InvalidNumber.wa_status(), InviteSent.wa_status(), Failed.wa_status()), (400, 403, 500));
    }

    #[test]
    fn outcomes_serialise_as_snake_case_names() {
        assert_eq!(serde_json::to_string(&NotOnWhatsapp).unwrap(), "\"not_on_whatsapp\"");
        assert_eq!(serde_json::to_string(&InviteSent).unwrap(), "\"invite_sent\"");
    }

    #[test]
    fn only_effective_changes_count_as_success() {
        assert!(Added.is_success() && Removed.is_success());
        assert!(!PrivacyBlocked.is_success() && !AlreadyMember.is_success() && !InviteSent.is_success());
    }
}
