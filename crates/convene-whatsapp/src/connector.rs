//! Convene's `Connector` port on a real WhatsApp account.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convene_core::connector::{CreateGroupRequest, CreatedGroup};
use convene_core::group::PictureFormat;
use convene_core::{
    Connector, ConnectorError, ConnectorKind, GroupDescription, GroupJid, GroupMetadata, GroupPicture,
    GroupSettingsPatch, GroupSubject, InstanceState, PairingCode, ParticipantChange, ParticipantOutcome,
    ParticipantResult, PhoneNumber, Timestamp,
};
use whatsapp_rust::Jid;
use whatsapp_rust::features::{
    GroupDescription as WaDescription, GroupSubject as WaSubject, MembershipApprovalMode, PreviousDescription,
};
use whatsapp_rust::waproto::whatsapp as wa;

use crate::account::Account;
use crate::create::{CreateGroupWithOutcomes, created_group};
use crate::mapping::{self, connector_error, iq_error};

/// How far a group's creation time may precede the request's (clock skew between us and WhatsApp).
const CREATION_CLOCK_SKEW: Duration = Duration::from_secs(120);

/// One real WhatsApp account behind the `Connector` port.
#[derive(Clone)]
pub struct WhatsappConnector {
    pub(crate) account: Arc<Account>,
}

fn jid_of(group: &GroupJid) -> Result<Jid, ConnectorError> {
    group.as_str().parse().map_err(|_| ConnectorError::Other(format!("{} is not a group id", group.as_str())))
}

fn user_jids(people: &[PhoneNumber]) -> Vec<Jid> {
    people.iter().map(|p| Jid::pn(p.digits())).collect()
}

/// An outcome for each person asked about, in order; anyone the answer leaves out is `failed`, never missing.
pub(crate) fn results_for(
    change: ParticipantChange,
    people: &[PhoneNumber],
    answers: &[whatsapp_rust::features::ParticipantChangeResponse],
) -> Vec<ParticipantResult> {
    let read: Vec<ParticipantResult> = answers.iter().filter_map(|a| mapping::participant_result(change, a)).collect();
    people
        .iter()
        .map(|phone| {
            read.iter().find(|r| &r.phone == phone).cloned().unwrap_or_else(|| ParticipantResult {
                phone: phone.clone(),
                outcome: ParticipantOutcome::Failed,
                code: None,
                add_request: None,
            })
        })
        .collect()
}

#[async_trait]
impl Connector for WhatsappConnector {
    fn kind(&self) -> ConnectorKind {
        crate::KIND
    }

    async fn state(&self) -> InstanceState {
        self.account.state()
    }

    async fn own_number(&self) -> Option<PhoneNumber> {
        self.account.own_number()
    }

    async fn create_group(&self, request: &CreateGroupRequest) -> Result<CreatedGroup, ConnectorError> {
        let client = self.account.connected_client()?;
        let spec = CreateGroupWithOutcomes::new(request)?;
        let answer = client.execute(spec).await.map_err(iq_error)?;
        let created = created_group(&answer, &request.participants)?;
        // The create stanza has no place for these two; the group exists whatever happens to them.
        let settings = GroupSettingsPatch {
            announce_only: request.settings.announce_only.then_some(true),
            locked_info: request.settings.locked_info.then_some(true),
            ..GroupSettingsPatch::default()
        };
        if !settings.is_empty()
            && let Err(e) = self.set_settings(&created.metadata.jid, &settings).await
        {
            tracing::warn!(group = created.metadata.jid.as_str(), "the new group's settings were not applied: {e}");
        }
        Ok(created)
    }

    /// WhatsApp does not echo the creation key in metadata, so the group is recognised by what is visible: created
    /// by this number, with the requested subject, no earlier than the request (the newest such group wins).
    async fn find_created_group(
        &self,
        request: &CreateGroupRequest,
        since: Timestamp,
    ) -> Result<Option<GroupMetadata>, ConnectorError> {
        let client = self.account.connected_client()?;
        let own = self.account.own_number();
        let groups = client.groups().get_participating().await.map_err(connector_error)?;
        let not_before = since.as_secs() - i64::try_from(CREATION_CLOCK_SKEW.as_secs()).unwrap_or(0);
        let mut found: Option<GroupMetadata> = None;
        for group in groups.values() {
            let metadata = mapping::metadata(group)?;
            let matches = metadata.subject == request.subject.as_str()
                && metadata.creator.is_some()
                && metadata.creator == own
                && metadata.created_at.as_secs() >= not_before;
            if matches && found.as_ref().is_none_or(|f| f.created_at < metadata.created_at) {
                found = Some(metadata);
            }
        }
        Ok(found)
    }

    async fn group_metadata(&self, group: &GroupJid) -> Result<GroupMetadata, ConnectorError> {
        let client = self.account.connected_client()?;
        let metadata = client.groups().get_metadata(&jid_of(group)?).await.map_err(connector_error)?;
        mapping::metadata(&metadata)
    }

    async fn joined_groups(&self) -> Result<Vec<GroupMetadata>, ConnectorError> {
        let client = self.account.connected_client()?;
        let groups = client.groups().get_participating().await.map_err(connector_error)?;
        groups.values().map(mapping::metadata).collect()
    }

