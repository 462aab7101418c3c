//! One WhatsApp account: its session (a whatsapp-rust `Bot` on the instance's device keys), its state as the
//! library's events tell it, and the pairing in progress.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use convene_core::{
    Clock, ConnectorError, ConnectorReport, ConnectorReports, InstanceId, InstanceState, PairingCode, PhoneNumber,
};
use whatsapp_rust::Client;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::http::UreqHttpClient;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust::wacore::store::traits::Backend;

use crate::dial::{Dial, LOOK_EVERY, Look, WatchedHttp, WatchedTransport, judge};
use crate::keys::DeviceKeys;
use crate::{KeyStorage, import, mapping};

/// What the account knows of itself between library events.
#[derive(Debug)]
struct Status {
    state: InstanceState,
    qr: Option<PairingCode>,
}

/// The running session, once the stored device state has been loaded.
enum Session {
    /// Built and connecting (or reconnecting) on its own, with the watchdog that reports failed attempts.
    Running(BotHandle, tokio::task::JoinHandle<()>),
    /// Built with the stored state and not connected (`whatsapp.connect = false`).
    Idle(Bot),
}

/// Where an account's device keys are kept.
pub(crate) enum Keeping {
    /// In Convene's database. `legacy_file` is where an earlier version kept them: imported on the first start.
    Database { storage: KeyStorage, legacy_file: PathBuf },
    /// In memory, for this session only.
    Memory,
}

pub(crate) struct Account {
    pub(crate) id: InstanceId,
    keeping: Keeping,
    connect: bool,
    clock: Arc<dyn Clock>,
    events: Arc<dyn ConnectorReports>,
    status: Mutex<Status>,
    /// The running session. Its lock is held while a session starts, while one stops (to the library's last flush),
    /// and from unlinking a device to deleting its keys (on logout, to the new session's start), so that no start
    /// comes in between.
    session: tokio::sync::Mutex<Option<Session>>,
    /// Set once the account is closed, removed or shut down here: a start waiting meanwhile, or asked for later,
    /// does nothing.
    retired: AtomicBool,
    /// The client, readable without waiting on `session`.
    client: Mutex<Option<Arc<Client>>>,
    /// Set while we unlink the device ourselves, so the library's `LoggedOut` for it does not start a new session.
    unlinking: AtomicBool,
    /// The running session's connection attempts.
    dial: Mutex<Option<Arc<Dial>>>,
    /// The running session's device keys (`Keeping::Database`): each session gets its own, closed when it stops so
    /// that its late writes can neither bring deleted keys back nor mix with the next session's.
    keys: Mutex<Option<Arc<DeviceKeys>>>,
}

