//! Real WhatsApp numbers behind Convene's `Connector` port, through the WhatsApp Web multi-device protocol
//! (the whatsapp-rust crate). Every whatsapp-rust import in Convene lives in this crate, so an upgrade of the library
//! touches only here.
//!
//! Each instance keeps its device state (keys, sessions) in its own SQLite file, `<data_dir>/<instance id>.db`:
//! a restart reuses it without pairing again, and logging out deletes it.
#![forbid(unsafe_code)]

mod account;
mod connector;
mod create;
mod mapping;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use convene_core::{Clock, ConnectorEvents, InstanceId};

use crate::account::Account;
pub use crate::connector::WhatsappConnector;

/// Where device state lives and whether to dial WhatsApp.
#[derive(Clone, Debug)]
pub struct WhatsappConfig {
    pub data_dir: PathBuf,
    /// `false` loads every instance's stored state without connecting (maintenance, tests, measurements).
    pub connect: bool,
}

/// The process's WhatsApp accounts, one per `whatsapp` instance.
pub struct WhatsappAccounts {
    config: WhatsappConfig,
    clock: Arc<dyn Clock>,
    events: Arc<dyn ConnectorEvents>,
    accounts: Mutex<HashMap<InstanceId, Arc<Account>>>,
}

impl WhatsappAccounts {
    pub fn new(config: WhatsappConfig, clock: Arc<dyn Clock>, events: Arc<dyn ConnectorEvents>) -> Arc<Self> {
        Arc::new(Self { config, clock, events, accounts: Mutex::default() })
    }

    pub fn config(&self) -> &WhatsappConfig {
        &self.config
    }

    /// The instance's connector. The session starts in the background (state `starting` until it has).
    pub fn open(&self, id: InstanceId) -> WhatsappConnector {
        let account = {
            let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(accounts.entry(id).or_insert_with(|| {
                Arc::new(Account::new(
                    id,
                    self.config.data_dir.join(format!("{id}.db")),
                    self.config.connect,
                    Arc::clone(&self.clock),
                    Arc::clone(&self.events),
                ))
            }))
        };
        let starting = Arc::clone(&account);
        tokio::spawn(async move {
            if let Err(e) = starting.start().await {
                tracing::error!(instance = %starting.id, "{e}");
            }
        });
        WhatsappConnector { account }
    }

    /// Opens the instance's session and waits until its stored state is loaded (for callers that need it ready).
    pub async fn open_and_wait(&self, id: InstanceId) -> Result<WhatsappConnector, String> {
        let connector = self.open(id);
        connector.account.start().await?;
        Ok(connector)
    }

    /// Stops the instance's session and deletes its keys (the instance is being deleted).
    pub async fn remove(&self, id: InstanceId) -> Result<(), convene_core::ConnectorError> {
        let account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        if let Some(account) = account {
            if let Some(client) = account.client()
                && client.is_logged_in()
            {
                client.logout().await;
            }
            account.stop().await;
            account.forget_keys()?;
        }
        Ok(())
    }

    /// Stops every session, flushing what the library buffers; the stored state stays.
    pub async fn shutdown(&self) {
        let accounts: Vec<Arc<Account>> =
            self.accounts.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for account in accounts {
            account.stop().await;
        }
    }
}

impl WhatsappConnector {
    /// Where this instance's device state is stored.
    pub fn device_store(&self) -> &std::path::Path {
        self.account.db_path()
    }
}

#[cfg(test)]
mod tests;
