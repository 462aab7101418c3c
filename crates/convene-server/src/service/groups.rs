//! The groups Convene knows and their participants: reading a group from its network, changing it, adding and
//! removing people (with the private-invite fallback), and the records kept of each.

use std::sync::Arc;

use convene_core::events::{Change, EventType};
use convene_core::store::{GroupListQuery, GroupPage, GroupRecord};
use convene_core::{
    Clock, Connector, ConnectorError, GroupDescription, GroupId, GroupJid, GroupMetadata, GroupPicture, GroupSubject,
    InstanceId, ParticipantChange, ParticipantOutcome, PhoneNumber, Store,
};

use super::{
    EventGroup, GroupChange, GroupView, Instances, Outbox, ParticipantReport, not_found, parse_participants,
    refresh_record,
};
use crate::error::{ApiError, FieldError, Result};

/// The groups and their participants.
#[derive(Clone)]
pub struct Groups {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    instances: Instances,
    outbox: Outbox,
}

impl Groups {
    pub(super) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, instances: Instances, outbox: Outbox) -> Self {
        Self { store, clock, instances, outbox }
    }

    /// The invite fallback: each participant refused for privacy gets a private invite — a group-invite message
    /// carrying the network's add-request code, or, when the network gave none, the invite link by text — and is
    /// then reported as `invite_sent`. A failed send leaves `privacy_blocked`.
    pub(super) async fn invite_refused(
        &self,
        connector: &dyn Connector,
        record: &GroupRecord,
        reports: &mut [ParticipantReport],
    ) {
        let mut link: Option<String> = None;
        for report in reports.iter_mut().filter(|r| r.outcome == ParticipantOutcome::PrivacyBlocked) {
            let Some(phone) = &report.phone else { continue };
            let sent = match &report.add_request {
                Some(request) => {
                    connector
                        .send_group_invite(phone, &record.jid, &record.subject, &request.code, request.expires_at)
                        .await
                }
                None => {
                    if link.is_none() {
                        link = connector.invite_link(&record.jid, false).await.ok();
                    }
                    match &link {
                        Some(link) => {
                            let text =
                                format!("You are invited to join the WhatsApp group \"{}\": {link}", record.subject);
                            connector.send_text(phone, &text).await
                        }
                        None => Err(ConnectorError::NotAdmin),
                    }
                }
            };
            match sent {
                Ok(()) => {
                    report.outcome = ParticipantOutcome::InviteSent;
                    report.message = ParticipantOutcome::InviteSent.message().to_owned();
                }
                Err(e) => tracing::warn!(group = %record.jid, phone = %phone, error = %e, "private invite not sent"),
            }
        }
    }

    /// Finds a group by our uuid or by its JID (`…@g.us` or Z-API's `…-group`). A JID that several of our
    /// instances are in needs `instance_id` to say which.
    pub async fn resolve_group(&self, reference: &str, instance_id: Option<InstanceId>) -> Result<GroupRecord> {
        let reference = reference.trim();
        if let Ok(id) = uuid::Uuid::parse_str(reference) {
            let record = self
                .store
                .get_group(GroupId(id))
                .await
                .map_err(|e| not_found(e, || format!("no group {reference}")))?;
            return match instance_id {
                Some(i) if i != record.instance_id => {
                    Err(ApiError::NotFound(format!("no group {reference} on instance {i}")))
                }
                _ => Ok(record),
            };
        }
        let Some(jid) = GroupJid::parse(reference) else {
            return Err(ApiError::NotFound(format!("`{reference}` is neither a group uuid nor a group id (…@g.us)")));
        };
        let mut found = self.store.find_groups_by_jid(&jid, instance_id).await?;
        match found.len() {
            0 => match instance_id {
                Some(instance_id) => self.import_group(instance_id, jid).await,
                None => Err(ApiError::NotFound(format!(
                    "no group {jid} among the groups Convene knows; for a group the instance joined elsewhere, \
                     add `instance_id`"
                ))),
            },
            1 => Ok(found.remove(0)),
            n => Err(ApiError::Conflict(format!(
                "{n} instances are in group {jid}; add `instance_id` to say which one acts"
            ))),
        }
    }

    /// Records a group the instance is in but Convene did not create (added by someone else, joined by link), so
    /// it can be managed like any other.
    async fn import_group(&self, instance_id: InstanceId, jid: GroupJid) -> Result<GroupRecord> {
        self.instances.record(instance_id).await?;
        let metadata = match self.instances.connector(instance_id).await?.group_metadata(&jid).await {
            Ok(m) => m,
            Err(ConnectorError::GroupNotFound) => {
                return Err(ApiError::NotFound(format!("instance {instance_id} is not in group {jid}")));
            }
            Err(e) => return Err(e.into()),
        };
        self.record_group(instance_id, &metadata).await
    }

    /// Stores a group this instance is in that Convene did not create; when a record for it is already there
    /// (written by a concurrent request), that one is returned instead of a second.
    async fn record_group(&self, instance_id: InstanceId, metadata: &GroupMetadata) -> Result<GroupRecord> {
        let record = self.new_group_record(instance_id, metadata, None);
        match self.store.commit(&[Change::InsertGroup(&record)], &[]).await {
            Ok(()) => Ok(record),
            Err(convene_core::DbError::Conflict) => self.recorded_group(instance_id, &record.jid).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The record of a group this instance is in, as the network describes it now, created by `creation_job_id`.
    pub(super) fn new_group_record(
        &self,
        instance_id: InstanceId,
        metadata: &GroupMetadata,
        creation_job_id: Option<uuid::Uuid>,
    ) -> GroupRecord {
        let now = self.clock.now();
        GroupRecord {
            id: GroupId::new(),
            instance_id,
            jid: metadata.jid.clone(),
            subject: metadata.subject.clone(),
            description: metadata.description.clone(),
            settings: metadata.settings,
            created_at: now,
            updated_at: now,
            left_at: None,
            creation_job_id,
        }
    }

    /// The stored record of a group of this instance that an insert found already there.
    pub(super) async fn recorded_group(&self, instance_id: InstanceId, jid: &GroupJid) -> Result<GroupRecord> {
        let mut found = self.store.find_groups_by_jid(jid, Some(instance_id)).await?;
        found.pop().ok_or_else(|| ApiError::internal(anyhow::anyhow!("group record vanished")))
    }

    /// A group with its live members; the stored copy is refreshed from the network.
    pub async fn group(&self, mut record: GroupRecord) -> Result<GroupView> {
        if record.left_at.is_some() {
            return Ok(GroupView { record, members: None });
        }
        let connector = self.instances.connector(record.instance_id).await?;
        match connector.group_metadata(&record.jid).await {
            Ok(metadata) => {
                if refresh_record(&mut record, &metadata) {
                    record.updated_at = self.clock.now();
                    self.store.update_group(&record).await?;
                }
                Ok(GroupView { record, members: Some(metadata.members) })
            }
            // Removed by someone else: we still know the group, but not its members.
            Err(ConnectorError::GroupNotFound) => Ok(GroupView { record, members: None }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_groups(&self, query: &GroupListQuery) -> Result<GroupPage> {
        if let Some(cursor) = &query.cursor
            && !convene_store::parse_group_cursor(cursor)
        {
            return Err(ApiError::field("cursor", "is not a cursor this server gave out"));
        }
        Ok(self.store.list_groups(query).await?)
    }

    pub async fn update_group(&self, mut record: GroupRecord, change: GroupChange) -> Result<GroupView> {
        let mut errors = Vec::new();
        let subject = change
            .subject
            .as_deref()
            .map(GroupSubject::parse)
            .transpose()
            .map_err(|m| errors.push(FieldError::new("subject", m)))
            .ok()
            .flatten();
        let description = change
            .description
            .as_deref()
            .map(GroupDescription::parse)
            .transpose()
            .map_err(|m| errors.push(FieldError::new("description", m)))
            .ok()
            .flatten();
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        self.ensure_member(&record)?;
        if subject.is_none() && description.is_none() && change.settings.is_empty() {
            // Nothing to change (as a JSON merge patch `{}`): the group as it is.
            return self.group(record).await;
        }
        let connector = self.instances.connector(record.instance_id).await?;
        // Each part that the network accepted is recorded and published, even when a later part fails.
        let mut changed = Vec::new();
        let mut applied = async || -> Result<()> {
            if let Some(subject) = &subject {
                connector.set_subject(&record.jid, subject).await?;
                record.subject = subject.as_str().to_owned();
                changed.push("subject");
            }
            if let Some(description) = &description {
                connector.set_description(&record.jid, description).await?;
                record.description = Some(description.as_str().to_owned()).filter(|d| !d.is_empty());
                changed.push("description");
            }
            if !change.settings.is_empty() {
                connector.set_settings(&record.jid, &change.settings).await?;
                change.settings.apply(&mut record.settings);
                changed.push("settings");
            }
            Ok(())
        };
        let outcome = applied().await;
        if !changed.is_empty() {
            record.updated_at = self.clock.now();
            let event = self.outbox.group_updated_event(EventGroup::of(&record), Some(&record), &changed, None)?;
            self.outbox.commit(&[Change::UpdateGroup(&record)], &[event]).await?;
        }
        outcome?;
        self.group(record).await
    }

    pub async fn set_picture(&self, record: &GroupRecord, picture: &GroupPicture) -> Result<()> {
        self.ensure_member(record)?;
        self.instances.connector(record.instance_id).await?.set_picture(&record.jid, picture).await?;
        self.outbox
            .publish(&[self.outbox.group_updated_event(EventGroup::of(record), Some(record), &["picture"], None)?])
            .await
    }

    pub async fn leave_group(&self, mut record: GroupRecord) -> Result<GroupRecord> {
        self.ensure_member(&record)?;
        match self.instances.connector(record.instance_id).await?.leave(&record.jid).await {
            // Already gone on the network: record it.
            Ok(()) | Err(ConnectorError::GroupNotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let now = self.clock.now();
        record.left_at = Some(now);
        record.updated_at = now;
        let own = self.store.get_instance(record.instance_id).await?.phone;
        let left = self.outbox.participants_event(
            EventType::ParticipantsLeft,
            EventGroup::of(&record),
            own.clone().into_iter().collect(),
            own,
        )?;
        self.outbox.commit(&[Change::UpdateGroup(&record)], &left.into_iter().collect::<Vec<_>>()).await?;
        Ok(record)
    }

    /// Adds, removes, promotes or demotes people. `auto_invite` (adds only) sends private invites to those privacy
    /// settings keep out; `None` takes the instance's default (off).
    pub async fn change_participants(
        &self,
        record: &GroupRecord,
        change: ParticipantChange,
        inputs: &[String],
        auto_invite: Option<bool>,
    ) -> Result<Vec<ParticipantReport>> {
        self.ensure_member(record)?;
        let instance = self.store.get_instance(record.instance_id).await?;
        if inputs.is_empty() {
            return Err(ApiError::field("participants", "name at least one participant"));
        }
        let parsed =
            parse_participants("participants", inputs, instance.phone.as_ref()).map_err(ApiError::Validation)?;
        let phones = parsed.phones();
        if phones.is_empty() {
            return Ok(parsed.reports(Vec::new()));
        }
        let connector = self.instances.connector(record.instance_id).await?;
        let results = connector.change_participants(&record.jid, change, &phones).await?;
        let mut reports = parsed.reports(results);
        if change == ParticipantChange::Add && auto_invite.unwrap_or(false) {
            self.invite_refused(connector.as_ref(), record, &mut reports).await;
        }
        crate::telemetry::count_outcomes(change.as_str(), &reports);
        let done = match change {
            ParticipantChange::Add => EventType::ParticipantsAdded,
            ParticipantChange::Remove => EventType::ParticipantsRemoved,
            ParticipantChange::Promote => EventType::ParticipantsPromoted,
            ParticipantChange::Demote => EventType::ParticipantsDemoted,
            // They asked to join; the approval lets them in.
            ParticipantChange::Approve => EventType::ParticipantsJoined,
        };
        let with = |outcome: fn(ParticipantOutcome) -> bool| -> Vec<PhoneNumber> {
            reports.iter().filter(|r| outcome(r.outcome)).filter_map(|r| r.phone.clone()).collect()
        };
        let group = EventGroup::of(record);
        let events: Vec<_> = [
            self.outbox.participants_event(done, group.clone(), with(ParticipantOutcome::is_success), None)?,
            self.outbox.participants_event(
                EventType::ParticipantsInviteSent,
                group,
                with(|o| o == ParticipantOutcome::InviteSent),
                None,
            )?,
        ]
        .into_iter()
        .flatten()
        .collect();
        self.outbox.publish(&events).await?;
        Ok(reports)
    }

    pub async fn invite_link(&self, record: &GroupRecord, reset: bool) -> Result<String> {
        self.ensure_member(record)?;
        Ok(self.instances.connector(record.instance_id).await?.invite_link(&record.jid, reset).await?)
    }

    fn ensure_member(&self, record: &GroupRecord) -> Result<()> {
        match record.left_at {
            Some(at) => Err(ApiError::Conflict(format!("this instance left group {} at {at}", record.jid))),
            None => Ok(()),
        }
    }
}