impl Account {
    pub(crate) fn new(
        id: InstanceId,
        keeping: Keeping,
        connect: bool,
        clock: Arc<dyn Clock>,
        events: Arc<dyn ConnectorReports>,
    ) -> Self {
        Self {
            id,
            keeping,
            connect,
            clock,
            events,
            status: Mutex::new(Status { state: InstanceState::Starting, qr: None }),
            session: tokio::sync::Mutex::default(),
            retired: AtomicBool::new(false),
            client: Mutex::default(),
            unlinking: AtomicBool::new(false),
            dial: Mutex::default(),
            keys: Mutex::default(),
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> InstanceState {
        self.status().state.clone()
    }

    pub(crate) fn qr(&self) -> Option<PairingCode> {
        let status = self.status();
        status.qr.clone().filter(|qr| qr.expires_at > self.clock.now())
    }

    fn set_state(&self, state: InstanceState) {
        self.update_state(|_| Some(state));
    }

    /// Moves to the state `next` picks from the current one (`None`: stays), deciding under the lock so that a
    /// library event cannot slip in between, and reports the change when it is news.
    fn update_state(&self, next: impl FnOnce(&InstanceState) -> Option<InstanceState>) {
        let mut status = self.status();
        let Some(state) = next(&status.state) else { return };
        if !matches!(state, InstanceState::Pairing) {
            status.qr = None;
        }
        let report = status.state.reports_change_to(&state);
        status.state = state.clone();
        if report {
            self.events.report(self.id, ConnectorReport::StateChanged(state));
        }
    }

    fn dial(&self) -> Option<Arc<Dial>> {
        self.dial.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Watches the session's connection attempts until the session stops: a failed or unanswered attempt makes the
    /// number `unreachable`. It looks again every [`LOOK_EVERY`] only while an attempt is unresolved.
    fn watch(self: &Arc<Self>, dial: Arc<Dial>) -> tokio::task::JoinHandle<()> {
        let account = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ended = None;
            loop {
                let Some(account) = account.upgrade() else { return };
                let settled = account.look(&dial, &mut ended);
                drop(account);
                if settled {
                    dial.changed().await;
                } else {
                    tokio::select! {
                        () = dial.changed() => {}
                        () = tokio::time::sleep(LOOK_EVERY) => {}
                    }
                }
            }
        })
    }

    /// One look at the current attempt; `ended` keeps when an attempt was first seen over. Returns whether
    /// nothing can change before the next wake-up.
    fn look(&self, dial: &Dial, ended: &mut Option<(Option<u64>, convene_core::Timestamp)>) -> bool {
        let attempt = dial.attempt();
        let failures = dial.failures();
        let now = self.clock.now();
        if failures > attempt.failures_before && ended.is_none_or(|(id, _)| id != attempt.id) {
            *ended = Some((attempt.id, now));
        }
        let ended_at = ended.filter(|(id, _)| *id == attempt.id).map(|(_, at)| at);
        let waited = attempt.started.map_or(Duration::ZERO, |s| s.elapsed());
        let mut settled = true;
        self.update_state(|state| {
            let look = Look { state, attempt: &attempt, failures, now, waited, ended_at };
            settled = look.settled();
            judge(&look)
        });
        settled
    }

    /// Opens the stored device state (a new device when there is none) and starts the session, unless one runs or
    /// the account is retired.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), String> {
        let mut session = self.session.lock().await;
        self.start_locked(&mut session).await
    }

