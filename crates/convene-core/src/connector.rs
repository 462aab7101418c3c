//! The connector port: what Convene asks of a WhatsApp network, implemented by the sandbox and by the real
//! whatsapp-rust connector. Shaped after the WhatsApp Web group protocol: per-participant status codes, add-request
//! codes on privacy refusals, invite links, and a client-chosen creation key.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::group::{GroupDescription, GroupMetadata, GroupPicture, GroupSettings, GroupSettingsPatch, GroupSubject};
use crate::ids::{CreationKey, GroupJid};
use crate::outcome::{ParticipantChange, ParticipantResult};
use crate::phone::PhoneNumber;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// The built-in simulated network.
    Sandbox,
    /// A real number over WhatsApp Web multi-device.
    Whatsapp,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "whatsapp" => Some(Self::Whatsapp),
            _ => None,
        }
    }
}

/// An instance's connection to its network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum InstanceState {
    Starting,
    /// Waiting for a QR code scan or a phone code.
    Pairing,
    Connected,
    Disconnected,
    LoggedOut,
    /// WhatsApp has paused this number (code 103: created too many groups).
    TemporarilyBanned {
        until: Option<Timestamp>,
    },
}

impl InstanceState {
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }
}

/// Everything needed to create a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateGroupRequest {
    pub subject: GroupSubject,
    pub description: Option<GroupDescription>,
    pub participants: Vec<PhoneNumber>,
    pub settings: GroupSettings,
    pub key: CreationKey,
}

/// A created group and what happened to each requested participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedGroup {
    pub metadata: GroupMetadata,
    pub participants: Vec<ParticipantResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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

    /// Looks on the network for a group this account created with `key` (reconciliation after an unknown outcome).
    async fn find_created_group(&self, key: &CreationKey) -> Result<Option<GroupMetadata>, ConnectorError>;

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
}
