//! Group creation that keeps every participant's outcome.
//!
//! The library's `create_group` parses the server's `<group>` answer into metadata and drops what the server says
//! about people it could not add: a `<participant jid error="403"><add_request code expiration/></participant>` is
//! read as a member. This spec sends the same `<create>` stanza (plus WhatsApp Web's `key` attribute) through the
//! library's public IQ interface and reads the answer itself: members are the participants without an `error`, and
//! everyone requested gets an outcome.

use std::collections::HashMap;

use convene_core::connector::{CreateGroupRequest, CreatedGroup};
use convene_core::{ConnectorError, ParticipantChange, ParticipantOutcome, ParticipantResult, PhoneNumber};
use whatsapp_rust::features::{
    GroupCreateOptions, GroupDescription as WaDescription, GroupMetadata as WaGroupMetadata, GroupParticipantOptions,
    MembershipApprovalMode,
};
use whatsapp_rust::wacore::iq::groups::{GroupCreateIq, ParticipantChangeResponse};
use whatsapp_rust::wacore::iq::spec::IqSpec;
use whatsapp_rust::wacore::protocol::ProtocolNode;
use whatsapp_rust::wacore::request::InfoQuery;
use whatsapp_rust::wacore_binary::NodeRef;
use whatsapp_rust::wacore_binary::node::NodeContent;
use whatsapp_rust::{Jid, anyhow};

use crate::mapping;

/// `<create>` with per-participant outcomes; see the module documentation.
pub(crate) struct CreateGroupWithOutcomes {
    inner: GroupCreateIq,
    key: String,
}

/// What the server answered: the group and, separately, the participants it refused.
#[derive(Debug)]
pub(crate) struct CreateAnswer {
    pub metadata: WaGroupMetadata,
    pub refused: Vec<ParticipantChangeResponse>,
}

impl CreateGroupWithOutcomes {
    pub(crate) fn new(request: &CreateGroupRequest) -> Result<Self, ConnectorError> {
        let participants =
            request.participants.iter().map(|p| GroupParticipantOptions::from_phone(Jid::pn(p.digits()))).collect();
        let description = match &request.description {
            Some(d) => Some(
                WaDescription::new(d.as_str())
                    .map_err(|e| ConnectorError::Rejected { code: 400, text: e.to_string() })?,
            ),
            None => None,
        };
        let mut options = GroupCreateOptions::new(request.subject.as_str()).with_participants(participants);
        options.description = description;
        options.ephemeral_expiration = Some(request.settings.disappearing_messages.seconds());
        options.membership_approval_mode =
            Some(if request.settings.join_approval { MembershipApprovalMode::On } else { MembershipApprovalMode::Off });
        Ok(Self { inner: GroupCreateIq::new(options), key: request.key.0.clone() })
    }
}

impl IqSpec for CreateGroupWithOutcomes {
    type Response = CreateAnswer;

    fn build_iq(&self) -> InfoQuery<'static> {
        let mut iq = self.inner.build_iq();
        // WhatsApp Web tags each creation with a random `key`; the server uses it to tell a retried request from a
        // new one.
        if let Some(NodeContent::Nodes(nodes)) = &mut iq.content {
            for node in nodes.iter_mut().filter(|n| n.tag == "create") {
                node.attrs.insert("key", self.key.clone());
            }
        }
        iq
    }

    fn parse_response(&self, response: &NodeRef<'_>) -> anyhow::Result<CreateAnswer> {
        let mut info = self.inner.parse_response(response)?;
        let group = response
            .get_optional_child("group")
            .ok_or_else(|| anyhow::anyhow!("missing <group> in the create answer"))?;
        let mut refused = Vec::new();
        for node in group.get_children_by_tag("participant") {
            if node.get_attr("error").is_some() {
                refused.push(ParticipantChangeResponse::try_from_node_ref(node)?);
            }
        }
        info.participants.retain(|p| !refused.iter().any(|r| r.jid == p.jid));
        Ok(CreateAnswer { metadata: WaGroupMetadata::from(info), refused })
    }
}

/// The created group and an outcome for every requested number: refused ones as the server said, members as added,
/// and anyone the answer does not mention as `failed` (never silently missing).
pub(crate) fn created_group(answer: &CreateAnswer, requested: &[PhoneNumber]) -> Result<CreatedGroup, ConnectorError> {
    let metadata = mapping::metadata(&answer.metadata)?;
    let refused: HashMap<PhoneNumber, ParticipantResult> = answer
        .refused
        .iter()
        .filter_map(|r| mapping::participant_result(ParticipantChange::Add, r))
        .map(|r| (r.phone.clone(), r))
        .collect();
    let participants = requested
        .iter()
        .map(|phone| {
            if let Some(r) = refused.get(phone) {
                r.clone()
            } else if metadata.members.iter().any(|m| &m.phone == phone) {
                ParticipantResult::from_wa(ParticipantChange::Add, phone.clone(), 200, None)
            } else {
                ParticipantResult {
                    phone: phone.clone(),
                    outcome: ParticipantOutcome::Failed,
                    code: None,
                    add_request: None,
                }
            }
        })
        .collect();
    Ok(CreatedGroup { metadata, participants })
}
