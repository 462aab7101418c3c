//! One account on the sandbox network, behind Convene's `Connector` port.

use std::sync::Arc;

use async_trait::async_trait;
use convene_core::connector::{CreateGroupRequest, CreatedGroup};
use convene_core::{
    Connector, ConnectorError, ConnectorKind, GroupDescription, GroupJid, GroupMetadata, GroupPicture,
    GroupSettingsPatch, GroupSubject, InstanceState, ParticipantChange, ParticipantResult, PhoneNumber, Timestamp,
};

use crate::store::{GroupsNeeded, Needs};
use crate::world::{check_description, check_subject};
use crate::{InboxKind, SandboxError, SandboxNetwork};

#[derive(Clone, Debug)]
pub struct SandboxConnector {
    network: Arc<SandboxNetwork>,
    account: PhoneNumber,
}

impl SandboxConnector {
    pub(crate) fn new(network: Arc<SandboxNetwork>, account: PhoneNumber) -> Self {
        Self { network, account }
    }

    pub fn account(&self) -> &PhoneNumber {
        &self.account
    }
}

/// Only a failure to commit a change to the sandbox's database reaches a connector call as this error.
impl From<SandboxError> for ConnectorError {
    fn from(e: SandboxError) -> Self {
        ConnectorError::Other(e.to_string())
    }
}

#[async_trait]
impl Connector for SandboxConnector {
    fn kind(&self) -> ConnectorKind {
        crate::KIND
    }

    async fn state(&self) -> InstanceState {
        self.network.delay().await;
        self.network.state(&self.account).await
    }

    async fn own_number(&self) -> Option<PhoneNumber> {
        self.network.delay().await;
        Some(self.account.clone())
    }

    async fn create_group(&self, request: &CreateGroupRequest) -> Result<CreatedGroup, ConnectorError> {
        self.network.reach().await?;
        let needs = Needs::account(&self.account).and_people(request.participants.iter().cloned());
        self.network.mutate(needs, |w, env| w.create_group(&self.account, request, env)).await
    }

    /// The sandbox keeps every creation key, so it finds the group by key alone.
    async fn find_created_group(
        &self,
        request: &CreateGroupRequest,
        _since: Timestamp,
    ) -> Result<Option<GroupMetadata>, ConnectorError> {
        self.network.reach().await?;
        let needs = Needs {
            groups: GroupsNeeded::CreationKey(self.account.clone(), request.key.0.clone()),
            ..Needs::default()
        };
        Ok(self.network.read(needs, |w, _| w.find_created_group(&self.account, &request.key.0)).await?)
    }

    async fn group_metadata(&self, group: &GroupJid) -> Result<GroupMetadata, ConnectorError> {
        self.network.reach().await?;
        self.network.read(Needs::group(group), |w, _| w.group_metadata(&self.account, group)).await?
    }

    async fn joined_groups(&self) -> Result<Vec<GroupMetadata>, ConnectorError> {
        self.network.reach().await?;
        let needs = Needs { groups: GroupsNeeded::MemberOf(self.account.clone()), ..Needs::default() };
        Ok(self.network.read(needs, |w, _| w.joined_groups(&self.account)).await?)
    }

    async fn change_participants(
        &self,
        group: &GroupJid,
        change: ParticipantChange,
        people: &[PhoneNumber],
    ) -> Result<Vec<ParticipantResult>, ConnectorError> {
        self.network.reach().await?;
        let needs = Needs::group(group).and_people(people.iter().cloned());
        self.network.mutate(needs, |w, env| w.change_participants(&self.account, group, change, people, env)).await
    }

    async fn invite_link(&self, group: &GroupJid, reset: bool) -> Result<String, ConnectorError> {
        self.network.reach().await?;
        self.network.mutate(Needs::group(group), |w, env| w.invite_link(&self.account, group, reset, env)).await
    }

    async fn set_subject(&self, group: &GroupJid, subject: &GroupSubject) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        self.network
            .mutate(Needs::group(group), |w, _| {
                w.edit(&self.account, group, false, |g| {
                    check_subject(subject.as_str())?;
                    g.subject = subject.as_str().to_owned();
                    Ok(())
                })
            })
            .await
    }

    async fn set_description(&self, group: &GroupJid, description: &GroupDescription) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        let d = description.as_str();
        self.network
            .mutate(Needs::group(group), |w, _| {
                w.edit(&self.account, group, false, |g| {
                    check_description(d)?;
                    g.description = (!d.is_empty()).then(|| d.to_owned());
                    Ok(())
                })
            })
            .await
    }

    async fn set_settings(&self, group: &GroupJid, patch: &GroupSettingsPatch) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        self.network
            .mutate(Needs::group(group), |w, _| {
                w.edit(&self.account, group, true, |g| {
                    patch.apply(&mut g.settings);
                    Ok(())
                })
            })
            .await
    }

    async fn set_picture(&self, group: &GroupJid, _picture: &GroupPicture) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        self.network
            .mutate(Needs::group(group), |w, _| {
                w.edit(&self.account, group, false, |g| {
                    g.has_picture = true;
                    Ok(())
                })
            })
            .await
    }

    async fn leave(&self, group: &GroupJid) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        self.network.mutate(Needs::group(group), |w, env| w.leave(&self.account, group, env)).await
    }

    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        let kind = InboxKind::Text { text: text.to_owned() };
        self.network.mutate(Needs::people([to.clone()]), |w, env| w.send(&self.account, to, kind.clone(), env)).await
    }

    async fn send_group_invite(
        &self,
        to: &PhoneNumber,
        group: &GroupJid,
        subject: &str,
        code: &str,
        expires_at: Timestamp,
    ) -> Result<(), ConnectorError> {
        self.network.reach().await?;
        let kind = InboxKind::GroupInvite {
            group: group.clone(),
            subject: subject.to_owned(),
            code: code.to_owned(),
            expires_at,
        };
        self.network.mutate(Needs::people([to.clone()]), |w, env| w.send(&self.account, to, kind.clone(), env)).await
    }
}
