//! Sealing values at rest: ChaCha20-Poly1305 under the server's key, so the database never holds a secret in clear
//! (webhook signing secrets, idempotent answers, device keys). A value is bound to a context (its row), so a sealed
//! value moved to another row does not open there.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Seals and opens values with the server's 32-byte key. Sealed text is `v1.<base64 of nonce and ciphertext>`.
pub struct SecretBox {
    key: LessSafeKey,
    /// The same key, for tags (`tag`).
    tags: ring::hmac::Key,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key")),
            tags: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        }
    }

    /// HMAC-SHA256 of `label` under the key, in hex: a secret every holder of the key can derive (the nodes on one
    /// database prove themselves to each other with one) that reveals nothing of the key.
    pub fn tag(&self, label: &str) -> String {
        hex::encode(ring::hmac::sign(&self.tags, label.as_bytes()).as_ref())
    }

    /// Seals `text` bound to `context`.
    pub fn seal_text(&self, text: &str, context: &str) -> String {
        self.seal_bytes(text.as_bytes(), context.as_bytes())
    }

    pub fn open_text(&self, sealed: &str, context: &str) -> Result<String, String> {
        let bytes = self.open_bytes(sealed, context.as_bytes()).map_err(|e| format!("the sealed text {e}"))?;
        String::from_utf8(bytes).map_err(|_| "the sealed text is not UTF-8".to_owned())
    }

    /// Seals `plain` bound to `context` (which may be empty), with a fresh random nonce.
    pub fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> String {
        let mut nonce = [0; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source");
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), ring::aead::Aad::from(context), &mut sealed)
            .expect("sealing fits in memory");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("v1.{}", STANDARD.encode(out))
    }

    /// What `seal_bytes` sealed with this key and `context`; the error finishes a sentence ("… is not sealed").
    pub fn open_bytes(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, &'static str> {
        let bytes = sealed
            .strip_prefix("v1.")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or("is not sealed")?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "has a bad nonce")?;
        let mut buffer = ciphertext.to_vec();
        let plain = self.key.open_in_place(nonce, ring::aead::Aad::from(context), &mut buffer).map_err(
            |_| "does not open with this server's key (webhooks.secret_key or the key file changed?) and context",
        )?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_with_its_key_and_its_context_only() {
        let (a, b) = (SecretBox::new([1; 32]), SecretBox::new([2; 32]));
        let sealed = a.seal_text("{\"token\":\"t0ken\"}", "key 1");
        assert!(!sealed.contains("t0ken"));
        assert_ne!(sealed, a.seal_text("{\"token\":\"t0ken\"}", "key 1"), "a fresh nonce each time");
        assert_eq!(a.open_text(&sealed, "key 1").unwrap(), "{\"token\":\"t0ken\"}");
        assert!(a.open_text(&sealed, "key 2").unwrap_err().contains("does not open"), "another row's context");
        assert!(b.open_text(&sealed, "key 1").unwrap_err().contains("does not open"), "another server's key");
        assert!(a.open_text("{\"token\":\"t0ken\"}", "key 1").unwrap_err().contains("not sealed"));
    }

    #[test]
    fn tampered_bytes_do_not_open() {
        let sealer = SecretBox::new([1; 32]);
        let mut sealed = sealer.seal_bytes(&[7; 40], b"row");
        sealed.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
        assert!(sealer.open_bytes(&sealed, b"row").is_err());
        assert_eq!(sealer.open_bytes(&sealer.seal_bytes(&[], b""), b"").unwrap(), Vec::<u8>::new());
    }
}
