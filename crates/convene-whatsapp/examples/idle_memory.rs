//! Memory, file descriptors and threads per idle `whatsapp` instance: each instance's client is built on its stored
//! device state (a linked device, in Convene's database: a SQLite file, as `convene serve` keeps it by default) and
//! not connected (`connect = false`).
//!
//! ```text
//! cargo run --release -p convene-whatsapp --example idle_memory [-- 1 100 1000]
//! ```
//!
//! The parent prepares the devices; each count is then measured in a fresh process (this executable re-run with a
//! hidden argument), so the preparation and one count's allocations do not colour the next. The measured process
//! opens the database as the server does: its memory and descriptors count in "before", the instances' in "delta".

use std::error::Error;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{Connector, ConnectorReport, ConnectorReports, DeviceKeyStore, InstanceId, SecretBox, SystemClock};
use convene_store::SqliteStore;
use convene_whatsapp::{DeviceKeys, KeyStorage, WhatsappAccounts, WhatsappConfig};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore::store::traits::DeviceStore as _;

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

const MEASURE: &str = "--measure";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    if let [flag, dir, n] = args.as_slice()
        && flag == MEASURE
    {
        return runtime.block_on(measure(Path::new(dir), n.parse()?));
    }
    let counts: Vec<u32> =
        if args.is_empty() { vec![1, 100, 1000] } else { args.iter().map(|a| a.parse()).collect::<Result<_, _>>()? };
    println!(
        "{:>5}  {:>10}  {:>10}  {:>10}  {:>12}  {:>10}  {:>11}  {:>9}  {:>9}",
        "N", "RSS before", "RSS after", "delta", "per instance", "peak RSS", "fds", "threads", "open time"
    );
    for n in counts {
        let dir = tempfile::tempdir()?;
        runtime.block_on(async {
            let storage = storage(dir.path()).await?;
            for i in 1..=n {
                // Ten thousand numbers of the 555 exchange, reused beyond (each instance is a device of its own).
                link_device(&storage, InstanceId(i.into()), &format!("1201555{:04}", i % 10_000)).await?;
            }
            Ok::<_, Box<dyn Error>>(())
        })?;
        let status = Command::new(std::env::current_exe()?).arg(MEASURE).arg(dir.path()).arg(n.to_string()).status()?;
        if !status.success() {
            println!("{n:>5}  failed: {status}");
        }
    }
    Ok(())
}

/// Convene's database in `dir`, and a sealing key.
async fn storage(dir: &Path) -> Result<KeyStorage> {
    let store = SqliteStore::connect(&format!("sqlite://{}", dir.join("convene.db").display())).await?;
    Ok(KeyStorage { store: Arc::new(store) as Arc<dyn DeviceKeyStore>, sealer: Arc::new(SecretBox::new([7; 32])) })
}

/// Writes a linked device's identity for instance `id`, as pairing would.
async fn link_device(storage: &KeyStorage, id: InstanceId, number: &str) -> Result<()> {
    let keys = DeviceKeys::new(Arc::clone(&storage.store), Arc::clone(&storage.sealer), id);
    keys.create().await?;
    let mut device = keys.load().await?.ok_or("no device after creating one")?;
    device.pn = Some(Jid::pn(number));
    keys.save(&device).await?;
    Ok(())
}

/// Opens the `n` prepared instances in `dir` and prints one row of the table.
async fn measure(dir: &Path, n: u32) -> Result<()> {
    let storage = storage(dir).await?;
    let before = Sample::now()?;
    let config = WhatsappConfig { data_dir: dir.join("whatsapp"), connect: false };
    let accounts = WhatsappAccounts::new(config, Some(storage), Arc::new(SystemClock), Arc::new(Discard));
    let started = Instant::now();
    let mut connectors = Vec::new();
    for i in 1..=n {
        connectors.push(accounts.open_and_wait(InstanceId(i.into())).await?);
    }
    let opening = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = Sample::now()?;
    for c in &connectors {
        assert!(c.own_number().await.is_some(), "the linked identity is loaded");
    }

    let delta = after.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "{n:>5}  {:>10}  {:>10}  {:>10}  {:>8.0} KiB  {:>10}  {:>11}  {:>9}  {:>7.2} s",
        mib(before.rss_kib),
        mib(after.rss_kib),
        mib(delta),
        delta as f64 / f64::from(n),
        mib(after.hwm_kib),
        format!("{} → {}", before.fds, after.fds),
        format!("{} → {}", before.threads, after.threads),
        opening.as_secs_f64(),
    );
    drop(connectors);
    accounts.shutdown().await;
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The process's resident memory (current and peak, KiB), open file descriptors and threads.
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
    threads: u64,
}

impl Sample {
    fn now() -> Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| {
            let line = status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'));
            line.and_then(|v| v.split_whitespace().next()?.parse().ok())
                .ok_or(format!("no {name} in /proc/self/status"))
        };
        // Less one: the handle that lists the directory.
        let fds = std::fs::read_dir("/proc/self/fd")?.count() - 1;
        Ok(Self { rss_kib: field("VmRSS")?, hwm_kib: field("VmHWM")?, fds, threads: field("Threads")? })
    }
}

struct Discard;

impl ConnectorReports for Discard {
    fn report(&self, _: InstanceId, _: ConnectorReport) {}
}
