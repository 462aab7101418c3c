//! Configuration in layers: the shipped defaults, then an optional file, then `CONVENE_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::connectors;
use crate::service::CreationConfig;

/// The defaults, with a comment on every key, each kind of connector's sections last; `convene config default`
/// prints them.
pub fn default_config() -> &'static str {
    static DEFAULTS: LazyLock<String> =
        LazyLock::new(|| format!("{}{}", include_str!("../../../config.default.toml"), connectors::default_sections()));
    &DEFAULTS
}

/// Unknown keys are refused: those of a section by its type, those at the top by `validate` (the kinds' sections
/// are gathered in `connectors`, which takes any key).
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// `sqlite://<file>` (created if missing) or `postgres://user@host/database`.
    pub database_url: String,
    /// Directory for the sandbox world file and other local state.
    pub data_dir: PathBuf,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Create a sandbox instance on the first start.
    pub bootstrap_sandbox_instance: bool,
    /// Pacing defaults and the retries of queued group creation.
    pub creation: CreationConfig,
    /// The background worker that runs queued creations.
    pub worker: WorkerConfig,
    /// Webhook delivery: retries, timeouts, outbound safety, the key that seals secrets.
    pub webhooks: crate::delivery::WebhookConfig,
    /// The server's log (`logging`: `CONVENE_LOG` is the level filter).
    pub logging: LogConfig,
    /// Several nodes on one PostgreSQL database: the node's id and how long its hold on a number lasts.
    pub cluster: crate::cluster::ClusterConfig,
    /// Each kind of connector's section, by the kind's name (`[sandbox]`, `[whatsapp]`): its network's settings and
    /// its `pacing` default, read by the kind (`connectors`).
    #[serde(flatten)]
    pub connectors: BTreeMap<String, connectors::Section>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run queued jobs in this process.
    pub enabled: bool,
    /// How often to look for due jobs when nothing wakes the worker, in milliseconds.
    pub poll_ms: u64,
}

