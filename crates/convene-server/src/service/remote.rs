//! What a number's connection must do on the node that runs it, asked by another node (issue 14). Any node answers
//! any request: the node that took it keeps everything but the network call (validation, records, events,
//! idempotency), and hands that call to the number's node over HTTP, as a `ConnectorCall`. The node that runs the
//! number answers it from its own connection (`answer`), or says it no longer runs it.
//!
//! The nodes prove themselves to each other with a tag of the sealing key they share (`SecretBox::tag`): a caller
//! without the key gets 401. Creation is not handed over call by call: a synchronous creation on another node's
//! number is queued for that node and waited for (`Service::create_group`), so that pacing is decided in one place.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convene_core::connector::{CreateGroupRequest, CreatedGroup};
use convene_core::{
    ClusterNode, Connector, ConnectorError, ConnectorKind, GroupDescription, GroupJid, GroupMetadata, GroupPicture,
    GroupSettingsPatch, GroupSubject, InstanceId, InstanceState, PairingCode, ParticipantChange, ParticipantResult,
    PhoneNumber, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The path a node answers connector calls at, for `{id}`.
pub const CALL_PATH: &str = "/internal/v1/instances/{id}/connector";
/// The path a node forgets a deleted instance it runs at: it unlinks a real number and deletes its keys.
pub const FORGET_PATH: &str = "/internal/v1/instances/{id}/forget";
/// The path a node answers the states of the numbers it runs at, many in one call (listing instances).
pub const STATES_PATH: &str = "/internal/v1/states";
/// The scheme of the `Authorization` header between nodes.
pub const AUTH_SCHEME: &str = "Node";
/// What the sealing key tags into the nodes' shared secret.
pub const TAG_LABEL: &str = "convene: calls between nodes, v1";
/// The longest a call may take: a creation on a real number may wait for WhatsApp's answer this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// One call of the `Connector` trait, as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum ConnectorCall {
    State,
    OwnNumber,
    CreateGroup { request: CreateGroupRequest },
    FindCreatedGroup { request: CreateGroupRequest, since: Timestamp },
    GroupMetadata { group: GroupJid },
    JoinedGroups,
    ChangeParticipants { group: GroupJid, change: ParticipantChange, people: Vec<PhoneNumber> },
    InviteLink { group: GroupJid, reset: bool },
    SetSubject { group: GroupJid, subject: GroupSubject },
    SetDescription { group: GroupJid, description: GroupDescription },
    SetSettings { group: GroupJid, patch: GroupSettingsPatch },
    SetPicture { group: GroupJid, picture: GroupPicture },
    Leave { group: GroupJid },
    SendText { to: PhoneNumber, text: String },
    SendGroupInvite { to: PhoneNumber, group: GroupJid, subject: String, code: String, expires_at: Timestamp },
    PairingQr,
    RequestPairingCode { phone: PhoneNumber },
    Logout,
}

impl ConnectorCall {
    /// Whether the call changes something on the network: when its answer is lost, whether it happened is unknown.
    fn changes(&self) -> bool {
        !matches!(
            self,
            Self::State
                | Self::OwnNumber
                | Self::FindCreatedGroup { .. }
                | Self::GroupMetadata { .. }
                | Self::JoinedGroups
                | Self::PairingQr
        )
    }
}

/// The answer to a `ConnectorCall`: the call's value, or the connector's error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorAnswer {
    Value(serde_json::Value),
    Error(ConnectorError),
}

/// Runs `call` on `connector` (this node's own connection to the number).
pub async fn answer(connector: &dyn Connector, call: ConnectorCall) -> ConnectorAnswer {
    fn value<T: Serialize>(result: Result<T, ConnectorError>) -> ConnectorAnswer {
        match result.map(|v| serde_json::to_value(v)) {
            Ok(Ok(value)) => ConnectorAnswer::Value(value),
            Ok(Err(e)) => ConnectorAnswer::Error(ConnectorError::Other(format!("the answer did not encode: {e}"))),
            Err(e) => ConnectorAnswer::Error(e),
        }
    }
    match call {
        ConnectorCall::State => value(Ok(connector.state().await)),
        ConnectorCall::OwnNumber => value(Ok(connector.own_number().await)),
        ConnectorCall::CreateGroup { request } => value(connector.create_group(&request).await),
        ConnectorCall::FindCreatedGroup { request, since } => {
            value(connector.find_created_group(&request, since).await)
        }
        ConnectorCall::GroupMetadata { group } => value(connector.group_metadata(&group).await),
        ConnectorCall::JoinedGroups => value(connector.joined_groups().await),
        ConnectorCall::ChangeParticipants { group, change, people } => {
            value(connector.change_participants(&group, change, &people).await)
        }
        ConnectorCall::InviteLink { group, reset } => value(connector.invite_link(&group, reset).await),
        ConnectorCall::SetSubject { group, subject } => value(connector.set_subject(&group, &subject).await),
        ConnectorCall::SetDescription { group, description } => {
            value(connector.set_description(&group, &description).await)
        }
        ConnectorCall::SetSettings { group, patch } => value(connector.set_settings(&group, &patch).await),
        ConnectorCall::SetPicture { group, picture } => value(connector.set_picture(&group, &picture).await),
        ConnectorCall::Leave { group } => value(connector.leave(&group).await),
        ConnectorCall::SendText { to, text } => value(connector.send_text(&to, &text).await),
        ConnectorCall::SendGroupInvite { to, group, subject, code, expires_at } => {
            value(connector.send_group_invite(&to, &group, &subject, &code, expires_at).await)
        }
        ConnectorCall::PairingQr => value(Ok(connector.pairing_qr().await)),
        ConnectorCall::RequestPairingCode { phone } => value(connector.request_pairing_code(&phone).await),
        ConnectorCall::Logout => value(connector.logout().await),
    }
}

