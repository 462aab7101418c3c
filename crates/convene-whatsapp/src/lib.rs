//! Real WhatsApp numbers behind Convene's `Connector` port, through the WhatsApp Web multi-device protocol
//! (the whatsapp-rust crate). Every whatsapp-rust import in Convene lives in this crate, so an upgrade of the library
//! touches only here.
//!
//! Each instance keeps its device state (keys, sessions) in Convene's database, sealed with the server's key
//! (`DeviceKeys`): a restart, or another node taking the number over, reuses it without pairing again, and logging
//! out deletes it. Earlier versions kept it in a SQLite file per number, `<data_dir>/<instance id>.db`, imported on
//! the number's first start (`import`).
#![forbid(unsafe_code)]

mod account;
mod connector;
mod create;
mod dial;
mod import;
mod keys;
mod mapping;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use convene_core::{Clock, ConnectorReports, DeviceKeyStore, InstanceId, SecretBox};

use crate::account::Account;
pub use crate::connector::WhatsappConnector;
pub use crate::keys::DeviceKeys;

/// Real numbers over WhatsApp Web multi-device.
pub const KIND: convene_core::ConnectorKind = convene_core::ConnectorKind::new("whatsapp");

/// Where earlier versions kept device state, and whether to dial WhatsApp.
#[derive(Clone, Debug)]
pub struct WhatsappConfig {
    /// Where each number's SQLite file of an earlier version is looked for, to be imported.
    pub data_dir: PathBuf,
    /// `false` loads every instance's stored state without connecting (maintenance, tests, measurements).
    pub connect: bool,
}

/// Where the accounts keep their device keys: Convene's database, sealed with the server's key.
#[derive(Clone)]
pub struct KeyStorage {
    pub store: Arc<dyn DeviceKeyStore>,
    pub sealer: Arc<SecretBox>,
}

/// The process's WhatsApp accounts, one per `whatsapp` instance.
pub struct WhatsappAccounts {
    config: WhatsappConfig,
    /// `None`: device keys live in memory only, for this process (tests, measurements).
    storage: Option<KeyStorage>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn ConnectorReports>,
    accounts: Mutex<HashMap<InstanceId, Arc<Account>>>,
}

impl WhatsappAccounts {
    pub fn new(
        config: WhatsappConfig,
        storage: Option<KeyStorage>,
        clock: Arc<dyn Clock>,
        events: Arc<dyn ConnectorReports>,
    ) -> Arc<Self> {
        Arc::new(Self { config, storage, clock, events, accounts: Mutex::default() })
    }

    pub fn config(&self) -> &WhatsappConfig {
        &self.config
    }

    /// The instance's connector. The session starts in the background (state `starting` until it has).
    pub fn open(&self, id: InstanceId) -> WhatsappConnector {
        let account = {
            let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(accounts.entry(id).or_insert_with(|| Arc::new(self.new_account(id))))
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

    /// The instance's account, not started.
    fn new_account(&self, id: InstanceId) -> Account {
        let keeping = match &self.storage {
            Some(storage) => account::Keeping::Database {
                storage: storage.clone(),
                legacy_file: self.config.data_dir.join(format!("{id}.db")),
            },
            None => account::Keeping::Memory,
        };
        Account::new(id, keeping, self.config.connect, Arc::clone(&self.clock), Arc::clone(&self.events))
    }

    /// Stops the instance's session, unlinks it from the phone and deletes its keys (the instance is being deleted).
    /// An instance with no session in this process (another node ran it) has its keys deleted all the same.
    pub async fn remove(&self, id: InstanceId) -> Result<(), convene_core::ConnectorError> {
        let account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        match account {
            Some(account) => {
                account.retire();
                account.unlink().await
            }
            None => self.new_account(id).forget_keys().await,
        }
    }

    /// Stops the instance's session, flushing what the library buffers; its stored state stays (another node runs
    /// the number now, from the same keys).
    pub async fn close(&self, id: InstanceId) {
        let account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        if let Some(account) = account {
            account.retire();
            account.stop().await;
        }
    }

    /// Stops every session, flushing what the library buffers; the stored state stays.
    pub async fn shutdown(&self) {
        // Out of the map, as `close` does: an `open` afterwards gets an account of its own, not a retired one.
        let accounts: Vec<Arc<Account>> =
            self.accounts.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, account)| account).collect();
        for account in accounts {
            account.retire();
            account.stop().await;
        }
    }
}

/// What WhatsApp can report to an account, for exercising Convene without a real number.
#[derive(Clone, Debug)]
pub enum SimulatedEvent {
    /// WhatsApp sent a pairing reference: a QR code valid for `valid_for`.
    Qr {
        code: String,
        valid_for: std::time::Duration,
    },
    /// The phone scanned the code (or typed the phone code) and linked this number.
    Paired {
        phone: convene_core::PhoneNumber,
    },
    Connected,
    Disconnected,
    /// Code 103: the number created too many groups.
    TemporaryBan {
        lasting: std::time::Duration,
    },
    /// The phone unlinked the device.
    LoggedOut,
}

impl WhatsappAccounts {
    /// Links the instance to `phone` as a phone scanning its code would: the library's pairing writes the linked
    /// device into the stored keys, then reports it (`SimulatedEvent::Paired`). The running session keeps the device
    /// it loaded; the next start, in this process or on another node, loads the linked one without pairing.
    pub async fn simulate_pairing(&self, id: InstanceId, phone: &convene_core::PhoneNumber) -> Result<(), String> {
        let account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
        let account = account.ok_or_else(|| format!("instance {id} is not a whatsapp instance"))?;
        account.start().await?;
        account.write_linked_number(phone).await?;
        self.simulate(id, SimulatedEvent::Paired { phone: phone.clone() })
    }

    /// Delivers `event` to the instance's account as the library would deliver WhatsApp's report, through the same
    /// handling. Offline tests use it to pair, connect and ban an instance; nothing is sent to WhatsApp.
    pub fn simulate(&self, id: InstanceId, event: SimulatedEvent) -> Result<(), String> {
        use whatsapp_rust::types::events as ev;
        let account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
        let account = account.ok_or_else(|| format!("instance {id} is not a whatsapp instance"))?;
        let event = match event {
            SimulatedEvent::Qr { code, valid_for } => {
                ev::Event::PairingQrCode(ev::PairingQrCode::builder().code(code).timeout(valid_for).build())
            }
            SimulatedEvent::Paired { phone } => ev::Event::PairSuccess(
                ev::PairSuccess::builder()
                    .id(whatsapp_rust::Jid::pn(phone.digits()))
                    .lid(whatsapp_rust::Jid::new("0", whatsapp_rust::Server::Lid))
                    .business_name(String::new())
                    .platform("smba".to_owned())
                    .build(),
            ),
            SimulatedEvent::Connected => ev::Event::Connected(ev::Connected::builder().build()),
            SimulatedEvent::Disconnected => ev::Event::Disconnected(
                ev::Disconnected::builder().reason(whatsapp_rust::transport::DisconnectReason::StreamEnded).build(),
            ),
            SimulatedEvent::TemporaryBan { lasting } => ev::Event::TemporaryBan(
                ev::TemporaryBan::builder()
                    .code(ev::TempBanReason::from(103))
                    .expire(whatsapp_rust::wacore::chrono::TimeDelta::from_std(lasting).map_err(|e| e.to_string())?)
                    .build(),
            ),
            SimulatedEvent::LoggedOut => ev::Event::LoggedOut(
                ev::LoggedOut::builder().on_connect(false).reason(ev::ConnectFailureReason::LoggedOut).build(),
            ),
        };
        account.handle_event(&event);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