impl Config {
    /// The top-level keys besides the kinds' sections, as the environment may name them.
    const KEYS: [&'static str; 10] = [
        "listen",
        "database_url",
        "data_dir",
        "max_body_bytes",
        "bootstrap_sandbox_instance",
        "creation",
        "worker",
        "webhooks",
        "logging",
        "cluster",
    ];

    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Toml::string(default_config()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables naming a configuration key: others (CONVENE_LOG, CONVENE_CONFIG, a test's own) are not
        // configuration, and a file with an unknown key is still refused.
        let env = Env::prefixed("CONVENE_").filter(|key| Self::configures(key.as_str())).split("__");
        Self::load_from(figment.merge(env))
    }

    /// Whether the variable `CONVENE_<key>` sets configuration: its first part names a top-level key or a kind's
    /// section (`SANDBOX__SEED`, `WHATSAPP__PACING__DAILY_CAP`).
    fn configures(key: &str) -> bool {
        let top = key.split("__").next().unwrap_or_default();
        Self::KEYS.iter().chain(connectors::kind_names()).any(|k| k.eq_ignore_ascii_case(top))
    }

    /// The seam tests use: any figment, validated.
    pub fn load_from(figment: Figment) -> Result<Self, Box<figment::Error>> {
        // Where versions before 2026-12 kept each kind's pacing default: say where it went rather than only refuse it.
        for kind in connectors::kind_names() {
            if figment.find_value(&format!("creation.{kind}_pacing")).is_ok() {
                let moved =
                    format!("`creation.{kind}_pacing` is now `{kind}.pacing`: move its keys to [{kind}.pacing]");
                return Err(Box::new(figment::Error::from(moved)));
            }
        }
        let config: Self = figment.extract()?;
        config.validate().map_err(|e| Box::new(figment::Error::from(e)))?;
        Ok(config)
    }

    /// The defaults alone (no file, no environment), with `data_dir` and the database placed under `dir`: what
    /// tests start from.
    pub fn for_directory(dir: &Path) -> Self {
        let mut config: Self =
            Figment::from(Toml::string(default_config())).extract().expect("the shipped defaults are valid");
        config.data_dir = dir.to_path_buf();
        config.database_url = format!("sqlite://{}", dir.join("convene.db").display());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// Whether Convene's database is PostgreSQL (several nodes may share it), not a SQLite file.
    pub fn on_postgres(&self) -> bool {
        is_postgres(&self.database_url)
    }

    fn validate(&self) -> Result<(), String> {
        let scheme = self.database_url.split_once(':').map_or("", |(scheme, _)| scheme);
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            // The scheme only: the URL may hold a password.
            return Err(format!(
                "database_url scheme `{scheme}` is not supported: use sqlite://<file> or postgres://user@host/database"
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if self.worker.poll_ms == 0 {
            return Err("worker.poll_ms must be at least 1".into());
        }
        self.creation.validate()?;
        self.webhooks.validate()?;
        self.cluster.validate()?;
        if let Some(unknown) = self.connectors.keys().find(|key| connectors::kind_named(key).is_none()) {
            return Err(format!(
                "unknown key `{unknown}`: the keys are {}, and a section for each kind of instance ({})",
                Self::KEYS.join(", "),
                connectors::kind_names_in_words()
            ));
        }
        connectors::check_sections(&self.connectors)
    }

    /// Sets `key` (dotted, within a kind's section: `whatsapp.connect`, `sandbox.network_limits`) to `value`, as a
    /// configuration file would; tests and the bench set kinds' settings this way.
    pub fn set(&mut self, key: &str, value: impl Serialize) -> Result<(), Box<figment::Error>> {
        let sections: BTreeMap<String, connectors::Section> =
            Figment::from(Serialized::defaults(&self.connectors)).merge(Serialized::default(key, value)).extract()?;
        connectors::check_sections(&sections).map_err(|e| Box::new(figment::Error::from(e)))?;
        self.connectors = sections;
        Ok(())
    }
}

/// Whether `database_url` names a PostgreSQL database.
pub(crate) fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres:") || database_url.starts_with("postgresql:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_defaults_load() {
        let c = Config::load_from(Figment::from(Toml::string(default_config()))).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.database_url, "sqlite://data/convene.db");
        assert_eq!(c.connectors["sandbox"].find_ref("seed").and_then(|v| v.deserialize::<u64>().ok()), Some(1));
    }

    #[test]
    fn a_file_layer_overrides_the_defaults() {
        let figment = Figment::from(Toml::string(default_config()))
            .merge(Toml::string("listen = \"127.0.0.1:9999\"\n[sandbox]\nseed = 42"));
        let c = Config::load_from(figment).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.connectors["sandbox"].find_ref("seed").and_then(|v| v.deserialize::<u64>().ok()), Some(42));
    }

    #[test]
    fn environment_variables_naming_a_key_or_a_kinds_section_are_configuration() {
        for key in ["LISTEN", "webhooks__timeout_ms", "SANDBOX__SEED", "WHATSAPP__PACING__DAILY_CAP"] {
            assert!(Config::configures(key), "{key}");
        }
        for key in ["LOG", "CONFIG", "LIVE_WHATSAPP_DB", "SANDBOXES__SEED"] {
            assert!(!Config::configures(key), "{key}");
        }
    }

    #[test]
    fn unknown_keys_and_unsupported_databases_are_refused() {
        let typo = Figment::from(Toml::string(default_config())).merge(Toml::string("lisen = \"x\""));
        let refused = Config::load_from(typo).unwrap_err().to_string();
        assert!(refused.contains("unknown key `lisen`: the keys are listen, database_url,"), "{refused}");
        assert!(refused.contains("each kind of instance (`sandbox` or `whatsapp`)"), "{refused}");
        let pg = Figment::from(Toml::string(default_config())).merge(Toml::string("database_url = \"mysql://x\""));
        assert!(Config::load_from(pg).unwrap_err().to_string().contains("not supported"));
        let ca = Figment::from(Toml::string(default_config()))
            .merge(Toml::string("[webhooks]\nca_certificates = \"/nonexistent/ca.pem\""));
        let refused = Config::load_from(ca).unwrap_err().to_string();
        assert!(refused.contains("webhooks.ca_certificates: cannot read /nonexistent/ca.pem"), "{refused}");
        // A section no kind of connector has, and where pacing defaults were before they moved to each kind's section.
        let kind = Figment::from(Toml::string(default_config())).merge(Toml::string("[telegram]\nconnect = true"));
        assert!(Config::load_from(kind).unwrap_err().to_string().contains("unknown key `telegram`"));
        let moved = Figment::from(Toml::string(default_config()))
            .merge(Toml::string("[creation.whatsapp_pacing]\nmin_interval_secs = 600"));
        let refused = Config::load_from(moved).unwrap_err().to_string();
        assert!(refused.contains("`creation.whatsapp_pacing` is now `whatsapp.pacing`"), "{refused}");
    }

    #[test]
    fn a_duplicate_window_longer_than_an_hour_is_refused() {
        let window = |secs: u64| {
            let window = format!("[creation]\nduplicate_window_secs = {secs}");
            Config::load_from(Figment::from(Toml::string(default_config())).merge(Toml::string(&window)))
        };
        assert!(window(3600).is_ok());
        let refused = window(3601).unwrap_err().to_string();
        assert!(refused.contains("creation.duplicate_window_secs is at most 3600"), "{refused}");
    }
}
