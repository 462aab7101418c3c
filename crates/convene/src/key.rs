//! `convene key create|list|revoke`: the account's API keys, straight in the database, so that an operator on the
//! host can always issue a key (a first one, or after the last was lost) without one.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use convene_core::store::ApiKeyRecord;
use convene_core::{InstanceId, SystemClock};
use convene_server::Config;
use convene_server::auth::KeyGrant;
use convene_server::service::Service;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it (once, alone on standard output): for a new user, or when the first key was
    /// lost.
    Create {
        /// A name to tell keys apart.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Limit the key to this instance; repeat for several. Without it the key is for the whole account.
        #[arg(long = "instance", value_name = "ID")]
        instances: Vec<String>,
        /// The key can read but change nothing.
        #[arg(long)]
        read_only: bool,
    },
    /// List the keys: id, prefix, name, scope, access, created, last used. Secrets are never stored, so never shown.
    List,
    /// Revoke a key by its id (from `key list`): a running server refuses it within a second. The last key for the whole
    /// account that is not read-only stays; create another first.
    Revoke {
        /// The key's id.
        id: uuid::Uuid,
    },
}

pub async fn run(command: KeyCommand, config: &Config) -> anyhow::Result<()> {
    // The database alone: a server may be running on the same data directory, and its networks are its own.
    let store = convene_store::connect(&config.database_url).await.context("opening the database")?;
    let service = &Service::offline(store, Arc::new(SystemClock), config.creation.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let failed = |e: convene_server::error::ApiError| anyhow::anyhow!("{e}");
    match command {
        KeyCommand::Create { name, instances, read_only } => {
            let instance_ids = if instances.is_empty() {
                None
            } else {
                let parse = |raw: &String| {
                    InstanceId::parse(raw.trim())
                        .ok_or_else(|| anyhow::anyhow!("--instance {raw}: instance ids are ten digits"))
                };
                Some(instances.iter().map(parse).collect::<anyhow::Result<Vec<_>>>()?)
            };
            let (secret, _) =
                service.keys().create(&name, KeyGrant { instance_ids, read_only }).await.map_err(failed)?;
            println!("{secret}");
        }
        KeyCommand::List => {
            println!(
                "{:<36}  {:<10}  {:<20}  {:<24}  {:<10}  {:<24}  LAST USED",
                "ID", "PREFIX", "NAME", "SCOPE", "ACCESS", "CREATED"
            );
            for key in service.keys().list().await.map_err(failed)? {
                println!("{}", row(&key));
            }
        }
        KeyCommand::Revoke { id } => {
            service.keys().revoke(id).await.map_err(failed)?;
            println!("revoked API key {id}");
        }
    }
    Ok(())
}

fn row(key: &ApiKeyRecord) -> String {
    let scope = match &key.instance_ids {
        None => "all instances".to_owned(),
        Some(ids) => ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
    };
    let access = if key.read_only { "read-only" } else { "read-write" };
    let last_used = key.last_used_at.map_or_else(|| "never".to_owned(), |t| t.to_string());
    format!(
        "{:<36}  {:<10}  {:<20}  {:<24}  {:<10}  {:<24}  {last_used}",
        key.id.to_string(),
        key.prefix,
        key.name,
        scope,
        access,
        key.created_at.to_string()
    )
}
