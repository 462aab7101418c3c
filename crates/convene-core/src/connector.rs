//! The connector port: what Convene asks of a WhatsApp network, implemented by the sandbox and by the real
//! whatsapp-rust connector. Shaped after the WhatsApp Web group protocol: per-participant status codes, add-request
//! codes on privacy refusals, invite links, and a client-chosen creation key.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::group::{GroupDescription, GroupMetadata, GroupPicture, GroupSettings, GroupSettingsPatch, GroupSubject};
use crate::ids::{CreationKey, GroupJid, InstanceId};
use crate::outcome::{ParticipantChange, ParticipantResult};
use crate::phone::PhoneNumber;

/// The kind of network an instance is on, by name (`sandbox`, `whatsapp`). Each connector crate names its own kind
/// (`convene_sandbox::KIND`); which kinds a build has is the server's registry, not this type, so a new kind needs no
/// change here. Stored and sent as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorKind(&'static str);

/// Every kind name read back from a database, kept once: names are few (a kind is only stored after the registry
/// accepted it), and a `Copy` kind keeps records cheap to pass around.
static NAMED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

impl ConnectorKind {
    /// A kind named in code. The name is lowercase letters, digits and `_`.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The kind called `name`, as stored; `None` when `name` cannot be a kind's name (empty, longer than 32, or
    /// other than lowercase letters, digits and `_`).
    pub fn named(name: &str) -> Option<Self> {
        let well_formed = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return None;
        }
        let mut named = NAMED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = named.iter().find(|known| **known == name) {
            return Some(Self(known));
        }
        let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
        named.push(kept);
        Some(Self(kept))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ConnectorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

/// A name; the server's OpenAPI document lists the kinds its build has.
impl utoipa::PartialSchema for ConnectorKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).into()
    }
}

impl utoipa::ToSchema for ConnectorKind {}

/// An instance's connection to its network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum InstanceState {
    Starting,
    /// Dialling the network: no answer yet, and no attempt has failed.
    Connecting,
    /// Waiting for a QR code scan or a phone code.
    Pairing,
    Connected,
    /// The connection dropped; the connector reconnects by itself.
    Disconnected,
    /// The network cannot be reached: connection attempts fail or go unanswered, and the connector keeps trying.
    Unreachable {
        /// The last failure, in words.
        #[schema(example = "GET https://web.whatsapp.com/sw.js: failed to lookup address information")]
        error: String,
        /// When this outage began: the first failed (or unanswered) attempt.
        since: Timestamp,
        /// When the connector tries again, as far as it can tell (give or take a tenth); `null` while an attempt
        /// is under way or when it does not say.
        next_retry_at: Option<Timestamp>,
    },
    LoggedOut,
    /// WhatsApp has paused this number (code 103: created too many groups).
    TemporarilyBanned {
        until: Option<Timestamp>,
    },
}

impl InstanceState {
    /// Every state's name, as `name` gives it.
    pub const NAMES: [&'static str; 8] = [
        "starting",
        "connecting",
        "pairing",
        "connected",
        "disconnected",
        "unreachable",
        "logged_out",
        "temporarily_banned",
    ];

    /// The state's name as the API writes its `status`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Connecting => "connecting",
            Self::Pairing => "pairing",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Unreachable { .. } => "unreachable",
            Self::LoggedOut => "logged_out",
            Self::TemporarilyBanned { .. } => "temporarily_banned",
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }

    /// Whether a connector reports going from `self` to `next`. Any change is news except a new failure within one
    /// outage (another error, another retry time): an outage is reported once, when it begins, and `state` gives
    /// its details as they stand.
    pub fn reports_change_to(&self, next: &Self) -> bool {
        match (self, next) {
            (Self::Unreachable { .. }, Self::Unreachable { .. }) => false,
            _ => self != next,
        }
    }

    /// Why an instance in this state cannot work now, in words an answer can show; `None` when it is connected. A
    /// ban says until when; an outage says what failed and when the next attempt is. One wording for the
    /// connector's errors, the native API and every dialect.
    pub fn not_connected_reason(&self) -> Option<String> {
        Some(match self {
            Self::Connected => return None,
            Self::Starting => "the session is starting".to_owned(),
            Self::Connecting => "the session is connecting to WhatsApp".to_owned(),
            Self::Pairing => "the instance is not paired yet: scan its QR code or link it with a phone code".to_owned(),
            Self::Disconnected => {
                "the connection to WhatsApp is down (a paired number reconnects by itself)".to_owned()
            }
            Self::Unreachable { error, since, next_retry_at } => {
                let next = match next_retry_at {
                    Some(at) => format!("next attempt at {at}"),
                    None => "retrying".to_owned(),
                };
                format!("WhatsApp cannot be reached (since {since}): {error}; {next}")
            }
            Self::LoggedOut => "the number was logged out: pair it again".to_owned(),
            Self::TemporarilyBanned { until: Some(until) } => {
                format!("WhatsApp has temporarily banned this number until {until}")
            }
            Self::TemporarilyBanned { until: None } => "WhatsApp has temporarily banned this number".to_owned(),
        })
    }
}