/// How this node calls the others: its HTTP client and the secret they share.
#[derive(Clone)]
pub struct NodeCalls {
    client: reqwest::Client,
    token: Arc<str>,
    /// The token's SHA-256, which a caller's is compared with (digests, so the comparison's time says nothing).
    token_hash: Arc<str>,
}

impl NodeCalls {
    pub fn new(token: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            // A node that died keeps its leases until they end: fail fast on it rather than hang every call.
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client without TLS settings builds");
        Self { client, token_hash: crate::auth::sha256_hex(token.as_bytes()).into(), token: token.into() }
    }

    /// Whether `authorization` (the header's value) is another node's.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|h| h.strip_prefix(AUTH_SCHEME)).map(str::trim) else {
            return false;
        };
        crate::auth::sha256_hex(token.as_bytes()) == *self.token_hash
    }

    /// A POST to `path` on `node` (`{id}` in it standing for `instance`), as a node of this database.
    fn post(&self, node: &ClusterNode, path: &str, instance: Option<InstanceId>) -> reqwest::RequestBuilder {
        let path = instance.map_or_else(|| path.to_owned(), |id| path.replace("{id}", &id.to_string()));
        self.client
            .post(format!("{}{path}", node.address.trim_end_matches('/')))
            .header(reqwest::header::AUTHORIZATION, format!("{AUTH_SCHEME} {}", self.token))
    }

    /// Asks `node` to forget `instance` (of `kind`), deleted: its session there unlinks and deletes its keys.
    pub async fn forget(&self, node: &ClusterNode, instance: InstanceId, kind: ConnectorKind) -> Result<(), String> {
        let response = self
            .post(node, FORGET_PATH, Some(instance))
            .json(&serde_json::json!({ "kind": kind.as_str() }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() { Ok(()) } else { Err(format!("status {}", response.status())) }
    }

    /// The states of `instances` on `node`, which runs them; those it does not run (any more) are left out.
    pub async fn states(
        &self,
        node: &ClusterNode,
        instances: &[InstanceId],
    ) -> Result<std::collections::HashMap<i64, InstanceState>, String> {
        let ids: Vec<i64> = instances.iter().map(|i| i.0).collect();
        let response = self.post(node, STATES_PATH, None).json(&ids).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let states: Vec<(i64, InstanceState)> = response.json().await.map_err(|e| e.to_string())?;
        Ok(states.into_iter().collect())
    }

    /// The connection to `instance` (of `kind`) on `node`.
    pub fn connector(&self, node: ClusterNode, instance: InstanceId, kind: ConnectorKind) -> RemoteConnector {
        RemoteConnector { calls: self.clone(), node, instance, kind }
    }
}

/// A number's connection on another node, reached over HTTP.
pub struct RemoteConnector {
    calls: NodeCalls,
    node: ClusterNode,
    instance: InstanceId,
    kind: ConnectorKind,
}

impl RemoteConnector {
    async fn call<T: DeserializeOwned>(&self, call: ConnectorCall) -> Result<T, ConnectorError> {
        let changes = call.changes();
        let sent = self.calls.post(&self.node, CALL_PATH, Some(self.instance)).json(&call).send().await;
        let unreachable = |e: &dyn std::fmt::Display| {
            ConnectorError::NotConnected(format!("the node that runs it ({}) did not answer: {e}", self.node.node))
        };
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_connect() || !changes => return Err(unreachable(&e)),
            // Sent, and no answer: the call may have happened.
            Err(_) => return Err(ConnectorError::OutcomeUnknown),
        };
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ConnectorError::Other(format!(
                "the node that runs it ({}) refused this node: the nodes must share webhooks.secret_key",
                self.node.node
            )));
        }
        let status = response.status();
        // Refused before it ran (unreadable, too large, a route an older node lacks): nothing happened. Anything
        // else (a 5xx, a proxy's 502 or 504 after forwarding) may have come after the call ran.
        let refused = matches!(status.as_u16(), 400 | 404 | 405 | 413 | 415 | 422);
        if !status.is_success() {
            return Err(if refused || !changes {
                unreachable(&format_args!("status {status}"))
            } else {
                ConnectorError::OutcomeUnknown
            });
        }
        let answer: ConnectorAnswer = match response.json().await {
            Ok(answer) => answer,
            Err(_) if changes => return Err(ConnectorError::OutcomeUnknown),
            Err(e) => return Err(unreachable(&e)),
        };
        match answer {
            ConnectorAnswer::Value(value) => serde_json::from_value(value)
                .map_err(|e| ConnectorError::Other(format!("the other node's answer did not read: {e}"))),
            ConnectorAnswer::Error(e) => Err(e),
        }
    }
}

