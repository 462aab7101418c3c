//! Standard Webhooks secrets (`whsec_<base64>`), the signatures they make, and sealing them at rest.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use convene_core::SecretBox;
use convene_core::events::SealedSecret;
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

/// The server's sealing key: `webhooks.secret_key`, or `<data_dir>/webhook-secrets.key` (created, mode 0600, on first
/// use). It seals every secret the database keeps, not only webhooks' (the setting keeps its first name).
pub fn open_secret_box(config: &WebhookConfig, data_dir: &Path) -> anyhow::Result<SecretBox> {
    if !config.secret_key.is_empty() {
        let key = key_from_base64(&config.secret_key).map_err(|e| anyhow::anyhow!("webhooks.secret_key {e}"))?;
        return Ok(SecretBox::new(key));
    }
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = key_from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(SecretBox::new(key));
    }
    let mut key = [0; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| anyhow::anyhow!("no random source"))?;
    write_private(&path, &STANDARD.encode(key)).with_context(|| format!("writing {}", path.display()))?;
    Ok(SecretBox::new(key))
}

/// Sealing an endpoint's signing secret, with no context (the rows of 0004's endpoints were sealed so).
pub trait SealsSecrets {
    fn seal(&self, secret: &Secret) -> SealedSecret;
    fn unseal(&self, sealed: &SealedSecret) -> Result<Secret, String>;
}

impl SealsSecrets for SecretBox {
    fn seal(&self, secret: &Secret) -> SealedSecret {
        SealedSecret(self.seal_bytes(&secret.0, b""))
    }

    fn unseal(&self, sealed: &SealedSecret) -> Result<Secret, String> {
        self.open_bytes(&sealed.0, b"").map(Secret).map_err(|e| format!("the stored secret {e}"))
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
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config: WebhookConfig = crate::Config::for_directory(dir.path()).webhooks;
        let first = open_secret_box(&config, dir.path()).unwrap();
        let sealed = first.seal(&Secret::generate());
        let second = open_secret_box(&config, dir.path()).unwrap();
        assert!(second.unseal(&sealed).is_ok(), "the same key after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
