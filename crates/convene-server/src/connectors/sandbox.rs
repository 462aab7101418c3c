//! Numbers on the built-in simulated network.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use convene_core::store::InstanceRecord;
use convene_core::{Clock, Connector, ConnectorKind, ConnectorReports, InstanceId, PhoneNumber, Store};
use convene_sandbox::{SandboxConfig, SandboxNetwork};

use super::{ConnectorDriver, ConnectorRegistration, Keeping, Section};
use crate::error::{ApiError, Result};

pub(super) struct Registration;

impl Registration {
    fn settings(settings: &Section) -> std::result::Result<SandboxConfig, String> {
        let config: SandboxConfig = settings.deserialize().map_err(|e| e.to_string())?;
        config.faults.validate().map_err(|e| format!("faults: {e}"))?;
        Ok(config)
    }
}

#[async_trait]
impl ConnectorRegistration for Registration {
    fn kind(&self) -> ConnectorKind {
        convene_sandbox::KIND
    }

    fn label(&self) -> &'static str {
        "sandbox"
    }

    fn summary(&self) -> &'static str {
        "the built-in simulated network"
    }

    fn pairs(&self) -> bool {
        false
    }

    fn default_config(&self) -> &'static str {
        include_str!("sandbox.toml")
    }

    fn check(&self, settings: &Section) -> std::result::Result<(), String> {
        Self::settings(settings).map(drop)
    }

    /// The world is `sandbox.db` in the data directory (an older Convene's `sandbox.json` beside it is imported); on
    /// PostgreSQL it is in Convene's database, schema `sandbox`, one network for every node on that database.
    async fn open(
        &self,
        settings: &Section,
        keeping: Option<&Keeping>,
        clock: &Arc<dyn Clock>,
        _reported: &Arc<dyn ConnectorReports>,
    ) -> anyhow::Result<Arc<dyn ConnectorDriver>> {
        let config = Self::settings(settings).map_err(anyhow::Error::msg)?;
        let clock = Arc::clone(clock);
        let network = match keeping {
            Some(keeping) if crate::config::is_postgres(&keeping.database_url) => {
                SandboxNetwork::open_shared(&keeping.database_url, config, clock)
                    .await
                    .context("opening the sandbox world in the PostgreSQL database (schema `sandbox`)")?
            }
            Some(keeping) => {
                let path = keeping.data_dir.join("sandbox.db");
                SandboxNetwork::open(Some(path.clone()), config, clock)
                    .await
                    .with_context(|| format!("opening the sandbox world {}", path.display()))?
            }
            None => SandboxNetwork::open(None, config, clock).await.context("opening an empty sandbox in memory")?,
        };
        Ok(Arc::new(SandboxDriver { network }))
    }
}

/// Numbers on the built-in simulated network.
pub(super) struct SandboxDriver {
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

    fn open(&self, instance: &InstanceRecord, reported: &Arc<dyn ConnectorReports>) -> Option<Arc<dyn Connector>> {
        let phone = instance.phone.as_ref()?;
        self.network.listen(phone.clone(), instance.id, Arc::clone(reported));
        Some(Arc::new(self.network.connector(phone.clone())))
    }

    async fn close(&self, id: InstanceId) {
        self.network.stop_listening(id);
    }

    async fn forget(&self, id: InstanceId) -> Result<()> {
        self.network.stop_listening(id);
        Ok(())
    }

    async fn shutdown(&self) {}
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