/// Everything needed to create a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGroupRequest {
    pub subject: GroupSubject,
    pub description: Option<GroupDescription>,
    pub participants: Vec<PhoneNumber>,
    pub settings: GroupSettings,
    pub key: CreationKey,
}

/// A created group and what happened to each requested participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedGroup {
    pub metadata: GroupMetadata,
    pub participants: Vec<ParticipantResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ConnectorError {
    #[error("the instance is not connected to WhatsApp ({0})")]
    NotConnected(String),
    /// The request may or may not have taken effect: the reply never came.
    #[error("no reply from the network in time; the outcome is unknown")]
    OutcomeUnknown,
    #[error("the network is rate-limiting this number")]
    RateLimited { retry_after: Option<Duration> },
    #[error("WhatsApp has temporarily banned this number")]
    TemporarilyBanned { until: Option<Timestamp> },
    #[error("no such group on the network, or this number is not in it")]
    GroupNotFound,
    #[error("this number is not an admin of the group")]
    NotAdmin,
    #[error("the network refused the request: {text} (code {code})")]
    Rejected { code: u16, text: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("network failure: {0}")]
    Other(String),
}

/// One WhatsApp account (an instance) on its network.
#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> ConnectorKind;

    async fn state(&self) -> InstanceState;

    /// The account's own number, once known (after pairing, for real numbers).
    async fn own_number(&self) -> Option<PhoneNumber>;

    /// Creates a group; `request.key` travels with it so that `find_created_group` can find it after a lost reply.
    async fn create_group(&self, request: &CreateGroupRequest) -> Result<CreatedGroup, ConnectorError>;

    /// Looks on the network for the group `request` created, if it did (reconciliation after an unknown outcome).
    /// `since` is when the creation was first asked for: nothing older can be it.
    async fn find_created_group(
        &self,
        request: &CreateGroupRequest,
        since: Timestamp,
    ) -> Result<Option<GroupMetadata>, ConnectorError>;

    async fn group_metadata(&self, group: &GroupJid) -> Result<GroupMetadata, ConnectorError>;

    /// The groups this account is in.
    async fn joined_groups(&self) -> Result<Vec<GroupMetadata>, ConnectorError>;

    async fn change_participants(
        &self,
        group: &GroupJid,
        change: ParticipantChange,
        people: &[PhoneNumber],
    ) -> Result<Vec<ParticipantResult>, ConnectorError>;

    /// `https://chat.whatsapp.com/<code>`; `reset` revokes the old link first.
    async fn invite_link(&self, group: &GroupJid, reset: bool) -> Result<String, ConnectorError>;

    async fn set_subject(&self, group: &GroupJid, subject: &GroupSubject) -> Result<(), ConnectorError>;

    async fn set_description(&self, group: &GroupJid, description: &GroupDescription) -> Result<(), ConnectorError>;

    async fn set_settings(&self, group: &GroupJid, patch: &GroupSettingsPatch) -> Result<(), ConnectorError>;

    async fn set_picture(&self, group: &GroupJid, picture: &GroupPicture) -> Result<(), ConnectorError>;

    async fn leave(&self, group: &GroupJid) -> Result<(), ConnectorError>;

    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<(), ConnectorError>;

    /// Sends a private group invite carrying the add-request `code` from a privacy refusal.
    async fn send_group_invite(
        &self,
        to: &PhoneNumber,
        group: &GroupJid,
        subject: &str,
        code: &str,
        expires_at: Timestamp,
    ) -> Result<(), ConnectorError>;

    /// The QR code to scan while the account waits to be linked; `None` when there is none right now.
    async fn pairing_qr(&self) -> Option<PairingCode> {
        None
    }

    /// Asks for an eight-character code to type on the phone (WhatsApp > Linked devices > Link with phone number).
    async fn request_pairing_code(&self, _phone: &PhoneNumber) -> Result<PairingCode, ConnectorError> {
        Err(ConnectorError::Unsupported(format!("{} instances are not paired", self.kind().as_str())))
    }

    /// Unlinks the account and forgets its keys; a new pairing starts.
    async fn logout(&self) -> Result<(), ConnectorError> {
        Err(ConnectorError::Unsupported(format!("{} instances cannot log out", self.kind().as_str())))
    }
}

