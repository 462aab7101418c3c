//! The kinds of connector Convene runs. A kind is registered once, in [`KINDS`]: its name, how people call it,
//! whether its numbers pair, its section of the configuration (its network's settings and its pacing default) and how
//! its network opens. Open, a kind is a [`ConnectorDriver`]: what the group service needs of it beyond the
//! `Connector` each instance gets. The service asks an instance's kind through [`Drivers`] and holds no network type
//! of its own.
//!
//! Adding a kind takes its crate, a module here with its registration and driver (and its section of the defaults),
//! and its entry in `KINDS`; the workspace's and this crate's `Cargo.toml` name the crate.

mod sandbox;
mod whatsapp;

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use anyhow::Context as _;
use async_trait::async_trait;
use convene_core::store::InstanceRecord;
use convene_core::{
    Clock, Connector, ConnectorKind, ConnectorReport, ConnectorReports, InstanceId, PacingPolicy, PhoneNumber,
    SecretBox, Store,
};
use convene_sandbox::SandboxNetwork;
use convene_whatsapp::WhatsappAccounts;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::Result;

/// Every kind this build has, in the order lists show them: the one place a kind is registered.
static KINDS: &[&dyn ConnectorRegistration] = &[&sandbox::Registration, &whatsapp::Registration];

/// A kind's section of the configuration, `[<kind>]`, as read.
pub type Section = figment::value::Value;

/// One kind of connector as this build registers it: what is known of it before its network opens, and how it opens.
#[async_trait]
pub(crate) trait ConnectorRegistration: Sync {
    fn kind(&self) -> ConnectorKind;

    /// The kind in people's words, as the console writes it ("sandbox", "WhatsApp").
    fn label(&self) -> &'static str;

    /// What the kind is, briefly, for someone choosing one ("the built-in simulated network").
    fn summary(&self) -> &'static str;

    /// Whether its instances are linked by pairing a phone (QR code or pairing code) rather than by naming a number.
    fn pairs(&self) -> bool;

    /// Its sections of the shipped defaults, commented: `[<kind>]` and `[<kind>.pacing]` at least.
    fn default_config(&self) -> &'static str;

    /// Checks its section (`pacing` taken out), saying what is wrong.
    fn check(&self, settings: &Section) -> std::result::Result<(), String>;

    /// Opens its network as `settings` (its section, `pacing` taken out) say, keeping its state where `keeping`
    /// says; with no `keeping`, a network that keeps nothing and reaches nothing. What the network reports goes to
    /// `reported`.
    async fn open(
        &self,
        settings: &Section,
        keeping: Option<&Keeping>,
        clock: &Arc<dyn Clock>,
        reported: &Arc<dyn ConnectorReports>,
    ) -> anyhow::Result<Arc<dyn ConnectorDriver>>;
}

/// Where a kind's network keeps its state: files in the data directory, rows in Convene's database (real numbers'
/// device keys), sealed with the server's key.
pub(crate) struct Keeping {
    pub data_dir: PathBuf,
    /// Convene's database: on PostgreSQL, where the sandbox keeps the world all nodes share.
    pub database_url: String,
    pub store: Arc<dyn Store>,
    pub sealer: Arc<SecretBox>,
}

/// What the group service needs of one kind of connector once its network is open.
#[async_trait]
pub(crate) trait ConnectorDriver: Send + Sync + Any {
    /// Checks the number a new instance of this kind asks for; the message says what is wrong with it.
    fn check_phone(&self, asked: &str) -> std::result::Result<PhoneNumber, String>;

    /// The number a new instance that asked for none gets now, or `None` when it learns it later (by pairing).
    async fn assign_phone(&self, store: &dyn Store) -> Result<Option<PhoneNumber>>;

    /// A new instance's name when its creator gave none.
    fn default_name(&self, phone: Option<&PhoneNumber>) -> String;

    /// Readies the network for these instances of this kind, in one go, before their connections open.
    async fn prepare(&self, instances: &[&InstanceRecord]);

    /// The instance's connection, reporting what the network tells it to `reported`; `None` when it cannot have one.
    fn open(&self, instance: &InstanceRecord, reported: &Arc<dyn ConnectorReports>) -> Option<Arc<dyn Connector>>;

    /// Closes the instance's connection in this process (another node runs it now); what the kind keeps of it stays.
    async fn close(&self, id: InstanceId);

    /// Forgets a deleted instance: stops hearing from it and removes what the kind keeps of it.
    async fn forget(&self, id: InstanceId) -> Result<()>;

    /// Ends every connection, flushing what the kind buffers (what it stores stays).
    async fn shutdown(&self);
}

/// Every kind this build has.
pub(crate) fn registrations() -> impl Iterator<Item = &'static dyn ConnectorRegistration> {
    KINDS.iter().copied()
}

/// The registration of `kind`, if this build has it.
pub(crate) fn registration(kind: ConnectorKind) -> Option<&'static dyn ConnectorRegistration> {
    registrations().find(|r| r.kind() == kind)
}

