//! Account API keys and instance tokens: issuing, checking, listing, revoking and rotating them. Secrets are
//! returned once and stored as SHA-256 hashes; what a key may do is `crate::auth`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convene_core::group::plain_name;
use convene_core::store::{ApiKeyRecord, ConsoleSessionRecord};
use convene_core::{Clock, DbError, Store};
use uuid::Uuid;

use super::{MAX_NAME_CHARS, existing_instances, not_found};
use crate::auth::{self, KeyGrant};
use crate::error::{ApiError, FieldError, Result};

/// How long a console sign-in lasts; then the operator signs in again.
pub const CONSOLE_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// `last_used_at` is written at most this often per key, so reads do not each cost a write.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// How long a key read from the store is trusted without reading it again. A key revoked through this process is
/// forgotten at once; one revoked elsewhere (`convene key revoke` on the host while this process serves) is refused
/// within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Most keys the cache holds; past it, it starts over (an account has a handful of keys).
const KEY_CACHE_MOST: usize = 1024;

/// Valid keys recently read from the store, by secret hash, so that a request does not cost a database read for
/// its key. Only keys that exist are kept: unknown secrets, however many are tried, are read from the store.
#[derive(Debug, Default)]
struct KeyCache(Mutex<CachedKeys>);

#[derive(Debug, Default)]
struct CachedKeys {
    by_hash: HashMap<String, (Instant, ApiKeyRecord)>,
    /// Counts revocations, so that a key read before one is not kept after it.
    revocations: u64,
}

/// When a key was read from the store, and how many revocations this process had seen then.
#[derive(Clone, Copy)]
struct ReadAt {
    at: Instant,
    revocations: u64,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CachedKeys> {
        self.0.lock().expect("the key cache's lock is not poisoned")
    }

    /// The key, when read less than `KEY_CACHE_TTL` ago.
    fn get(&self, secret_hash: &str) -> Option<ApiKeyRecord> {
        let keys = self.lock();
        keys.by_hash.get(secret_hash).filter(|(read, _)| read.elapsed() < KEY_CACHE_TTL).map(|(_, key)| key.clone())
    }

    /// Call before reading a key from the store; `put` it with the answer.
    fn reading(&self) -> ReadAt {
        ReadAt { at: Instant::now(), revocations: self.lock().revocations }
    }

    fn put(&self, read: ReadAt, key: &ApiKeyRecord) {
        let mut keys = self.lock();
        if keys.revocations != read.revocations {
            return; // revoked since: it may be this key
        }
        if keys.by_hash.len() >= KEY_CACHE_MOST {
            keys.by_hash.clear();
        }
        keys.by_hash.insert(key.secret_hash.clone(), (read.at, key.clone()));
    }

    fn forget(&self, id: Uuid) {
        let mut keys = self.lock();
        keys.revocations += 1;
        keys.by_hash.retain(|_, (_, key)| key.id != id);
    }
}

/// The account's API keys and console sessions, with the cache that spares a request a database read for its key.
#[derive(Clone)]
pub struct ApiKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<KeyCache>,
}

impl ApiKeys {
    pub(super) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, cache: Arc::default() }
    }

    /// A valid account API key (native Bearer, 2Chat `X-User-API-Key`, Z-API `Client-Token`), its use recorded.
    pub async fn account_key(&self, secret: &str) -> Result<ApiKeyRecord> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ApiError::Unauthorized("unknown API key"));
        }
        let secret_hash = auth::hash_secret(secret);
        let mut key = match self.cache.get(&secret_hash) {
            Some(key) => key,
            None => {
                let read = self.cache.reading();
                let key = self.store.find_api_key(&secret_hash).await?;
                let key = key.ok_or(ApiError::Unauthorized("unknown API key"))?;
                self.cache.put(read, &key);
                key
            }
        };
        let now = self.clock.now();
        if key.last_used_at.is_none_or(|last| last.until(now) >= LAST_USED_RESOLUTION) {
            let read = self.cache.reading();
            match self.store.touch_api_key(key.id, now).await {
                Ok(()) => {
                    key.last_used_at = Some(now);
                    self.cache.put(read, &key);
                }
                // Revoked since it was read: refused like any unknown key.
                Err(DbError::NotFound) => {
                    self.cache.forget(key.id);
                    return Err(ApiError::Unauthorized("unknown API key"));
                }
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
    pub async fn create(&self, name: &str, grant: KeyGrant) -> Result<(String, ApiKeyRecord)> {
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
            existing_instances(self.store.as_ref(), ids).await?;
        }
        let (secret, record) = auth::new_api_key(name, grant, self.clock.now());
        self.store.insert_api_key(&record).await?;
        Ok((secret, record))
    }

    /// Every key, oldest first (records only: the secrets were never kept).
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Deletes a key: the next request with it is refused. The last admin key (account-wide and writable) stays,
    /// so that the API always has a key that can issue keys; `convene key create` makes one on the host anyway.
    pub async fn revoke(&self, id: Uuid) -> Result<()> {
        let deleted = self.store.delete_api_key(id).await;
        // Forgotten whatever the answer: a lost reply may hide a deletion that happened.
        self.cache.forget(id);
        match deleted {
            Ok(()) => Ok(()),
            Err(DbError::Conflict) => Err(ApiError::Conflict(format!(
                "API key {id} is the last key that is account-wide and writable; create another one before \
                 revoking it, so that the account is not locked out"
            ))),
            Err(e) => Err(not_found(e, || format!("no API key {id}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use convene_core::Timestamp;

    use super::*;

    fn key() -> ApiKeyRecord {
        auth::new_api_key("k", KeyGrant::admin(), Timestamp::from_millis(0)).1
    }

    #[test]
    fn a_key_read_is_kept_for_a_second_and_forgotten_when_revoked() {
        let (cache, key) = (KeyCache::default(), key());
        cache.put(cache.reading(), &key);
        assert_eq!(cache.get(&key.secret_hash).map(|k| k.id), Some(key.id));
        assert!(cache.get("another hash").is_none());

        cache.forget(key.id);
        assert!(cache.get(&key.secret_hash).is_none());

        let long_ago = ReadAt { at: Instant::now() - KEY_CACHE_TTL, revocations: cache.lock().revocations };
        cache.put(long_ago, &key);
        assert!(cache.get(&key.secret_hash).is_none(), "read a second ago: read again");
    }

    #[test]
    fn a_key_read_before_a_revocation_is_not_kept_after_it() {
        // A request reads the key while another revokes it: the reader's answer must not outlive the revocation.
        let (cache, key) = (KeyCache::default(), key());
        let read = cache.reading();
        cache.forget(key.id);
        cache.put(read, &key);
        assert!(cache.get(&key.secret_hash).is_none());
        cache.put(cache.reading(), &key);
        assert!(cache.get(&key.secret_hash).is_some(), "read after it: kept");
    }
}
