//! The kinds of connector Convene runs, each behind a driver: what the group service needs of a kind beyond the
//! `Connector` each instance gets — checking a new instance's number, opening and forgetting an instance's
//! connection, shutting down. The service asks the instance's kind through [`Drivers`] rather than matching on it.
//! Each kind's network is opened here from the configuration ([`Networks`]). Not yet here (issue 14): the kind's
//! name (`ConnectorKind`), its configuration section (`Config`) and its default pacing (`CreationConfig`).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use convene_core::store::InstanceRecord;
use convene_core::{Clock, Connector, ConnectorEvents, ConnectorKind, InstanceId, PhoneNumber, Store};
use convene_sandbox::{SandboxConfig, SandboxNetwork};
use convene_whatsapp::{WhatsappAccounts, WhatsappConfig};

use crate::config::Config;
use crate::error::{ApiError, Result};

/// What the group service needs of one kind of connector.
#[async_trait]
pub(crate) trait ConnectorDriver: Send + Sync {
    /// Checks the number a new instance of this kind asks for; the message says what is wrong with it.
    fn check_phone(&self, asked: &str) -> std::result::Result<PhoneNumber, String>;

    /// The number a new instance that asked for none gets now, or `None` when it learns it later (by pairing).
    async fn assign_phone(&self, store: &dyn Store) -> Result<Option<PhoneNumber>>;

    /// A new instance's name when its creator gave none.
    fn default_name(&self, phone: Option<&PhoneNumber>) -> String;

    /// Readies the network for these instances of this kind, in one go, before their connections open.
    async fn prepare(&self, instances: &[&InstanceRecord]);

    /// The instance's connection, reporting what the network tells it to `reported`; `None` when it cannot have one.
    fn open(&self, instance: &InstanceRecord, reported: &Arc<dyn ConnectorEvents>) -> Option<Arc<dyn Connector>>;

    /// Forgets a deleted instance: stops hearing from it and removes what the kind keeps of it.
    async fn forget(&self, id: InstanceId) -> Result<()>;

    /// Ends every connection, flushing what the kind buffers (what it stores stays).
    async fn shutdown(&self);
}

/// What each kind's connections run on, opened from the configuration before the service starts.
pub struct Networks {
    sandbox: Arc<SandboxNetwork>,
    whatsapp: WhatsappConfig,
}

impl Networks {
    /// Each kind's network as `config` says: the sandbox's world in the data directory, real numbers' device state
    /// beside it.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let sandbox = SandboxNetwork::open(Some(config.sandbox_path()), config.sandbox.clone(), clock)
            .await
            .with_context(|| format!("opening the sandbox world {}", config.sandbox_path().display()))?;
        Ok(Self::new(sandbox, config.whatsapp()))
    }

    /// Networks that reach nothing and keep nothing: an empty sandbox in memory, real numbers that never connect.
    pub async fn offline(clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let sandbox =
            SandboxNetwork::open(None, SandboxConfig::default(), clock).await.context("an empty sandbox in memory")?;
        Ok(Self::new(sandbox, WhatsappConfig { data_dir: std::path::PathBuf::new(), connect: false }))
    }

    /// These networks (a sandbox set up by the caller, as the bench's campaign does).
    pub fn new(sandbox: Arc<SandboxNetwork>, whatsapp: WhatsappConfig) -> Self {
        Self { sandbox, whatsapp }
    }
}

/// Every kind's driver: the one place a kind is registered.
pub(crate) struct Drivers {
    pub sandbox: Arc<SandboxDriver>,
    pub whatsapp: Arc<WhatsappDriver>,
}

impl Drivers {
    /// Each kind's driver over its network, reporting what the networks tell to `reported`.
    pub fn new(networks: Networks, clock: &Arc<dyn Clock>, reported: &Arc<dyn ConnectorEvents>) -> Self {
        Self {
            sandbox: Arc::new(SandboxDriver { network: networks.sandbox }),
            whatsapp: Arc::new(WhatsappDriver {
                accounts: WhatsappAccounts::new(networks.whatsapp, Arc::clone(clock), Arc::clone(reported)),
            }),
        }
    }

    pub fn of(&self, kind: ConnectorKind) -> &dyn ConnectorDriver {
        match kind {
            ConnectorKind::Sandbox => self.sandbox.as_ref(),
            ConnectorKind::Whatsapp => self.whatsapp.as_ref(),
        }
    }

    /// Every kind with its driver, in `ConnectorKind::ALL`'s order.
    pub fn all(&self) -> impl Iterator<Item = (ConnectorKind, &dyn ConnectorDriver)> {
        ConnectorKind::ALL.into_iter().map(|kind| (kind, self.of(kind)))
    }
}

/// Numbers on the built-in simulated network.
pub(crate) struct SandboxDriver {
    pub network: Arc<SandboxNetwork>,
}

#[async_trait]
impl ConnectorDriver for SandboxDriver {
    fn check_phone(&self, asked: &str) -> std::result::Result<PhoneNumber, String> {
        PhoneNumber::parse(asked).map_err(|e| e.to_string())
    }