#[async_trait]
impl Connector for RemoteConnector {
    fn kind(&self) -> ConnectorKind {
        self.kind
    }

    async fn state(&self) -> InstanceState {
        self.call(ConnectorCall::State).await.unwrap_or(InstanceState::Disconnected)
    }

    async fn own_number(&self) -> Option<PhoneNumber> {
        self.call(ConnectorCall::OwnNumber).await.ok().flatten()
    }

    async fn create_group(&self, request: &CreateGroupRequest) -> Result<CreatedGroup, ConnectorError> {
        self.call(ConnectorCall::CreateGroup { request: request.clone() }).await
    }

    async fn find_created_group(
        &self,
        request: &CreateGroupRequest,
        since: Timestamp,
    ) -> Result<Option<GroupMetadata>, ConnectorError> {
        self.call(ConnectorCall::FindCreatedGroup { request: request.clone(), since }).await
    }

    async fn group_metadata(&self, group: &GroupJid) -> Result<GroupMetadata, ConnectorError> {
        self.call(ConnectorCall::GroupMetadata { group: group.clone() }).await
    }

    async fn joined_groups(&self) -> Result<Vec<GroupMetadata>, ConnectorError> {
        self.call(ConnectorCall::JoinedGroups).await
    }

    async fn change_participants(
        &self,
        group: &GroupJid,
        change: ParticipantChange,
        people: &[PhoneNumber],
    ) -> Result<Vec<ParticipantResult>, ConnectorError> {
        self.call(ConnectorCall::ChangeParticipants { group: group.clone(), change, people: people.to_vec() }).await
    }

    async fn invite_link(&self, group: &GroupJid, reset: bool) -> Result<String, ConnectorError> {
        self.call(ConnectorCall::InviteLink { group: group.clone(), reset }).await
    }

    async fn set_subject(&self, group: &GroupJid, subject: &GroupSubject) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::SetSubject { group: group.clone(), subject: subject.clone() }).await
    }

    async fn set_description(&self, group: &GroupJid, description: &GroupDescription) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::SetDescription { group: group.clone(), description: description.clone() }).await
    }

    async fn set_settings(&self, group: &GroupJid, patch: &GroupSettingsPatch) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::SetSettings { group: group.clone(), patch: *patch }).await
    }

    async fn set_picture(&self, group: &GroupJid, picture: &GroupPicture) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::SetPicture { group: group.clone(), picture: picture.clone() }).await
    }

    async fn leave(&self, group: &GroupJid) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::Leave { group: group.clone() }).await
    }

    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::SendText { to: to.clone(), text: text.to_owned() }).await
    }

    async fn send_group_invite(
        &self,
        to: &PhoneNumber,
        group: &GroupJid,
        subject: &str,
        code: &str,
        expires_at: Timestamp,
    ) -> Result<(), ConnectorError> {
        let call = ConnectorCall::SendGroupInvite {
            to: to.clone(),
            group: group.clone(),
            subject: subject.to_owned(),
            code: code.to_owned(),
            expires_at,
        };
        self.call(call).await
    }

    async fn pairing_qr(&self) -> Option<PairingCode> {
        self.call(ConnectorCall::PairingQr).await.ok().flatten()
    }

    async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<PairingCode, ConnectorError> {
        self.call(ConnectorCall::RequestPairingCode { phone: phone.clone() }).await
    }

    async fn logout(&self) -> Result<(), ConnectorError> {
        self.call(ConnectorCall::Logout).await
    }
}