    async fn change_participants(
        &self,
        group: &GroupJid,
        change: ParticipantChange,
        people: &[PhoneNumber],
    ) -> Result<Vec<ParticipantResult>, ConnectorError> {
        let client = self.account.connected_client()?;
        let groups = client.groups();
        let jid = jid_of(group)?;
        let users = user_jids(people);
        let answers = match change {
            ParticipantChange::Add => groups.add_participants(jid, &users).await,
            ParticipantChange::Remove => groups.remove_participants(jid, &users).await,
            ParticipantChange::Promote => groups.promote_participants(jid, &users).await,
            ParticipantChange::Demote => groups.demote_participants(jid, &users).await,
            ParticipantChange::Approve => groups.approve_membership_requests(jid, &users).await,
        }
        .map_err(connector_error)?;
        Ok(results_for(change, people, &answers))
    }

    async fn invite_link(&self, group: &GroupJid, reset: bool) -> Result<String, ConnectorError> {
        let client = self.account.connected_client()?;
        let link = client.groups().get_invite_link(jid_of(group)?, reset).await.map_err(connector_error)?;
        Ok(if link.starts_with("https://") { link } else { format!("https://chat.whatsapp.com/{link}") })
    }

    async fn set_subject(&self, group: &GroupJid, subject: &GroupSubject) -> Result<(), ConnectorError> {
        let client = self.account.connected_client()?;
        let subject = WaSubject::new(subject.as_str())
            .map_err(|e| ConnectorError::Rejected { code: 400, text: e.to_string() })?;
        client.groups().set_subject(jid_of(group)?, subject).await.map_err(connector_error)
    }

    async fn set_description(&self, group: &GroupJid, description: &GroupDescription) -> Result<(), ConnectorError> {
        let client = self.account.connected_client()?;
        let description = WaDescription::new(description.as_str())
            .map_err(|e| ConnectorError::Rejected { code: 400, text: e.to_string() })?;
        client
            .groups()
            .set_description(jid_of(group)?, Some(description), PreviousDescription::Resolve)
            .await
            .map_err(connector_error)
    }

    async fn set_settings(&self, group: &GroupJid, patch: &GroupSettingsPatch) -> Result<(), ConnectorError> {
        let client = self.account.connected_client()?;
        let groups = client.groups();
        let jid = jid_of(group)?;
        if let Some(announce) = patch.announce_only {
            groups.set_announce(jid.clone(), announce).await.map_err(connector_error)?;
        }
        if let Some(locked) = patch.locked_info {
            groups.set_locked(jid.clone(), locked).await.map_err(connector_error)?;
        }
        if let Some(approval) = patch.join_approval {
            let mode = if approval { MembershipApprovalMode::On } else { MembershipApprovalMode::Off };
            groups.set_membership_approval(jid.clone(), mode).await.map_err(connector_error)?;
        }
        if let Some(timer) = patch.disappearing_messages {
            groups.set_ephemeral(jid, timer.seconds()).await.map_err(connector_error)?;
        }
        Ok(())
    }

    async fn set_picture(&self, group: &GroupJid, picture: &GroupPicture) -> Result<(), ConnectorError> {
        if picture.format() != PictureFormat::Jpeg {
            return Err(ConnectorError::Rejected {
                code: 415,
                text: "WhatsApp takes group pictures as JPEG; convert the PNG first".into(),
            });
        }
        let client = self.account.connected_client()?;
        client
            .groups()
            .set_profile_picture(jid_of(group)?, picture.bytes().to_vec())
            .await
            .map(|_| ())
            .map_err(connector_error)
    }

    async fn leave(&self, group: &GroupJid) -> Result<(), ConnectorError> {
        let client = self.account.connected_client()?;
        client.groups().leave(jid_of(group)?).await.map_err(connector_error)
    }

    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<(), ConnectorError> {
        let client = self.account.connected_client()?;
        client.send_text(Jid::pn(to.digits()), text).await.map(|_| ()).map_err(|e| ConnectorError::Other(e.to_string()))
    }

    async fn send_group_invite(
        &self,
        to: &PhoneNumber,
        group: &GroupJid,
        subject: &str,
        code: &str,
        expires_at: Timestamp,
    ) -> Result<(), ConnectorError> {
        let client = self.account.connected_client()?;
        let message = group_invite_message(group, subject, code, expires_at);
        client
            .send_message(Jid::pn(to.digits()), message)
            .await
            .map(|_| ())
            .map_err(|e| ConnectorError::Other(e.to_string()))
    }

    async fn pairing_qr(&self) -> Option<PairingCode> {
        self.account.qr()
    }

    async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<PairingCode, ConnectorError> {
        self.account.request_pairing_code(phone).await
    }

    async fn logout(&self) -> Result<(), ConnectorError> {
        self.account.logout().await
    }
}

/// The private invite WhatsApp shows as "Join group" (a v4 invite carrying the add-request code).
pub(crate) fn group_invite_message(group: &GroupJid, subject: &str, code: &str, expires_at: Timestamp) -> wa::Message {
    wa::Message {
        group_invite_message: Some(wa::message::GroupInviteMessage {
            group_jid: Some(group.as_str().to_owned()),
            invite_code: Some(code.to_owned()),
            invite_expiration: Some(expires_at.as_secs()),
            group_name: Some(subject.to_owned()),
            caption: Some(format!("You are invited to join \"{subject}\"")),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}
