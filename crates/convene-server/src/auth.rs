//! Credentials: account API keys (native `Authorization: Bearer`) and instance tokens, random and stored hashed.
//!
//! What a key may do is decided here, once for the native API and the dialects that take the account key (2Chat
//! `X-User-API-Key`, Z-API `Client-Token`):
//! - a **read-only** key may read: any other method than GET or HEAD is a 403 `read_only_key`;
//! - a key **scoped** to some instances sees the account as if only those existed: another instance, its groups
//!   and its jobs are 404 (the same answer as for one that does not exist, so a scope does not reveal what lies
//!   outside it), lists (instances, groups, jobs, events) hold only its instances' records, and what belongs to the
//!   whole account (keys, webhook endpoints and their deliveries, the sandbox world, new instances) is a 403
//!   `account_wide_key_required`;
//! - a revoked key is gone from the store, so the next request with it is a 401.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use convene_core::store::{ApiKeyRecord, GroupRecord, JobRecord};
use convene_core::{InstanceId, Timestamp};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Prefix of account API keys, so a leaked key is recognisable.
const API_KEY_PREFIX: &str = "cvn_";

/// A fresh random secret as lowercase hex, `bytes` long before encoding.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source is available");
    hex::encode(&buf)
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a secret, hex: what the store keeps instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// What a new key may do: every instance or some, read and write or read only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyGrant {
    /// `None`: every instance, including later ones.
    pub instance_ids: Option<Vec<InstanceId>>,
    pub read_only: bool,
}

impl KeyGrant {
    /// An account-wide, writable key: what `serve` creates on the first start.
    pub fn admin() -> Self {
        Self::default()
    }
}

/// A new account API key: the secret (shown once) and the record to store.
pub fn new_api_key(name: &str, grant: KeyGrant, now: Timestamp) -> (String, ApiKeyRecord) {
    let secret = format!("{API_KEY_PREFIX}{}", random_hex(20));
    let record = ApiKeyRecord {
        id: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        prefix: secret[..API_KEY_PREFIX.len() + 6].to_owned(),
        secret_hash: hash_secret(&secret),
        created_at: now,
        instance_ids: grant.instance_ids,
        read_only: grant.read_only,
        last_used_at: None,
    };
    (secret, record)
}

/// A new instance token: 50 hex characters, like Green API's `apiTokenInstance`.
pub fn new_instance_token() -> String {
    random_hex(25)
}

/// The caller presented a valid account API key, and a read-only key asks only to read. Handlers ask it what the
/// key's scope lets them see ([`AccountKey::instance`], [`AccountKey::group`], …).
#[derive(Clone, Debug)]
pub struct AccountKey(pub ApiKeyRecord);

impl AccountKey {
    /// Refuses a read-only key any method that changes something. Every route that takes the account key passes
    /// through here, native or dialect, so "a read-only key changes nothing" holds for routes added later too.
    pub fn permit(key: ApiKeyRecord, method: &Method) -> Result<Self, ApiError> {
        let changes = !matches!(*method, Method::GET | Method::HEAD);
        Self::permit_call(key, changes, &format!("{method} anything"))
    }

    /// The same rule for a dialect whose verbs do not say whether a call changes something (Z-API reads an invite
    /// link by POST and disconnects by GET): `changes` says it, `what` names the call for the message.
    pub fn permit_call(key: ApiKeyRecord, changes: bool, what: &str) -> Result<Self, ApiError> {
        if key.read_only && changes {
            return Err(ApiError::Forbidden {
                code: "read_only_key",
                detail: format!("API key `{}` is read-only: it cannot {what}", key.prefix),
            });
        }
        Ok(Self(key))
    }

    /// Can the key see this instance and what belongs to it?
    pub fn sees(&self, id: InstanceId) -> bool {
        self.0.instance_ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }

    /// Can the key see an event of this instance? One of no instance (account-wide) only when it is account-wide.
    pub fn sees_event(&self, instance: Option<InstanceId>) -> bool {
        match instance {
            Some(id) => self.sees(id),
            None => self.0.instance_ids.is_none(),
        }
    }

    /// `id` when the key may see it; otherwise the 404 an unknown instance gets.
    pub fn instance(&self, id: InstanceId) -> Result<InstanceId, ApiError> {
        if self.sees(id) { Ok(id) } else { Err(ApiError::no_instance(id)) }
    }

    /// A group lookup as the key may see it: the group when its instance is in scope. Otherwise, and for a scoped
    /// key whenever the group was not found, the 404 an unknown group gets, worded the same (a lookup's own words,
    /// such as "not on instance …", would tell a scoped key that the group exists elsewhere).
    pub fn group(&self, found: Result<GroupRecord, ApiError>, reference: &str) -> Result<GroupRecord, ApiError> {
        let hidden = || ApiError::NotFound(format!("no group {reference}"));
        match found {
            Ok(group) if self.sees(group.instance_id) => Ok(group),
            Ok(_) => Err(hidden()),
            Err(ApiError::NotFound(_)) if self.0.instance_ids.is_some() => Err(hidden()),
            Err(e) => Err(e),
        }
    }

