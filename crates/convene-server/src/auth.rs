//! Credentials: account API keys (native `Authorization: Bearer`) and instance tokens, random and stored hashed.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use convene_core::store::ApiKeyRecord;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Prefix of account API keys, so a leaked key is recognisable.
const API_KEY_PREFIX: &str = "cvn_";

/// A fresh random secret as lowercase hex, `bytes` long before encoding.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source is available");
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a secret, hex: what the store keeps instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A new account API key: the secret (shown once) and the record to store.
pub fn new_api_key(name: &str, now: convene_core::Timestamp) -> (String, ApiKeyRecord) {
    let secret = format!("{API_KEY_PREFIX}{}", random_hex(20));
    let record = ApiKeyRecord {
        id: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        prefix: secret[..API_KEY_PREFIX.len() + 6].to_owned(),
        secret_hash: hash_secret(&secret),
        created_at: now,
    };
    (secret, record)
}

/// A new instance token: 50 hex characters, like Green API's `apiTokenInstance`.
pub fn new_instance_token() -> String {
    random_hex(25)
}

/// The caller presented a valid account API key.
pub struct AccountKey(#[allow(dead_code)] pub ApiKeyRecord);

impl FromRequestParts<AppState> for AccountKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
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
        state.service.account_key(token).await.map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hashed() {
        let (a, rec) = new_api_key("admin", convene_core::Timestamp::from_millis(0));
        let (b, _) = new_api_key("admin", convene_core::Timestamp::from_millis(0));
        assert!(a.starts_with("cvn_") && a.len() == 44);
        assert_ne!(a, b);
        assert_eq!(rec.secret_hash, hash_secret(&a));
        assert_ne!(rec.secret_hash, a);
        assert!(a.starts_with(&rec.prefix));
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn instance_tokens_are_fifty_hex_characters() {
        let t = new_instance_token();
        assert_eq!(t.len(), 50);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
