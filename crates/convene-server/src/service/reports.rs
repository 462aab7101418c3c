//! What the networks report on their own — an instance's connection, pairing, changes to groups made elsewhere —
//! and the pairing calls an instance of a real number needs.

use std::sync::Arc;

use convene_core::events::{Change, EventType};
use convene_core::{
    ConnectorReport, ConnectorReports, GroupJid, InstanceId, InstanceState, PairingCode, PhoneNumber,
    ReportedGroupChange,
};
use tokio::sync::mpsc;

use super::Service;
use super::creation::{BAN_REASON, DEFAULT_BAN_PAUSE};
use super::outbox::EventGroup;
use crate::error::{ApiError, Result};

/// Connectors report from their own tasks; the service applies the events one at a time, in order.
struct Sink(mpsc::UnboundedSender<(InstanceId, ConnectorReport)>);

impl ConnectorReports for Sink {
    fn report(&self, instance: InstanceId, event: ConnectorReport) {
        // Only fails once the service is gone (shutting down): nothing is left to apply it to.
        let _ = self.0.send((instance, event));
    }
}

pub(crate) fn channel() -> (Arc<dyn ConnectorReports>, mpsc::UnboundedReceiver<(InstanceId, ConnectorReport)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Sink(tx)), rx)
}

impl Service {
    /// Applies one report and publishes it. A failure is logged: the report came from the network, there is no
    /// caller to tell.
    pub async fn apply_connector_report(&self, instance: InstanceId, event: ConnectorReport) {
        let applied = match event {
            ConnectorReport::StateChanged(InstanceState::TemporarilyBanned { until }) => {
                let until = until.unwrap_or_else(|| self.clock.now().plus(DEFAULT_BAN_PAUSE));
                self.pause(instance, until, BAN_REASON, true).await
            }
            ConnectorReport::StateChanged(state) => self.publish_state(instance, state).await,
            ConnectorReport::QrReady(qr) => self.publish_qr(instance, qr).await,
            ConnectorReport::Paired { phone } => self.record_paired(instance, &phone).await,
            ConnectorReport::Group { group, change, by } => self.apply_group_change(instance, &group, change, by).await,
        };
        if let Err(e) = applied {
            tracing::warn!(instance = %instance, error = ?e, "a network report was not applied");
        }
    }

    /// The instance is now this number. Two instances cannot be one number: the second pairing is logged, not kept.
    async fn record_paired(&self, instance: InstanceId, phone: &PhoneNumber) -> Result<()> {
        let elsewhere = self
            .store
            .list_instances()
            .await?
            .into_iter()
            .find(|i| i.id != instance && i.phone.as_ref() == Some(phone));
        if let Some(other) = elsewhere {
            tracing::error!(instance = %instance, other = %other.id, phone = %phone, "paired with a number another instance already has");
            return Ok(());
        }
        tracing::info!(instance = %instance, phone = %phone, "paired");
        let state = match self.instances.local_connector(instance) {
            Ok(connector) => connector.state().await,
            Err(_) => InstanceState::Connected,
        };
        let paired =
            self.outbox.instance_event(EventType::InstancePaired, instance, state, Some(phone.clone()), None)?;
        self.outbox.commit(&[Change::SetInstancePhone { id: instance, phone }], &[paired]).await
    }

    /// `instance.connected`, `.disconnected`, `.unreachable` (once per outage: connectors report an outage when it
    /// begins), `.logged_out`; starting, connecting and pairing are not events of their own (`instance.qr_ready`
    /// says a session waits for a scan).
    async fn publish_state(&self, instance: InstanceId, state: InstanceState) -> Result<()> {
        tracing::info!(instance = %instance, ?state, "instance state changed");
        let event_type = match state {
            InstanceState::Connected => EventType::InstanceConnected,
            InstanceState::Disconnected => EventType::InstanceDisconnected,
            InstanceState::Unreachable { .. } => EventType::InstanceUnreachable,
            InstanceState::LoggedOut => EventType::InstanceLoggedOut,
            InstanceState::TemporarilyBanned { .. } => EventType::InstanceTemporarilyBanned,
            InstanceState::Starting | InstanceState::Connecting | InstanceState::Pairing => return Ok(()),
        };
        let phone = self.store.get_instance(instance).await.ok().and_then(|i| i.phone);
        self.outbox.publish(&[self.outbox.instance_event(event_type, instance, state, phone, None)?]).await
    }

    async fn publish_qr(&self, instance: InstanceId, qr: PairingCode) -> Result<()> {
        let event =
            self.outbox.instance_event(EventType::InstanceQrReady, instance, InstanceState::Pairing, None, Some(qr))?;
        self.outbox.publish(&[event]).await
    }