    /// The instance a scoped key acts with when a request does not name one: its only instance, if it has one.
    pub fn sole_instance(&self) -> Option<InstanceId> {
        match self.0.instance_ids.as_deref() {
            Some([only]) => Some(*only),
            _ => None,
        }
    }

    /// Can the key see the job? Only when every instance of its pool is in scope.
    pub fn sees_job(&self, job: &JobRecord) -> bool {
        job.instance_ids.iter().all(|&id| self.sees(id))
    }

    /// Refuses a scoped key what belongs to the whole account; `what` names it for the message.
    pub fn account_wide(&self, what: &str) -> Result<(), ApiError> {
        match &self.0.instance_ids {
            None => Ok(()),
            Some(_) => Err(ApiError::Forbidden {
                code: "account_wide_key_required",
                detail: format!(
                    "API key `{}` is limited to some instances; {what} needs a key for the whole account",
                    self.0.prefix
                ),
            }),
        }
    }
}

/// The key a request authenticated with, kept so that a second extraction (the idempotency layer, then the
/// handler) reads the store once.
#[derive(Clone)]
struct Authenticated(ApiKeyRecord);

impl FromRequestParts<AppState> for AccountKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Authenticated(key)) = parts.extensions.get::<Authenticated>() {
            return Self::permit(key.clone(), &parts.method);
        }
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing `Authorization: Bearer <API key>` header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized("the Authorization header must be `Bearer <API key>`"))?;
        let key = state.service.keys().account_key(token).await?;
        parts.extensions.insert(Authenticated(key.clone()));
        Self::permit(key, &parts.method)
    }
}

/// An account API key for the whole account (no instance scope): keys, webhook endpoints, the sandbox world, new
/// instances. A scoped key gets a 403 `account_wide_key_required`.
pub struct AccountWideKey(pub AccountKey);

impl FromRequestParts<AppState> for AccountWideKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = AccountKey::from_request_parts(parts, state).await?;
        key.account_wide(&format!("{} {}", parts.method, parts.uri.path()))?;
        Ok(Self(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hashed() {
        let (a, rec) = new_api_key("admin", KeyGrant::admin(), Timestamp::from_millis(0));
        let (b, _) = new_api_key("admin", KeyGrant::admin(), Timestamp::from_millis(0));
        assert!(a.starts_with("cvn_") && a.len() == 44);
        assert_ne!(a, b);
        assert_eq!(rec.secret_hash, hash_secret(&a));
        assert_ne!(rec.secret_hash, a);
        assert!(a.starts_with(&rec.prefix));
    }

    fn key(instance_ids: Option<Vec<i64>>, read_only: bool) -> ApiKeyRecord {
        let grant =
            KeyGrant { instance_ids: instance_ids.map(|ids| ids.into_iter().map(InstanceId).collect()), read_only };
        new_api_key("k", grant, Timestamp::from_millis(0)).1
    }

    #[test]
    fn a_read_only_key_may_only_get_and_head() {
        for method in [Method::GET, Method::HEAD] {
            assert!(AccountKey::permit(key(None, true), &method).is_ok(), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let refused = AccountKey::permit(key(None, true), &method).unwrap_err();
            assert_eq!((refused.status().as_u16(), refused.code()), (403, "read_only_key"), "{method}");
            assert!(AccountKey::permit(key(None, false), &method).is_ok(), "{method}");
        }
    }

    #[test]
    fn a_scoped_key_sees_only_its_instances_and_nothing_account_wide() {
        let scoped = AccountKey(key(Some(vec![7_103_000_001]), false));
        assert!(scoped.sees(InstanceId(7_103_000_001)) && !scoped.sees(InstanceId(7_103_000_002)));
        let hidden = scoped.instance(InstanceId(7_103_000_002)).unwrap_err();
        assert_eq!((hidden.status().as_u16(), hidden.to_string()), (404, "no instance 7103000002".to_owned()));
        assert_eq!(scoped.account_wide("webhooks").unwrap_err().code(), "account_wide_key_required");
        assert_eq!(scoped.sole_instance(), Some(InstanceId(7_103_000_001)));
        let everything = AccountKey(key(None, true));
        assert!(everything.sees(InstanceId(7_103_000_002)) && everything.account_wide("webhooks").is_ok());
        assert_eq!(everything.sole_instance(), None);
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(b"abc"), hash_secret("abc"));
    }

    #[test]
    fn instance_tokens_are_fifty_hex_characters() {
        let t = new_instance_token();
        assert_eq!(t.len(), 50);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