/// A pairing QR payload or phone code and when it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairingCode {
    /// The QR payload to render, or the code to type on the phone.
    pub code: String,
    pub expires_at: Timestamp,
}

/// Something the network told an account, reported to the service as it happens (not an event of the outbox: the
/// service turns some reports into events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorReport {
    /// The account's connection changed (a ban carries its end).
    StateChanged(InstanceState),
    /// A new QR code to scan (they rotate while pairing).
    QrReady(PairingCode),
    /// Pairing finished: the account is now this number.
    Paired { phone: PhoneNumber },
    /// Someone (possibly this account from another device) changed a group.
    Group { group: GroupJid, change: ReportedGroupChange, by: Option<PhoneNumber> },
}

/// A change to a group reported by the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportedGroupChange {
    Subject(String),
    Description(Option<String>),
    Settings,
    ParticipantsAdded(Vec<PhoneNumber>),
    ParticipantsRemoved(Vec<PhoneNumber>),
    ParticipantsPromoted(Vec<PhoneNumber>),
    ParticipantsDemoted(Vec<PhoneNumber>),
    /// They joined on their own: through the invite link or a private invite.
    ParticipantsJoined(Vec<PhoneNumber>),
    /// They left of their own accord (not removed by an admin).
    ParticipantsLeft(Vec<PhoneNumber>),
}

/// Where a connector sends what the network reports; the service implements it.
pub trait ConnectorReports: Send + Sync {
    fn report(&self, instance: InstanceId, report: ConnectorReport);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable(error: &str, next_retry_at: Option<Timestamp>) -> InstanceState {
        InstanceState::Unreachable { error: error.into(), since: Timestamp::from_millis(0), next_retry_at }
    }

    #[test]
    fn an_outage_is_reported_once_however_often_its_attempts_fail() {
        let first = unreachable("connection refused", None);
        let later = unreachable("timed out", Some(Timestamp::from_millis(5_000)));

        assert!(InstanceState::Connecting.reports_change_to(&first));
        assert!(InstanceState::Disconnected.reports_change_to(&first));
        assert!(!first.reports_change_to(&later), "a new failure within the outage is not news");
        assert!(later.reports_change_to(&InstanceState::Connected), "the end of the outage is");
        assert!(!InstanceState::Connected.reports_change_to(&InstanceState::Connected));
        let ban = |ms| InstanceState::TemporarilyBanned { until: Some(Timestamp::from_millis(ms)) };
        assert!(ban(1).reports_change_to(&ban(2)), "a ban's new end is reported");
    }

    #[test]
    fn an_outage_says_what_failed_since_when_and_when_it_is_tried_again() {
        let since = Timestamp::from_millis(1_795_392_000_000);
        let state = InstanceState::Unreachable {
            error: "dns error: no such host".into(),
            since,
            next_retry_at: Some(since.plus(Duration::from_secs(3))),
        };
        assert_eq!(
            state.not_connected_reason().unwrap(),
            "WhatsApp cannot be reached (since 2026-11-23T00:00:00Z): dns error: no such host; next attempt at \
             2026-11-23T00:00:03Z"
        );
        let trying = InstanceState::Unreachable { error: "no answer".into(), since, next_retry_at: None };
        assert!(trying.not_connected_reason().unwrap().ends_with("no answer; retrying"));
    }
}
