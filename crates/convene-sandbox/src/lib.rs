//! A simulated WhatsApp network: Convene's default connector, and what end-to-end tests run against.
//!
//! It models registered and unregistered numbers, group-add privacy (everyone / contacts / nobody), contacts and
//! blocks, "recently left", 403 refusals carrying add-request codes that expire, invite links (with join approval),
//! the group size limit and subject/description limits, and injected latency and faults, including "the group was
//! created but the reply was lost". The world is kept apart from Convene's tables, because it plays the remote side:
//! a group it created must outlive a crash of the gateway. One node keeps it in a SQLite file of its own
//! (`store.rs`); nodes on one PostgreSQL database keep it there, in a schema of its own, as one network for all of
//! them (`shared.rs`). A change returns once it is committed, and a call reads only the rows it needs, so the world's
//! size costs neither memory nor time per call. All randomness comes from a seeded generator kept with the world, so
//! a run is repeatable.
#![forbid(unsafe_code)]

mod connector;
mod group_cache;
mod legacy;
mod network;
mod shared;
mod store;
mod world;

use convene_core::{GroupJid, GroupMember, GroupSettings, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};

pub use connector::SandboxConnector;

/// Instances on the built-in simulated network.
pub const KIND: convene_core::ConnectorKind = convene_core::ConnectorKind::new("sandbox");
pub use network::SandboxNetwork;

/// How the simulated network behaves. `seed`, `faults` and `network_limits` only seed a new world: an existing
/// world keeps its own generator state, faults and limits (change faults at run time with [`SandboxNetwork::set_faults`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Seed of the generator behind group ids, invite codes, add-request codes and fault draws.
    pub seed: u64,
    /// Whether a valid number the world has never seen is a WhatsApp user (with group-add privacy "everyone").
    pub unknown_numbers_registered: bool,
    /// Most members a group may have, its creator included.
    pub max_group_size: usize,
    /// After someone leaves a group, adding them back within this many seconds answers 408.
    pub recently_left_secs: u64,
    /// Lifetime of the add-request code that comes with a 403 privacy refusal, in seconds.
    pub add_request_ttl_secs: u64,
    /// Most messages a person's inbox keeps: beyond it, the oldest go.
    pub inbox_limit: usize,
    /// Latency and failures to inject.
    pub faults: Faults,
    /// WhatsApp's own limits on creating groups; off unless switched on.
    pub network_limits: NetworkLimits,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            unknown_numbers_registered: true,
            max_group_size: 1024,
            recently_left_secs: 86_400,
            add_request_ttl_secs: 3 * 86_400,
            inbox_limit: 1000,
            faults: Faults::default(),
            network_limits: NetworkLimits::default(),
        }
    }
}

/// The network's own limits on group creation, as WhatsApp applies them to a number that creates too fast: a
/// creation too soon after the last one, or past the daily allowance, is refused with `rate-overlimit` (429), and a
/// number refused `ban_after_hits` times within a day is temporarily banned (code 103) for `ban_secs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkLimits {
    pub enabled: bool,
    /// Least time between two creations by one number, in seconds.
    pub min_interval_secs: u64,
    /// Most creations by one number in any 24 hours.
    pub max_per_day: u32,
    /// Refusals within 24 hours that get the number banned.
    pub ban_after_hits: u32,
    /// How long a ban lasts, in seconds.
    pub ban_secs: u64,
}

impl Default for NetworkLimits {
    fn default() -> Self {
        Self { enabled: false, min_interval_secs: 120, max_per_day: 50, ban_after_hits: 3, ban_secs: 86_400 }
    }
}

/// What the network's limits did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkStats {
    /// Creations refused with `rate-overlimit`.
    pub rate_limit_hits: u64,
    /// Temporary bans handed out.
    pub bans: u64,
    /// Groups created, in all.
    pub groups_created: u64,
}

/// Trouble to inject into connector calls. All zero by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every connector call waits this long before acting.
    pub latency_ms: u64,
    /// Probability (0 to 1) that a group creation takes effect but its reply is lost.
    pub reply_lost_rate: f64,
    /// Probability (0 to 1) that a changing call fails before doing anything.
    pub error_rate: f64,
    /// The network cannot be reached, as when the machine has no route to WhatsApp: every instance is
    /// `unreachable` (reported once when this is switched on, `connected` again when it is switched off) and every
    /// call that needs the network fails as not connected.
    pub unreachable: bool,
}

impl Faults {
    pub fn validate(&self) -> Result<(), SandboxError> {
        for (name, rate) in [("reply_lost_rate", self.reply_lost_rate), ("error_rate", self.error_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(SandboxError::InvalidFaults(format!("{name} must be between 0 and 1 (got {rate})")));
            }
        }
        Ok(())
    }
}

/// Who may add a person to a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupAddPrivacy {
    #[default]
    Everyone,
    /// Only people in this person's own contacts.
    Contacts,
    Nobody,
}

/// A change to a person; absent fields stay as they are. A person the world has not seen starts from the defaults
/// for unknown numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PersonPatch {
    /// Whether the number has a WhatsApp account.
    pub registered: Option<bool>,
    pub group_add: Option<GroupAddPrivacy>,
    pub add_contacts: Vec<PhoneNumber>,
    pub remove_contacts: Vec<PhoneNumber>,
    /// Numbers this person blocks: they can neither add them to groups nor reach their inbox.
    pub block: Vec<PhoneNumber>,
    pub unblock: Vec<PhoneNumber>,
    pub name: Option<String>,
}

/// What the world believes about a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Person {
    pub phone: PhoneNumber,
    pub registered: bool,
    pub group_add: GroupAddPrivacy,
    pub contacts: Vec<PhoneNumber>,
    pub blocked: Vec<PhoneNumber>,
    pub name: Option<String>,
}

/// A group as the network holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SandboxGroup {
    pub jid: GroupJid,
    pub subject: String,
    pub description: Option<String>,
    pub creator: PhoneNumber,
    pub created_at: Timestamp,
    pub settings: GroupSettings,
    /// In joining order, the creator first.
    pub members: Vec<GroupMember>,
    /// The code of the current invite link, `https://chat.whatsapp.com/<code>`.
    pub invite_code: String,
    /// The key the creating client sent with the creation.
    pub creation_key: String,
    /// People who opened the invite link while join approval was on.
    pub pending_join_requests: Vec<PhoneNumber>,
    pub has_picture: bool,
}

/// How a join went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinResult {
    Joined,
    /// Join approval is on: an admin has to approve the request.
    Pending,
}

/// A message a connector sent to a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxMessage {
    pub from: PhoneNumber,
    pub at: Timestamp,
    pub kind: InboxKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxKind {
    Text {
        text: String,
    },
    /// A private group invite carrying the add-request code of a privacy refusal.
    GroupInvite {
        group: GroupJid,
        subject: String,
        code: String,
        expires_at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("no such group in the sandbox")]
    UnknownGroup,
    #[error("this person has no private invite to the group")]
    NotInvited,
    #[error("the private invite has expired")]
    InviteExpired,
    #[error("no group has this invite code (the link may have been reset)")]
    InvalidInviteCode,
    #[error("the group is full")]
    GroupFull,
    #[error("this number has no WhatsApp account in the sandbox")]
    NotRegistered,
    #[error("this person is already a member of the group")]
    AlreadyMember,
    #[error("this person is not a member of the group")]
    NotMember,
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    #[error("sandbox world: {0}")]
    Io(String),
}