    /// [`Account::start`], for a caller that holds the session's lock.
    async fn start_locked(self: &Arc<Self>, session: &mut Option<Session>) -> Result<(), String> {
        if session.is_some() || self.retired.load(Ordering::SeqCst) {
            return Ok(());
        }
        let backend: Arc<dyn Backend> = match &self.keeping {
            Keeping::Database { storage, legacy_file } => {
                let keys = Arc::new(DeviceKeys::new(Arc::clone(&storage.store), Arc::clone(&storage.sealer), self.id));
                import::import(legacy_file, &keys).await?;
                *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&keys));
                keys as Arc<dyn Backend>
            }
            Keeping::Memory => Arc::new(InMemoryBackend::new()),
        };
        let account = Arc::downgrade(self);
        let dial = Arc::new(Dial::default());
        let bot = Bot::builder()
            .with_backend_arc(backend)
            .with_transport_factory(WatchedTransport {
                inner: TokioWebSocketTransportFactory::new(),
                dial: Arc::clone(&dial),
            })
            .with_http_client(WatchedHttp { inner: UreqHttpClient::new(), dial: Arc::clone(&dial) })
            .skip_history_sync()
            .on_event(move |event, _client| {
                if let Some(account) = account.upgrade() {
                    account.handle_event(&event);
                }
                async {}
            })
            .build()
            .await
            .map_err(|e| format!("cannot start the WhatsApp session: {e}"))?;
        let client = bot.client();
        dial.attach(&client);
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&client));
        *self.dial.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&dial));
        if self.connect {
            // Until WhatsApp answers: a QR code for a new device, a login for a linked one; or the watchdog's word.
            self.set_state(InstanceState::Connecting);
            *session = Some(Session::Running(bot.spawn(), self.watch(dial)));
        } else {
            *session = Some(Session::Idle(bot));
            self.set_state(InstanceState::Disconnected);
        }
        Ok(())
    }

    /// Stops the session; the stored state stays, and the session's keys take no more writes.
    pub(crate) async fn stop(&self) {
        let mut session = self.session.lock().await;
        self.stop_locked(&mut session).await;
    }

    /// Keeps every start from now on, and any waiting, from running a session here: the account is closed, removed or
    /// shut down.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// [`Account::stop`], for a caller that holds the session's lock.
    async fn stop_locked(&self, session: &mut Option<Session>) {
        let session = session.take();
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.dial.lock().unwrap_or_else(PoisonError::into_inner) = None;
        match session {
            Some(Session::Running(handle, watchdog)) => {
                watchdog.abort();
                handle.shutdown().await;
            }
            Some(Session::Idle(bot)) => drop(bot),
            None => {}
        }
        // After the library's last flush: a stopped session writes nothing more (a task of the library that
        // outlives it would otherwise write after the keys are deleted, or beside the next session's).
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(keys) = keys {
            keys.close().await;
        }
    }

    /// Unlinks the device, deletes its keys and starts over with a new device (a new pairing).
    pub(crate) async fn logout(self: &Arc<Self>) -> Result<(), ConnectorError> {
        let mut session = self.session.lock().await;
        self.unlink_locked(&mut session).await?;
        self.set_state(InstanceState::LoggedOut);
        self.start_locked(&mut session).await.map_err(ConnectorError::Other)
    }

    /// Tells WhatsApp to unlink the device (when it can), stops the session and deletes the keys.
    pub(crate) async fn unlink(&self) -> Result<(), ConnectorError> {
        let mut session = self.session.lock().await;
        self.unlink_locked(&mut session).await
    }

    /// [`Account::unlink`], for a caller that holds the session's lock: a start let in before the keys are deleted
    /// (`open`'s, which runs in the background) would load them, and its session would run on the old identity.
    async fn unlink_locked(&self, session: &mut Option<Session>) -> Result<(), ConnectorError> {
        self.unlinking.store(true, Ordering::SeqCst);
        if let Some(client) = self.client() {
            client.logout().await;
        }
        self.stop_locked(session).await;
        let forgotten = self.forget_keys().await;
        self.unlinking.store(false, Ordering::SeqCst);
        forgotten
    }

    /// Deletes the device's keys, and an earlier version's file of them or its imported backup: the keys are gone.
    /// Called with the session stopped and its lock held (or on an account never started), so that nothing of it
    /// writes them again and no start loads them meanwhile.
    pub(crate) async fn forget_keys(&self) -> Result<(), ConnectorError> {
        let Keeping::Database { storage, legacy_file } = &self.keeping else { return Ok(()) };
        let forgotten = storage.store.forget_device_keys(self.id).await;
        forgotten.map_err(|e| ConnectorError::Other(format!("cannot delete the device keys: {e}")))?;
        let backup = import::imported_name(legacy_file);
        for path in import::with_side_files(legacy_file).into_iter().chain(import::with_side_files(&backup)) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ConnectorError::Other(format!("cannot delete {}: {e}", path.display()))),
            }
        }
        Ok(())
    }

    /// The connected client, or why there is none. Fails fast: nothing waits for a connection.
    pub(crate) fn connected_client(&self) -> Result<Arc<Client>, ConnectorError> {
        let state = self.state();
        if let InstanceState::TemporarilyBanned { until } = state {
            return Err(ConnectorError::TemporarilyBanned { until });
        }
        let client = self.client.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match client {
            Some(c) if c.is_connected() && c.is_logged_in() => Ok(c),
            // The library's own view wins: a `connected` state with the socket just gone is down all the same.
            _ => Err(ConnectorError::NotConnected(
                state.not_connected_reason().unwrap_or_else(|| "the connection to WhatsApp is down".to_owned()),
            )),
        }
    }

    pub(crate) fn client(&self) -> Option<Arc<Client>> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Writes `phone` as the linked number into the stored device, as the library does when a phone links it. The
    /// running session keeps the device it loaded; the next one (here or on another node) loads the linked device.
    pub(crate) async fn write_linked_number(&self, phone: &PhoneNumber) -> Result<(), String> {
        use whatsapp_rust::wacore::store::traits::DeviceStore as _;
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let keys = keys.ok_or("the session keeps its device in memory only, or has not started")?;
        let mut device = keys.load().await.map_err(|e| e.to_string())?.ok_or("no device yet")?;
        device.pn = Some(whatsapp_rust::Jid::pn(phone.digits()));
        keys.save(&device).await.map_err(|e| e.to_string())
    }

    pub(crate) fn own_number(&self) -> Option<PhoneNumber> {
        self.client().and_then(|c| c.pn()).and_then(|jid| mapping::phone_of(&jid))
    }

    /// The library's events as Convene's state and events.
    pub(crate) fn handle_event(self: &Arc<Self>, event: &Event) {
        match event {
            Event::PairingQrCode(qr) => {
                self.reached_whatsapp();
                let expires_at = self.clock.now().plus(qr.timeout);
                let code = PairingCode { code: qr.code.clone(), expires_at };
                self.status().qr = Some(code.clone());
                self.set_state(InstanceState::Pairing);
                self.events.report(self.id, ConnectorReport::QrReady(code));
            }
            Event::PairSuccess(paired) => {
                if let Some(phone) = mapping::phone_of(&paired.id) {
                    self.events.report(self.id, ConnectorReport::Paired { phone });
                }
            }
            Event::Connected(_) => {
                self.reached_whatsapp();
                self.set_state(InstanceState::Connected);
            }
            Event::Disconnected(_) | Event::ConnectFailure(_) | Event::StreamReplaced(_) | Event::ClientOutdated(_) => {
                if !matches!(self.state(), InstanceState::LoggedOut | InstanceState::TemporarilyBanned { .. }) {
                    self.set_state(InstanceState::Disconnected);
                }
                if let Event::ClientOutdated(_) = event {
                    tracing::error!(instance = %self.id, "WhatsApp says this client is outdated: upgrade Convene");
                }
            }
            Event::TemporaryBan(ban) => {
                // `expire` is a duration (chrono), not a deadline.
                let until = self.clock.now().plus(ban.expire.to_std().unwrap_or_default());
                tracing::warn!(instance = %self.id, code = ?ban.code, until = %until, "WhatsApp temporarily banned this number");
                self.set_state(InstanceState::TemporarilyBanned { until: Some(until) });
            }
            Event::LoggedOut(_) => {
                self.set_state(InstanceState::LoggedOut);
                if self.unlinking.load(Ordering::SeqCst) {
                    return;
                }
                // The phone unlinked this device: its keys are useless. Start a fresh pairing off this task.
                let account = Arc::clone(self);
                tokio::spawn(async move {
                    let mut session = account.session.lock().await;
                    account.stop_locked(&mut session).await;
                    // With the keys still there, a new session would come up as the identity just unlinked.
                    let started = match account.forget_keys().await {
                        Ok(()) => account.start_locked(&mut session).await,
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = started {
                        tracing::error!(instance = %account.id, "{e}");
                    }
                });
            }
            Event::GroupUpdate(update) => {
                let by = update.participant_pn.as_ref().or(update.participant.as_ref()).and_then(mapping::phone_of);
                let (Ok(group), Some(change)) =
                    (mapping::group_jid(&update.group_jid), mapping::group_change(&update.action, by.as_ref()))
                else {
                    return;
                };
                self.events.report(self.id, ConnectorReport::Group { group, change, by });
            }
            _ => {}
        }
    }

    /// WhatsApp answered the current attempt: what fails from here on is not a failed connection.
    fn reached_whatsapp(&self) {
        if let Some(dial) = self.dial() {
            dial.reached();
        }
    }

    /// A pairing code for `phone` (WhatsApp > Linked devices > Link with phone number).
    pub(crate) async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<PairingCode, ConnectorError> {
        let client = self.client().ok_or_else(|| ConnectorError::NotConnected("the session is starting".into()))?;
        if client.pn().is_some() {
            return Err(ConnectorError::Unsupported("this instance is already paired; log out first".into()));
        }
        if !client.is_connected() {
            return Err(ConnectorError::NotConnected(
                "not connected to WhatsApp yet; a pairing code needs the connection".into(),
            ));
        }
        let options =
            whatsapp_rust::pair_code::PairCodeOptions { phone_number: phone.digits().to_owned(), ..Default::default() };
        let code = client.pair_with_code(options).await.map_err(|e| ConnectorError::Rejected {
            code: 400,
            text: format!("WhatsApp refused the pairing code: {e}"),
        })?;
        // WhatsApp keeps a phone code valid for about three minutes.
        Ok(PairingCode { code, expires_at: self.clock.now().plus(Duration::from_secs(180)) })
    }
}
