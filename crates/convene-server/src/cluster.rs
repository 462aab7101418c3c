//! Where a `convene serve` process stands among the nodes on its database (issue 14): alone on SQLite, or on
//! PostgreSQL one of several nodes, under an id of its own, leasing numbers (`service::Placement`).
//!
//! The binary holds the node's data directory (and a SQLite file) for as long as it runs (`serve_lock` in the
//! `convene` crate): that refuses a second node on one SQLite file, and keeps the id kept in the data directory this
//! process's own.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::config::Config;
use crate::service::{NodeToken, Placement};
use convene_core::SecretBox;

/// `[cluster]`: several nodes on one PostgreSQL database.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The node's id among the nodes on one database; empty: one made on first start and kept in the data directory.
    pub node_id: String,
    /// How long a node's hold on a number lasts without renewal: when a node dies, the others take its numbers
    /// within this (plus a fifth of it).
    pub lease_ttl_secs: u64,
    /// The base URL the other nodes reach this one at (`http://10.0.0.5:8080`); empty: `http://` and the address it
    /// listens on.
    pub advertise_url: String,
}

impl ClusterConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(3..=3600).contains(&self.lease_ttl_secs) {
            return Err("cluster.lease_ttl_secs must be between 3 and 3600".into());
        }
        let url = &self.advertise_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err("cluster.advertise_url must be an http:// or https:// URL".into());
        }
        if !self.node_id.is_empty() && !is_node_id(&self.node_id) {
            return Err("cluster.node_id must be 1 to 64 letters, digits, `.`, `_` or `-`".into());
        }
        Ok(())
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }

    /// Where the other nodes reach a node listening on `listening`: `advertise_url`, or `http://` and the address
    /// (a wildcard address, which nobody can call, as 127.0.0.1: nodes on one machine).
    pub fn advertised(&self, listening: std::net::SocketAddr) -> String {
        if !self.advertise_url.is_empty() {
            return self.advertise_url.trim_end_matches('/').to_owned();
        }
        let mut address = listening;
        if address.ip().is_unspecified() {
            tracing::warn!(
                listening = %listening,
                "listening on every address: the other nodes are told 127.0.0.1; set cluster.advertise_url for \
                 nodes on other machines"
            );
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    }
}

fn is_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Where the node stands among the nodes on its database: alone on SQLite (the file's lock makes it the only one);
/// on PostgreSQL, leasing numbers under its id, and calling the other nodes with a token derived from the sealing key
/// they share.
pub fn placement(config: &Config, sealer: &SecretBox) -> anyhow::Result<Placement> {
    if !config.on_postgres() {
        return Ok(Placement::Alone);
    }
    let node = if config.cluster.node_id.is_empty() {
        kept_id(&config.data_dir, "node-id", "node")?
    } else {
        config.cluster.node_id.clone()
    };
    let token = NodeToken(sealer.tag(crate::service::remote::TAG_LABEL));
    let key_tag = sealer.tag("convene: the key the nodes share, v1");
    Ok(Placement::Leased { node, lease_ttl: config.cluster.lease_ttl(), token, key_tag, home: home(&config.data_dir)? })
}

/// Where this process runs: its data directory, named by a random id kept there (`node-home`, made on first start),
/// so that a restart on the same directory is at home whatever the host is called (a container made anew). A process
/// under the same node id with another home while this one is alive is refused (one `node_id` set on two machines).
fn home(data_dir: &Path) -> anyhow::Result<String> {
    kept_id(data_dir, "node-home", "home")
}

/// The id kept in `<dir>/<file>`, made on first use (`<prefix>-` and 12 hex digits): the node's id, the same after a
/// restart so that a node killed and started again takes its numbers back at once; its home.
fn kept_id(dir: &Path, file: &str, prefix: &str) -> anyhow::Result<String> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(kept) if is_node_id(kept.trim()) => return Ok(kept.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} does not hold an id; delete it to have a new one made", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).expect("the operating system's random source is available");
    let id = format!("{prefix}-{}", hex::encode(random));
    let partial = dir.join(format!("{file}.partial"));
    std::fs::write(&partial, format!("{id}\n")).with_context(|| format!("writing {}", partial.display()))?;
    File::open(&partial).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_the_id_it_was_given_first_and_a_configured_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_directory(dir.path());
        config.database_url = "postgres://convene@db.example/convene".into();
        let sealer = SecretBox::new([7; 32]);
        let first = placement(&config, &sealer).unwrap();
        let Placement::Leased { node, lease_ttl, .. } = &first else { panic!("{first:?}") };
        assert!(node.starts_with("node-") && node.len() == 17, "{node}");
        assert_eq!(*lease_ttl, Duration::from_secs(15));
        assert_eq!(placement(&config, &sealer).unwrap(), first, "the same after a restart");

        config.cluster.node_id = "eu-1".into();
        assert!(matches!(placement(&config, &sealer).unwrap(), Placement::Leased { node, .. } if node == "eu-1"));
        let sqlite = Config::for_directory(dir.path());
        assert_eq!(placement(&sqlite, &sealer).unwrap(), Placement::Alone);
    }

    #[test]
    fn node_ids_and_lease_lengths_out_of_range_are_refused() {
        let config = |node_id: &str, lease_ttl_secs| ClusterConfig {
            node_id: node_id.into(),
            lease_ttl_secs,
            advertise_url: String::new(),
        };
        assert!(config("", 15).validate().is_ok());
        assert!(config("eu-west.1_b", 3).validate().is_ok());
        assert!(config("has space", 15).validate().unwrap_err().contains("node_id"));
        assert!(config(&"n".repeat(65), 15).validate().unwrap_err().contains("node_id"));
        assert!(config("", 2).validate().unwrap_err().contains("lease_ttl_secs"));
    }
}
