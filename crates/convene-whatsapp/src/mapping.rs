//! Reading the library's answers as Convene's: errors, per-participant results, group metadata and group
//! notifications. Pure functions, so golden stanzas and constructed errors can test every rule offline.

use std::time::Duration;

use convene_core::{
    AddRequest, ConnectorError, Disappearing, GroupJid, GroupMember, GroupMetadata, GroupSettings, MemberRole,
    ParticipantChange, ParticipantResult, PhoneNumber, ReportedGroupChange, Timestamp,
};
use whatsapp_rust::Jid;
use whatsapp_rust::features::{GroupError, GroupMetadata as WaGroupMetadata};
use whatsapp_rust::request::IqError;
use whatsapp_rust::wacore::iq::groups::ParticipantChangeResponse;
use whatsapp_rust::wacore::stanza::groups::GroupNotificationAction;

/// WhatsApp's answer to too many requests (`rate-overlimit`).
const RATE_LIMITED: u16 = 429;

/// The phone number behind a user JID, when it is one (`…@s.whatsapp.net`); LIDs (`…@lid`) hide the number.
pub(crate) fn phone_of(jid: &Jid) -> Option<PhoneNumber> {
    if jid.is_pn() { PhoneNumber::parse(&jid.user).ok() } else { None }
}

/// The number a participant answer is about: the JID itself, or the `phone_number` the server adds for LIDs.
fn participant_phone(jid: &Jid, phone_number: Option<&Jid>) -> Option<PhoneNumber> {
    phone_of(jid).or_else(|| phone_number.and_then(phone_of))
}

pub(crate) fn group_jid(jid: &Jid) -> Result<GroupJid, ConnectorError> {
    GroupJid::parse(&jid.to_string()).ok_or_else(|| ConnectorError::Other(format!("{jid} is not a group id")))
}

/// A library error as Convene's. Whether a request may have taken effect decides between `NotConnected` (it was
/// never sent) and `OutcomeUnknown` (it went out and no answer came), which creation's exactly-once rests on.
pub(crate) fn connector_error(e: GroupError) -> ConnectorError {
    match e {
        GroupError::Iq(iq) => iq_error(iq),
        GroupError::InvalidRequest(text) => ConnectorError::Rejected { code: 400, text },
        GroupError::DescriptionConflict => {
            ConnectorError::Rejected { code: 409, text: "the description was changed meanwhile; try again".into() }
        }
        other => ConnectorError::Other(other.to_string()),
    }
}

pub(crate) fn iq_error(e: IqError) -> ConnectorError {
    match e {
        IqError::NotConnected | IqError::InternalChannelClosed | IqError::ClientState(_) => {
            ConnectorError::NotConnected("the connection to WhatsApp is down".into())
        }
        IqError::Timeout | IqError::Disconnected(_) | IqError::Socket(_) => ConnectorError::OutcomeUnknown,
        IqError::ServerError { code, text, backoff, .. } => server_error(code, text, backoff),
        other => ConnectorError::Other(other.to_string()),
    }
}

/// A `<error code text>` answer from WhatsApp's group service.
pub(crate) fn server_error(code: u16, text: String, backoff: Option<u32>) -> ConnectorError {
    match code {
        RATE_LIMITED => ConnectorError::RateLimited { retry_after: backoff.map(|s| Duration::from_secs(u64::from(s))) },
        // not-authorized: the number is in the group but not an admin.
        401 => ConnectorError::NotAdmin,
        // forbidden (not a participant) and item-not-found (no such group) read the same to a caller.
        403 | 404 => ConnectorError::GroupNotFound,
        _ => ConnectorError::Rejected { code, text },
    }
}

/// One participant's answer to an add/remove/promote/demote/approve, or to a creation (read like an add).
pub(crate) fn participant_result(
    change: ParticipantChange,
    r: &ParticipantChangeResponse,
) -> Option<ParticipantResult> {
    let phone = participant_phone(&r.jid, r.phone_number.as_ref())?;
    let code = match &r.error {
        None => 200,
        // A code we cannot read is still a refusal; 0 maps to `failed`.
        Some(e) => e.parse().unwrap_or(0),
    };
    let add_request = r.add_request.as_ref().map(|a| AddRequest {
        code: a.code.clone(),
        expires_at: Timestamp::from_millis(i64::try_from(a.expiration).unwrap_or(i64::MAX / 1000) * 1000),
    });
    Some(ParticipantResult::from_wa(change, phone, code, add_request))
}

/// The group as Convene describes it. Members whose number WhatsApp hides (a LID without a known number) cannot be
/// named by phone and are left out.
pub(crate) fn metadata(m: &WaGroupMetadata) -> Result<GroupMetadata, ConnectorError> {
    let creator = m.creator_pn.as_ref().or(m.creator.as_ref()).and_then(phone_of);
    let members = m
        .participants
        .iter()
        .filter_map(|p| {
            let phone = participant_phone(&p.jid, p.phone_number.as_ref())?;
            let role = if p.is_super_admin() {
                MemberRole::Creator
            } else if p.is_admin() {
                MemberRole::Admin
            } else {
                MemberRole::Member
            };
            Some(GroupMember { phone, role })
        })
        .collect();
    let disappearing =
        m.ephemeral.and_then(|e| e.expiration).and_then(Disappearing::from_seconds).unwrap_or(Disappearing::Off);
    Ok(GroupMetadata {
        jid: group_jid(&m.id)?,
        subject: m.subject.clone(),
        description: m.description.clone().filter(|d| !d.is_empty()),
        creator,
        created_at: Timestamp::from_millis(
            m.creation_time.and_then(|t| i64::try_from(t).ok()).unwrap_or(0).saturating_mul(1000),
        ),
        settings: GroupSettings {
            announce_only: m.is_announcement,
            locked_info: m.is_locked,
            join_approval: m.membership_approval,
            disappearing_messages: disappearing,
        },
        members,
    })
}

/// A `w:gp2` notification as a group event; `None` for the kinds Convene does not report. `by` is who did it: an
/// `add` with an invite reason is people joining on their own, a `remove` of exactly the author is a leave.
pub(crate) fn group_change(action: &GroupNotificationAction, by: Option<&PhoneNumber>) -> Option<ReportedGroupChange> {
    use GroupNotificationAction as A;
    let phones = |ps: &[whatsapp_rust::wacore::stanza::groups::GroupParticipantInfo]| -> Vec<PhoneNumber> {
        ps.iter().filter_map(|p| participant_phone(&p.jid, p.phone_number.as_ref())).collect()
    };
    Some(match action {
        A::Add { participants, reason: Some(reason) } if reason.contains("invite") => {
            ReportedGroupChange::ParticipantsJoined(phones(participants))
        }
        A::Add { participants, .. } => ReportedGroupChange::ParticipantsAdded(phones(participants)),
        A::Remove { participants, .. } if by.is_some() && phones(participants).iter().eq(by) => {
            ReportedGroupChange::ParticipantsLeft(phones(participants))
        }
        A::Remove { participants, .. } => ReportedGroupChange::ParticipantsRemoved(phones(participants)),
        A::Promote { participants } => ReportedGroupChange::ParticipantsPromoted(phones(participants)),
        A::Demote { participants } => ReportedGroupChange::ParticipantsDemoted(phones(participants)),
        A::Subject { subject, .. } => ReportedGroupChange::Subject(subject.clone()),
        A::Description { description, .. } => ReportedGroupChange::Description(description.clone()),
        A::Locked { .. } | A::Unlocked | A::Announce | A::NotAnnounce | A::Ephemeral { .. } => {
            ReportedGroupChange::Settings
        }
        _ => return None,
    })
}
