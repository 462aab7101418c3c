//! Real numbers, over WhatsApp Web multi-device (whatsapp-rust, inside `convene-whatsapp`).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use convene_core::store::InstanceRecord;
use convene_core::{Clock, Connector, ConnectorKind, ConnectorReports, DeviceKeyStore, InstanceId, PhoneNumber, Store};
use convene_whatsapp::{KeyStorage, WhatsappAccounts, WhatsappConfig};
use serde::Deserialize;

use super::{ConnectorDriver, ConnectorRegistration, Keeping, Section};
use crate::error::Result;

pub(super) struct Registration;

/// The `[whatsapp]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatsappSettings {
    /// Connect `whatsapp` instances to WhatsApp. Off, their stored state is loaded but nothing is dialled.
    connect: bool,
}

#[async_trait]
impl ConnectorRegistration for Registration {
    fn kind(&self) -> ConnectorKind {
        convene_whatsapp::KIND
    }

    fn label(&self) -> &'static str {
        "WhatsApp"
    }

    fn summary(&self) -> &'static str {
        "a real number: pair it on its page"
    }

    fn pairs(&self) -> bool {
        true
    }

    fn default_config(&self) -> &'static str {
        include_str!("whatsapp.toml")
    }

    fn check(&self, settings: &Section) -> std::result::Result<(), String> {
        settings.deserialize::<WhatsappSettings>().map(drop).map_err(|e| e.to_string())
    }

    /// Each number's device keys are rows in Convene's database; an earlier version's file of them under
    /// `whatsapp/` in the data directory is imported on the number's first start.
    async fn open(
        &self,
        settings: &Section,
        keeping: Option<&Keeping>,
        clock: &Arc<dyn Clock>,
        reported: &Arc<dyn ConnectorReports>,
    ) -> anyhow::Result<Arc<dyn ConnectorDriver>> {
        let settings: WhatsappSettings = settings.deserialize()?;
        let (config, storage) = match keeping {
            Some(keeping) => (
                WhatsappConfig { data_dir: keeping.data_dir.join("whatsapp"), connect: settings.connect },
                Some(KeyStorage {
                    store: Arc::clone(&keeping.store) as Arc<dyn DeviceKeyStore>,
                    sealer: Arc::clone(&keeping.sealer),
                }),
            ),
            None => (WhatsappConfig { data_dir: PathBuf::new(), connect: false }, None),
        };
        let accounts = WhatsappAccounts::new(config, storage, Arc::clone(clock), Arc::clone(reported));
        Ok(Arc::new(WhatsappDriver { accounts }))
    }
}

/// Real numbers, over WhatsApp Web multi-device.
pub(super) struct WhatsappDriver {
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
    fn open(&self, instance: &InstanceRecord, _reported: &Arc<dyn ConnectorReports>) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(self.accounts.open(instance.id)))
    }

    /// Stops the session; its keys stay, for the node that runs the number now.
    async fn close(&self, id: InstanceId) {
        self.accounts.close(id).await;
    }

    /// Unlinks the number and deletes its keys.
    async fn forget(&self, id: InstanceId) -> Result<()> {
        Ok(self.accounts.remove(id).await?)
    }

    async fn shutdown(&self) {
        self.accounts.shutdown().await;
    }
}