    /// The next sandbox number: the one after the highest given out, or, when the last was given out, the first
    /// free one.
    async fn assign_phone(&self, store: &dyn Store) -> Result<Option<PhoneNumber>> {
        let (first, last) = (sandbox_number(0), sandbox_number(SANDBOX_NUMBERS - 1));
        let after = store.highest_instance_phone(&first, &last).await?.as_ref().and_then(sandbox_index);
        match after.map_or(0, |i| i + 1) {
            next if next < SANDBOX_NUMBERS => Ok(Some(sandbox_number(next))),
            _ => {
                let taken: HashSet<PhoneNumber> =
                    store.list_instances().await?.into_iter().filter_map(|i| i.phone).collect();
                (0..SANDBOX_NUMBERS)
                    .map(sandbox_number)
                    .find(|p| !taken.contains(p))
                    .map(Some)
                    .ok_or_else(|| ApiError::Conflict(format!("all {SANDBOX_NUMBERS} sandbox numbers are in use")))
            }
        }
    }

    fn default_name(&self, phone: Option<&PhoneNumber>) -> String {
        phone.map_or_else(|| "Sandbox number".to_owned(), |p| format!("Sandbox {}", p.e164()))
    }

    /// Makes the numbers WhatsApp users of the simulated network, in one change. A failure is logged, not returned:
    /// the number works all the same unless the world was set to refuse numbers it does not know.
    async fn prepare(&self, instances: &[&InstanceRecord]) {
        let accounts: Vec<PhoneNumber> = instances.iter().filter_map(|i| i.phone.clone()).collect();
        if accounts.is_empty() {
            return;
        }
        if let Err(e) = self.network.register(&accounts).await {
            tracing::error!(error = %e, accounts = accounts.len(), "could not register the sandbox accounts");
        }
    }

    fn open(&self, instance: &InstanceRecord, reported: &Arc<dyn ConnectorEvents>) -> Option<Arc<dyn Connector>> {
        let phone = instance.phone.as_ref()?;
        self.network.listen(phone.clone(), instance.id, Arc::clone(reported));
        Some(Arc::new(self.network.connector(phone.clone())))
    }

    async fn forget(&self, id: InstanceId) -> Result<()> {
        self.network.stop_listening(id);
        Ok(())
    }

    async fn shutdown(&self) {}
}

/// Real numbers, over WhatsApp Web multi-device.
pub(crate) struct WhatsappDriver {
    pub accounts: Arc<WhatsappAccounts>,
}

#[async_trait]
impl ConnectorDriver for WhatsappDriver {
    fn check_phone(&self, _asked: &str) -> std::result::Result<PhoneNumber, String> {
        Err("a `whatsapp` instance is the number that pairs with it (QR code or pairing code); leave `phone` out"
            .into())
    }

    /// Known once paired.
    async fn assign_phone(&self, _store: &dyn Store) -> Result<Option<PhoneNumber>> {
        Ok(None)
    }

    fn default_name(&self, _phone: Option<&PhoneNumber>) -> String {
        "WhatsApp number".to_owned()
    }

    async fn prepare(&self, _instances: &[&InstanceRecord]) {}

    /// Starts connecting in the background; `reported` was given to the accounts when they were made.
    fn open(&self, instance: &InstanceRecord, _reported: &Arc<dyn ConnectorEvents>) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(self.accounts.open(instance.id)))
    }

    /// Unlinks the number and deletes its keys.
    async fn forget(&self, id: InstanceId) -> Result<()> {
        Ok(self.accounts.remove(id).await?)
    }

    async fn shutdown(&self) {
        self.accounts.shutdown().await;
    }
}

/// How many numbers the sandbox gives out: +1 201 555-0100 to 555-9999, then on through 556-0000, 557-0000, … to
/// 654-9999 (libphonenumber's own example range, so always valid).
const SANDBOX_NUMBERS: u32 = 999_900;

/// The `index`th sandbox number (from 0).
fn sandbox_number(index: u32) -> PhoneNumber {
    let n = index + 100;
    PhoneNumber::parse(&format!("+1201{:03}{:04}", 555 + n / 10_000, n % 10_000))
        .expect("the sandbox's numbers are valid US numbers")
}

/// Where `phone` is among the sandbox's numbers, if it is one.
fn sandbox_index(phone: &PhoneNumber) -> Option<u32> {
    let digits = phone.e164().strip_prefix("+1201")?.parse::<u32>().ok()?;
    let n = (digits / 10_000).checked_sub(555)? * 10_000 + digits % 10_000;
    n.checked_sub(100).filter(|i| *i < SANDBOX_NUMBERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_numbers_run_on_past_ten_thousand_and_each_is_found_again() {
        let numbers = |indexes: &[u32]| indexes.iter().map(|&i| sandbox_number(i).e164()).collect::<Vec<_>>();
        assert_eq!(
            numbers(&[0, 1, 9_899, 9_900, 10_000, SANDBOX_NUMBERS - 1]),
            ["+12015550100", "+12015550101", "+12015559999", "+12015560000", "+12015560100", "+12016549999"]
        );
        for index in [0, 9_899, 9_900, 123_456, SANDBOX_NUMBERS - 1] {
            assert_eq!(sandbox_index(&sandbox_number(index)), Some(index));
        }
        for other in ["+12015550099", "+12016550000", "+12025550100", "+447700176576"] {
            assert_eq!(sandbox_index(&PhoneNumber::parse(other).unwrap()), None, "{other}");
        }
    }
}