    /// Keeps our record of a group in step with changes made from a phone or another device.
    async fn apply_group_change(
        &self,
        instance: InstanceId,
        group: &GroupJid,
        change: ReportedGroupChange,
        by: Option<PhoneNumber>,
    ) -> Result<()> {
        tracing::info!(instance = %instance, group = %group, ?change, by = ?by, "group changed on the network");
        let mut record = self.store.find_groups_by_jid(group, Some(instance)).await?.into_iter().next();
        let about = match &record {
            Some(r) => EventGroup::of(r),
            None => EventGroup { id: None, jid: group.clone(), instance_id: instance, subject: None },
        };
        let participants = |event_type, people: Vec<PhoneNumber>| {
            self.outbox.participants_event(event_type, about.clone(), people, by.clone())
        };
        let event = match change {
            ReportedGroupChange::ParticipantsAdded(people) => participants(EventType::ParticipantsAdded, people)?,
            ReportedGroupChange::ParticipantsRemoved(people) => participants(EventType::ParticipantsRemoved, people)?,
            ReportedGroupChange::ParticipantsPromoted(people) => participants(EventType::ParticipantsPromoted, people)?,
            ReportedGroupChange::ParticipantsDemoted(people) => participants(EventType::ParticipantsDemoted, people)?,
            ReportedGroupChange::ParticipantsJoined(people) => participants(EventType::ParticipantsJoined, people)?,
            ReportedGroupChange::ParticipantsLeft(people) => participants(EventType::ParticipantsLeft, people)?,
            ReportedGroupChange::Subject(subject) => {
                if let Some(r) = &mut record {
                    r.subject = subject;
                }
                Some(self.updated(record.as_ref(), about, "subject", by)?)
            }
            ReportedGroupChange::Description(description) => {
                if let Some(r) = &mut record {
                    r.description = description;
                }
                Some(self.updated(record.as_ref(), about, "description", by)?)
            }
            ReportedGroupChange::Settings => {
                // The notification names the setting but not every value: read them back.
                if let (Some(r), Ok(connector)) = (&mut record, self.instances.local_connector(instance)) {
                    match connector.group_metadata(group).await {
                        Ok(metadata) => r.settings = metadata.settings,
                        Err(e) => tracing::warn!(group = %group, error = %e, "settings not read back"),
                    }
                }
                Some(self.updated(record.as_ref(), about, "settings", by)?)
            }
        };
        let events: Vec<_> = event.into_iter().collect();
        match &mut record {
            Some(r) if events.iter().any(|e| e.event_type == EventType::GroupUpdated) => {
                r.updated_at = self.clock.now();
                self.outbox.commit(&[Change::UpdateGroup(r)], &events).await
            }
            _ => self.outbox.publish(&events).await,
        }
    }

    /// `group.updated` for one part changed on the network, with the subject as it is now.
    fn updated(
        &self,
        record: Option<&convene_core::store::GroupRecord>,
        mut about: EventGroup,
        part: &str,
        by: Option<PhoneNumber>,
    ) -> Result<convene_core::events::NewEvent> {
        if let Some(r) = record {
            about.subject = Some(r.subject.clone());
        }
        self.outbox.group_updated_event(about, record, &[part], by)
    }

    /// The QR code to scan now; 409 `not_pairing` when there is none, saying why: paired already, not waiting for
    /// a scan, or WhatsApp cannot be reached (what failed and when the next attempt is).
    pub async fn pairing_qr(&self, id: InstanceId) -> Result<PairingCode> {
        self.instances.record(id).await?;
        let connector = self.instances.connector(id).await?;
        if let Some(qr) = connector.pairing_qr().await {
            return Ok(qr);
        }
        let state = connector.state().await;
        Err(ApiError::NotPairing(match (&state, state.not_connected_reason()) {
            (InstanceState::Unreachable { .. }, Some(why)) => format!("no QR code: {why}"),
            _ => format!("no QR code right now: the instance is {}", state_words(&state)),
        }))
    }

    /// A code to type on the phone instead of scanning.
    pub async fn request_pairing_code(&self, id: InstanceId, phone: &str) -> Result<PairingCode> {
        self.instances.record(id).await?;
        let phone = PhoneNumber::parse(phone).map_err(|e| ApiError::field("phone_number", e.to_string()))?;
        Ok(self.instances.connector(id).await?.request_pairing_code(&phone).await?)
    }

    /// Unlinks the number and deletes its keys; the instance starts a new pairing.
    pub async fn logout(&self, id: InstanceId) -> Result<()> {
        self.instances.record(id).await?;
        Ok(self.instances.connector(id).await?.logout().await?)
    }
}

fn state_words(state: &InstanceState) -> String {
    match state {
        InstanceState::Starting => "starting".into(),
        InstanceState::Connecting => "connecting to WhatsApp (a QR code comes once WhatsApp answers)".into(),
        InstanceState::Pairing => "pairing and waiting for WhatsApp to send a QR code".into(),
        InstanceState::Connected => "connected (already paired)".into(),
        InstanceState::Disconnected => "disconnected".into(),
        InstanceState::Unreachable { .. } => "unreachable".into(),
        InstanceState::LoggedOut => "logged out".into(),
        InstanceState::TemporarilyBanned { until: Some(until) } => format!("temporarily banned until {until}"),
        InstanceState::TemporarilyBanned { until: None } => "temporarily banned".into(),
    }
}
