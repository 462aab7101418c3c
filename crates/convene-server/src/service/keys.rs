//! Account API keys and instance tokens: issuing, checking, listing, revoking and rotating them. Secrets are
//! returned once and stored as SHA-256 hashes; what a key may do is `crate::auth`'s.

use std::time::Duration;

use convene_core::group::plain_name;
use convene_core::store::{ApiKeyRecord, ConsoleSessionRecord};
use convene_core::{DbError, InstanceId};
use uuid::Uuid;

use super::{MAX_NAME_CHARS, Service, not_found};
use crate::auth::{self, KeyGrant};
use crate::error::{ApiError, FieldError, Result};

/// How long a console sign-in lasts; then the operator signs in again.
pub const CONSOLE_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// `last_used_at` is written at most this often per key, so reads do not each cost a write.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

impl Service {
    /// A valid account API key (native Bearer, 2Chat `X-User-API-Key`, Z-API `Client-Token`), its use recorded.
    pub async fn account_key(&self, secret: &str) -> Result<ApiKeyRecord> {
        let secret = secret.trim();
        let mut key = match self.store.find_api_key(&auth::hash_secret(secret)).await? {
            Some(key) if !secret.is_empty() => key,
            _ => return Err(ApiError::Unauthorized("unknown API key")),
        };
        let now = self.clock.now();
        if key.last_used_at.is_none_or(|last| last.until(now) >= LAST_USED_RESOLUTION) {
            match self.store.touch_api_key(key.id, now).await {
                Ok(()) => key.last_used_at = Some(now),
                // Revoked since it was read: refused like any unknown key.
                Err(DbError::NotFound) => return Err(ApiError::Unauthorized("unknown API key")),
                Err(e) => tracing::warn!(key = %key.prefix, error = %e, "could not record the API key's use"),
            }
        }
        Ok(key)
    }

    /// Signs in to the console with an API key: a new session's secret (for the browser's cookie; only its hash
    /// is stored) and the key it acts with. Refused like any request with that key.
    pub async fn sign_in(&self, api_key: &str) -> Result<(String, ApiKeyRecord)> {
        let key = self.account_key(api_key).await?;
        let secret = auth::random_hex(32);
        let now = self.clock.now();
        let session = ConsoleSessionRecord {
            secret_hash: auth::hash_secret(&secret),
            api_key_id: key.id,
            created_at: now,
            expires_at: now.plus(CONSOLE_SESSION_LIFETIME),
        };
        self.store.insert_console_session(&session).await?;
        Ok((secret, key))
    }

    /// The key a console session acts with, while the session lasts and the key is not revoked.
    pub async fn console_session(&self, secret: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self.store.find_console_session(&auth::hash_secret(secret), self.clock.now()).await?)
    }

    /// Ends a console session: its cookie no longer signs anyone in, wherever it was copied to.
    pub async fn sign_out(&self, secret: &str) -> Result<()> {
        Ok(self.store.delete_console_session(&auth::hash_secret(secret)).await?)
    }

    /// A new account API key, stored hashed; the secret is returned once, with the record. A scope must name
    /// instances that exist (at least one).
    pub async fn create_api_key(&self, name: &str, grant: KeyGrant) -> Result<(String, ApiKeyRecord)> {
        let mut fields = Vec::new();
        let name = plain_name(name, MAX_NAME_CHARS).unwrap_or_else(|message| {
            fields.push(FieldError::new("name", message));
            ""
        });
        let mut grant = grant;
        if let Some(ids) = &mut grant.instance_ids {
            if ids.is_empty() {
                fields.push(FieldError::new(
                    "instance_ids",
                    "must name at least one instance; leave it out for a key to the whole account",
                ));
            }
            ids.sort_unstable_by_key(|id| id.0);
            ids.dedup();
        }
        if !fields.is_empty() {
            return Err(ApiError::Validation(fields));
        }
        if let Some(ids) = &grant.instance_ids {
            self.existing_instances(ids).await?;
        }
        let (secret, record) = auth::new_api_key(name, grant, self.clock.now());
        self.store.insert_api_key(&record).await?;
        Ok((secret, record))
    }

    /// Every key, oldest first (records only: the secrets were never kept).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Deletes a key: the next request with it is refused. The last admin key (account-wide and writable) stays,
    /// so that the API always has a key that can issue keys; `convene key create` makes one on the host anyway.
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<()> {
        match self.store.delete_api_key(id).await {
            Ok(()) => Ok(()),
            Err(DbError::Conflict) => Err(ApiError::Conflict(format!(
                "API key {id} is the last key that is account-wide and writable; create another one before \
                 revoking it, so that the account is not locked out"
            ))),
            Err(e) => Err(not_found(e, || format!("no API key {id}"))),
        }
    }

    /// A new token for the instance; the old one is refused from now on. The token is returned once.
    pub async fn rotate_instance_token(&self, id: InstanceId) -> Result<String> {
        let token = auth::new_instance_token();
        self.store
            .set_instance_token_hash(id, &auth::hash_secret(&token))
            .await
            .map_err(|e| not_found(e, || format!("no instance {id}")))?;
        Ok(token)
    }
}