/// The kind this build has under `name`.
pub fn kind_named(name: &str) -> Option<ConnectorKind> {
    registrations().map(|r| r.kind()).find(|kind| kind.as_str() == name)
}

/// The names of the kinds this build has, in `KINDS`'s order.
pub fn kind_names() -> &'static [&'static str] {
    static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| registrations().map(|r| r.kind().as_str()).collect());
    &NAMES
}

/// The kinds' names as a sentence lists them: "`sandbox` or `whatsapp`".
pub fn kind_names_in_words() -> String {
    let quoted: Vec<String> = kind_names().iter().map(|name| format!("`{name}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What a request naming a kind this build does not have is told.
pub fn choose_a_kind() -> String {
    format!("choose {}", kind_names_in_words())
}

/// Every kind's sections of the shipped defaults, one after another.
pub(crate) fn default_sections() -> String {
    registrations().map(|r| format!("\n{}", r.default_config())).collect()
}

/// A kind's section split into its pacing default and the rest, its network's settings.
fn split_section(kind: ConnectorKind, section: &Section) -> std::result::Result<(PacingPolicy, Section), String> {
    let mut settings = section.as_dict().cloned().ok_or_else(|| format!("`{kind}` must be a table"))?;
    let pacing = settings.remove("pacing").ok_or_else(|| format!("{kind}.pacing is missing"))?;
    let pacing: PacingPolicy = pacing.deserialize().map_err(|e| format!("{kind}.pacing: {e}"))?;
    pacing.validate().map_err(|e| format!("{kind}.pacing: {e}"))?;
    Ok((pacing, Section::from(settings)))
}

/// Checks every kind's section in `sections` and refuses a section no kind of this build has.
pub(crate) fn check_sections(sections: &BTreeMap<String, Section>) -> std::result::Result<(), String> {
    if let Some(unknown) = sections.keys().find(|name| kind_named(name).is_none()) {
        return Err(format!("unknown key `{unknown}`"));
    }
    for registration in registrations() {
        let kind = registration.kind();
        let section = sections.get(kind.as_str()).ok_or_else(|| format!("the `{kind}` section is missing"))?;
        let (_, settings) = split_section(kind, section)?;
        registration.check(&settings).map_err(|e| format!("{kind}: {e}"))?;
    }
    Ok(())
}

/// Each kind's open network, with its pacing default.
struct OpenKind {
    kind: ConnectorKind,
    driver: Arc<dyn ConnectorDriver>,
    pacing: PacingPolicy,
}

/// Every kind's network, opened from the configuration before the service starts, and the channel their reports come
/// through.
pub struct Networks {
    kinds: Vec<OpenKind>,
    reported: Arc<dyn ConnectorReports>,
    reports: mpsc::UnboundedReceiver<(InstanceId, ConnectorReport)>,
}

impl Networks {
    /// Each kind's network as `config` says, keeping its state in the data directory (the sandbox's world) and in
    /// `store` (real numbers' device keys, sealed by `sealer`).
    pub async fn open(
        config: &Config,
        store: Arc<dyn Store>,
        sealer: Arc<SecretBox>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let keeping =
            Keeping { data_dir: config.data_dir.clone(), database_url: config.database_url.clone(), store, sealer };
        Self::open_in(config, Some(&keeping), clock).await
    }

    /// Each kind's network as `config` says, keeping nothing and reaching nothing: an empty sandbox in memory, real
    /// numbers that never connect.
    pub async fn in_memory(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::open_in(config, None, clock).await
    }

    /// `in_memory` with the shipped defaults.
    pub async fn offline(clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::in_memory(&Config::for_directory(Path::new("")), clock).await
    }

    async fn open_in(config: &Config, keeping: Option<&Keeping>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let (reported, reports) = crate::service::report_channel();
        let mut kinds = Vec::new();
        for registration in registrations() {
            let kind = registration.kind();
            let section = config.connectors.get(kind.as_str()).with_context(|| format!("no `{kind}` section"))?;
            let (pacing, settings) = split_section(kind, section).map_err(anyhow::Error::msg)?;
            let driver = registration
                .open(&settings, keeping, &clock, &reported)
                .await
                .with_context(|| format!("opening the `{kind}` network"))?;
            kinds.push(OpenKind { kind, driver, pacing });
        }
        Ok(Self { kinds, reported, reports })
    }

    /// The drivers, the sink the networks report to, and the reports.
    pub(crate) fn into_parts(
        self,
    ) -> (Drivers, Arc<dyn ConnectorReports>, mpsc::UnboundedReceiver<(InstanceId, ConnectorReport)>) {
        (Drivers { kinds: self.kinds }, self.reported, self.reports)
    }
}

/// Every kind's driver, as the service asks for them.
pub(crate) struct Drivers {
    kinds: Vec<OpenKind>,
}

impl Drivers {
    /// The driver of `kind`; `None` for a kind this build does not have (an instance a newer build made).
    pub fn of(&self, kind: ConnectorKind) -> Option<&dyn ConnectorDriver> {
        self.kinds.iter().find(|k| k.kind == kind).map(|k| k.driver.as_ref())
    }

    /// Every kind with its driver, in `KINDS`'s order.
    pub fn all(&self) -> impl Iterator<Item = (ConnectorKind, &dyn ConnectorDriver)> {
        self.kinds.iter().map(|k| (k.kind, k.driver.as_ref()))
    }

    /// The pacing of `kind`'s instances that set none of their own. A kind this build does not have gets a real
    /// number's, the safe one; it cannot create anyway.
    pub fn default_pacing(&self, kind: ConnectorKind) -> PacingPolicy {
        self.kinds.iter().find(|k| k.kind == kind).map_or(PacingPolicy::REAL_NUMBER, |k| k.pacing)
    }

    /// The driver of type `D`, for what one kind offers beyond the service (the sandbox's control API).
    fn typed<D: ConnectorDriver>(&self) -> Option<&D> {
        self.kinds.iter().find_map(|k| (k.driver.as_ref() as &dyn Any).downcast_ref::<D>())
    }

    /// The simulated network, which every build has: its control API (`/v1/sandbox`) and the bootstrap instance.
    pub fn sandbox(&self) -> &Arc<SandboxNetwork> {
        &self.typed::<sandbox::SandboxDriver>().expect("the sandbox kind is registered").network
    }

    /// Real numbers' sessions (tests reach `WhatsappAccounts::simulate` through here).
    pub fn whatsapp(&self) -> &Arc<WhatsappAccounts> {
        &self.typed::<whatsapp::WhatsappDriver>().expect("the whatsapp kind is registered").accounts
    }
}

#[cfg(test)]
mod tests {
    use convene_core::SystemClock;

    use super::*;

    #[test]
    fn every_kind_has_a_well_formed_name_of_its_own_and_a_section_in_the_defaults() {
        let names = kind_names();
        assert!(names.starts_with(&["sandbox", "whatsapp"]), "{names:?}");
        for name in names {
            assert_eq!(ConnectorKind::named(name).map(ConnectorKind::as_str), Some(*name), "a name a store can hold");
            assert_eq!(names.iter().filter(|other| *other == name).count(), 1, "{name} is registered once");
        }
        let config = Config::for_directory(Path::new("data"));
        let mut sections: Vec<&str> = config.connectors.keys().map(String::as_str).collect();
        sections.sort_unstable();
        let mut expected = names.to_vec();
        expected.sort_unstable();
        assert_eq!(sections, expected, "one section per kind");
        check_sections(&config.connectors).unwrap();
    }

    #[tokio::test]
    async fn each_kinds_pacing_default_is_the_one_its_section_gives() {
        // Arrange: the sandbox paced, real numbers without a daily cap.
        let mut config = Config::for_directory(Path::new("data"));
        let sandbox = PacingPolicy { min_interval_secs: 7, burst: 2, daily_cap: Some(9) };
        let whatsapp = PacingPolicy { min_interval_secs: 600, burst: 1, daily_cap: None };
        config.set("sandbox.pacing", sandbox).unwrap();
        config.set("whatsapp.pacing", whatsapp).unwrap();

        // Act
        let (drivers, _, _) = Networks::in_memory(&config, Arc::new(SystemClock)).await.unwrap().into_parts();

        // Assert: a kind this build does not have gets a real number's, the safe one.
        assert_eq!(drivers.default_pacing(convene_sandbox::KIND), sandbox);
        assert_eq!(drivers.default_pacing(convene_whatsapp::KIND), whatsapp);
        assert_eq!(drivers.default_pacing(ConnectorKind::new("cloud")), PacingPolicy::REAL_NUMBER);
        assert!(drivers.of(ConnectorKind::new("cloud")).is_none());
    }

    #[test]
    fn a_section_is_checked_by_its_kind_and_one_no_kind_has_is_refused() {
        let mut config = Config::for_directory(Path::new("data"));
        let bad_fault = config.set("sandbox.faults.error_rate", 2.0).unwrap_err().to_string();
        assert!(bad_fault.contains("sandbox: faults:"), "{bad_fault}");
        let bad_pacing = config.set("whatsapp.pacing.burst", 0).unwrap_err().to_string();
        assert!(bad_pacing.contains("whatsapp.pacing: burst must be at least 1"), "{bad_pacing}");
        let unknown = config.set("whatsapp.dial", true).unwrap_err().to_string();
        assert!(unknown.contains("whatsapp: unknown field: found `dial`"), "{unknown}");
        let mut sections = config.connectors.clone();
        sections.insert("cloud".into(), sections["whatsapp"].clone());
        assert_eq!(check_sections(&sections).unwrap_err(), "unknown key `cloud`");
    }
}
