//! Standard Webhooks secrets (`whsec_<base64>`), the signatures they make, and sealing them at rest.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use convene_core::events::SealedSecret;
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::WebhookConfig;

const PREFIX: &str = "whsec_";
/// The key file in the data directory when `webhooks.secret_key` is empty.
pub const KEY_FILE: &str = "webhook-secrets.key";

/// A signing secret's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// 24 random bytes, as Standard Webhooks implementations make them.
    pub fn generate() -> Self {
        let mut bytes = vec![0; 24];
        SystemRandom::new().fill(&mut bytes).expect("the system's random source");
        Self(bytes)
    }

    /// `whsec_` and the base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix(PREFIX).ok_or("must start with `whsec_`")?;
        let bytes = STANDARD.decode(encoded).map_err(|_| "must be `whsec_` followed by base64".to_owned())?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!("must hold 24 to 64 bytes, not {}", bytes.len()));
        }
        Ok(Self(bytes))
    }

    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

/// `v1,<base64 HMAC-SHA256 over "{msg_id}.{timestamp}.{body}">`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.0);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(msg_id.as_bytes());
    context.update(b".");
    context.update(timestamp_secs.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| sign(s, msg_id, timestamp_secs, body)).collect::<Vec<_>>().join(" ")
}

pub(super) fn key_from_base64(text: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| "is not base64".to_owned())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("must be 32 bytes, not {}", b.len()))
}

/// Seals secrets with ChaCha20-Poly1305 under the server's key, so the database never holds them in clear.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key: LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key")) }
    }

    /// The key of `webhooks.secret_key`, or of `<data_dir>/webhook-secrets.key` (created, mode 0600, on first use).
    pub fn open_or_create(config: &WebhookConfig, data_dir: &Path) -> anyhow::Result<Self> {
        if !config.secret_key.is_empty() {
            let key = key_from_base64(&config.secret_key).map_err(|e| anyhow::anyhow!("webhooks.secret_key {e}"))?;
            return Ok(Self::new(key));
        }
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = key_from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            return Ok(Self::new(key));
        }
        let mut key = [0; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| anyhow::anyhow!("no random source"))?;
        write_private(&path, &STANDARD.encode(key)).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self::new(key))
    }

    /// `v1.<base64 of nonce and ciphertext>`.
    pub fn seal(&self, secret: &Secret) -> SealedSecret {
        SealedSecret(self.seal_bytes(&secret.0, b""))
    }

    pub fn unseal(&self, sealed: &SealedSecret) -> Result<Secret, String> {
        self.open_bytes(&sealed.0, b"").map(Secret).map_err(|e| format!("the stored secret {e}"))
    }

    /// Seals `text` bound to `context`: it opens only with the same context, so a sealed value moved to another row
    /// does not open there.
    pub fn seal_text(&self, text: &str, context: &str) -> String {
        self.seal_bytes(text.as_bytes(), context.as_bytes())
    }

    pub fn open_text(&self, sealed: &str, context: &str) -> Result<String, String> {
        let bytes = self.open_bytes(sealed, context.as_bytes()).map_err(|e| format!("the sealed text {e}"))?;
        String::from_utf8(bytes).map_err(|_| "the sealed text is not UTF-8".to_owned())
    }

    fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> String {
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

    fn open_bytes(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, &'static str> {
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

/// Creates `path` readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference implementations.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_read_back_and_bad_ones_say_why() {
        let secret = Secret::generate();
        assert_eq!(Secret::parse(&secret.to_whsec()).unwrap(), secret);
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err().contains("whsec_"));
        assert!(Secret::parse("whsec_!!!").unwrap_err().contains("base64"));
        assert!(Secret::parse("whsec_AAAA").unwrap_err().contains("24 to 64"));
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let (a, b) = (SecretBox::new([1; 32]), SecretBox::new([2; 32]));
        let secret = Secret::generate();
        let sealed = a.seal(&secret);
        assert_ne!(sealed, a.seal(&secret), "a fresh nonce each time");
        assert_eq!(a.unseal(&sealed).unwrap(), secret);
        assert!(b.unseal(&sealed).unwrap_err().contains("does not open"));
        let mut tampered = sealed.0.clone();
        tampered.replace_range(10..11, if &tampered[10..11] == "A" { "B" } else { "A" });
        assert!(a.unseal(&SealedSecret(tampered)).is_err());
        assert!(a.unseal(&SealedSecret("plain".into())).is_err());
    }

    #[test]
    fn sealed_text_opens_with_its_key_and_its_context_only() {
        let (a, b) = (SecretBox::new([1; 32]), SecretBox::new([2; 32]));
        let sealed = a.seal_text("{\"token\":\"t0ken\"}", "key 1");
        assert!(!sealed.contains("t0ken"));
        assert_eq!(a.open_text(&sealed, "key 1").unwrap(), "{\"token\":\"t0ken\"}");
        assert!(a.open_text(&sealed, "key 2").unwrap_err().contains("does not open"), "another row's context");
        assert!(b.open_text(&sealed, "key 1").unwrap_err().contains("does not open"), "another server's key");
        assert!(a.open_text("{\"token\":\"t0ken\"}", "key 1").unwrap_err().contains("not sealed"));
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config: WebhookConfig = crate::Config::for_directory(dir.path()).webhooks;
        let first = SecretBox::open_or_create(&config, dir.path()).unwrap();
        let sealed = first.seal(&Secret::generate());
        let second = SecretBox::open_or_create(&config, dir.path()).unwrap();
        assert!(second.unseal(&sealed).is_ok(), "the same key after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
