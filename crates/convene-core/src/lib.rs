//! Convene's domain: identifiers, parsed inputs, participant outcomes, the connector and store ports, and the clock.
//!
//! This crate does no I/O and depends on neither axum nor sqlx, so the service, the sandbox and the store can all be
//! tested against it without a server.
#![forbid(unsafe_code)]

pub mod clock;
pub mod connector;
pub mod device_keys;
pub mod events;
pub mod group;
pub mod ids;
pub mod leases;
pub mod outcome;
pub mod pacing;
pub mod phone;
pub mod seal;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use connector::{
    Connector, ConnectorError, ConnectorKind, ConnectorReport, ConnectorReports, InstanceState, PairingCode,
    ReportedGroupChange,
};
pub use device_keys::{DeviceKeyRow, DeviceKeyStore, DeviceKeyWrite};
pub use group::{
    Disappearing, GroupDescription, GroupMember, GroupMetadata, GroupPicture, GroupSettings, GroupSettingsPatch,
    GroupSubject, MemberRole,
};
pub use ids::{CreationKey, GroupId, GroupJid, InstanceId};
pub use leases::{ClusterNode, Lease, LeaseStore};
pub use outcome::{AddRequest, ParticipantChange, ParticipantOutcome, ParticipantResult};
pub use pacing::{PacingPolicy, PoolNumber, forecast_last};
pub use phone::{PhoneNumber, PhoneParseError};
pub use seal::SecretBox;
pub use store::{DbError, Store};
