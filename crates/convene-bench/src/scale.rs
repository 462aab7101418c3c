//! Memory and start at scale (issue 13, part 4): a data directory with many sandbox numbers and groups, made through
//! the service as the API would make them; then `convene serve`'s server started on it in a process of its own (this
//! binary, `serve-child`), so that its memory is the server's alone: the time until `/healthz` answers, its resident
//! memory, and that memory over a load run of reads and creations.
//!
//! `cargo run --release -p convene-bench -- scale [NUMBERS GROUPS SECONDS]` prints it alone (defaults: 10,000
//! numbers, 100,000 groups, 60 s of load; at least 10 s).

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use convene_core::SystemClock;
use convene_server::service::{NewGroup, RetryGuard};
use convene_server::{AppState, Config};

/// The subcommand that only makes the data directory, to profile a server on it: `fill DIR [NUMBERS GROUPS]`.
pub const FILL: &str = "fill";

/// The hidden subcommand that serves a data directory: `serve-child DIR`; it prints `listening ADDR` once ready.
pub const SERVE_CHILD: &str = "serve-child";

/// What the run measured.
pub struct Scale {
    pub numbers: usize,
    pub groups: usize,
    /// How long making the data directory took.
    pub made_in: Duration,
    /// From starting the server process to its first `200` on `/healthz`.
    pub startup: Duration,
    /// Resident memory once ready, after the first 10 s of load, and at the end of the load run, in bytes.
    pub rss_ready: u64,
    pub rss_at_10s: u64,
    pub rss_end: u64,
    pub rss_max: u64,
    pub load_seconds: u64,
    pub requests: usize,
}

/// Makes `numbers` sandbox numbers and `groups` groups spread over them in `dir`, through the service.
pub async fn fill(dir: &Path, numbers: usize, groups: usize) -> anyhow::Result<()> {
    let mut config = Config::for_directory(dir);
    config.bootstrap_sandbox_instance = false;
    let state = AppState::open(&config, Arc::new(SystemClock)).await?;
    let service = state.service.clone();
    let failed = |e: convene_server::error::ApiError| anyhow::anyhow!("{e}");
    service.bootstrap(false).await.map_err(failed)?;
    // Numbers 32 at a time, so that their commits share syncs.
    let mut instances = Vec::with_capacity(numbers);
    for chunk in (0..numbers).collect::<Vec<_>>().chunks(32) {
        let names: Vec<String> = chunk.iter().map(|i| format!("Scale {i}")).collect();
        let made = futures_util::future::join_all(
            names.iter().map(|name| service.instances().create(convene_sandbox::KIND, Some(name), None)),
        )
        .await;
        for result in made {
            instances.push(result.map_err(failed)?.0.id);
        }
    }
    // Creations one at a time per number (the service's own rule), many numbers at once.
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..64).map(|_| {
        let (service, instances, next) = (service.clone(), instances.clone(), Arc::clone(&next));
        tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= groups {
                    return anyhow::Ok(());
                }
                let new = NewGroup {
                    subject: format!("Scale group {n}"),
                    participants: vec![format!("+1713715{:04}", n % 10_000), "+18647351567".into()],
                    ..NewGroup::default()
                };
                service
                    .create_group(instances[n % instances.len()], new, RetryGuard::IdempotencyKey)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        })
    });
    for worker in futures_util::future::join_all(workers).await {
        worker??;
    }
    service.shutdown().await;
    Ok(())
}

/// Serves `dir` in this process until its standard input ends (the bench closes it, or dies); prints `listening
/// ADDR` once `/healthz` can answer.
pub async fn serve_child(dir: &Path) -> anyhow::Result<()> {
    let config = Config::for_directory(dir);
    let state = AppState::open(&config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_end = shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        on_end.cancel();
    });
    convene_server::serve(listener, state, &config, shutdown).await?;
    Ok(())
}

/// Fills a fresh directory, serves it from a process of its own and measures it under `load_seconds` of reads and
/// creations from `connections` connections.
pub async fn measure(numbers: usize, groups: usize, load_seconds: u64, connections: usize) -> anyhow::Result<Scale> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    fill(dir.path(), numbers, groups).await?;
    let made_in = started.elapsed();
    let key = admin_key(dir.path()).await?;

    let launched = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg(SERVE_CHILD)
        .arg(dir.path())
        .env("CONVENE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let measured = async {
        let (base, startup) = wait_ready(&mut child, launched).await?;
        let watched = load_and_watch(child.id(), &base, &key, load_seconds, connections).await?;
        anyhow::Ok((startup, watched))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (startup, (rss_ready, rss_at_10s, rss_end, rss_max, requests)) = measured?;
    Ok(Scale { numbers, groups, made_in, startup, rss_ready, rss_at_10s, rss_end, rss_max, load_seconds, requests })
}

/// A new admin key straight in the database, as `convene key create` makes one.
async fn admin_key(dir: &Path) -> anyhow::Result<String> {
    let mut config = Config::for_directory(dir);
    config.bootstrap_sandbox_instance = false;
    let state = AppState::open(&config, Arc::new(SystemClock)).await?;
    let (secret, _) = state
        .service
        .keys()
        .create("bench", convene_server::auth::KeyGrant::admin())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    state.service.shutdown().await;
    Ok(secret)
}

/// The server's base URL once `/healthz` answers 200, and how long that took from `launched`.
async fn wait_ready(child: &mut Child, launched: Instant) -> anyhow::Result<(String, Duration)> {
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no standard output"))?;
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(120), first_line)
        .await
        .map_err(|_| anyhow::anyhow!("the server did not say where it listens within 120 s"))???;
    let addr = line.trim().strip_prefix("listening ").ok_or_else(|| anyhow::anyhow!("the server said {line:?}"))?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    loop {
        if let Ok(answer) = client.get(format!("{base}/healthz")).send().await
            && answer.status().is_success()
        {
            return Ok((base, launched.elapsed()));
        }
        anyhow::ensure!(launched.elapsed() < Duration::from_secs(120), "the server did not answer within 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Creations a second during the load run: the groups they add are a small part of the world, so memory that grows
/// is memory kept, not data added.
const CREATIONS_PER_SECOND: u64 = 10;

/// Reads from `connections` connections for `seconds` (a group by id among 5,000, and pages of 50 at cursors
/// spread over them), with creations at `CREATIONS_PER_SECOND`, sampling the server's resident memory each second:
/// ready, after 10 s, at the end, the most; and how many requests were answered.
async fn load_and_watch(
    pid: u32,
    base: &str,
    key: &str,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<(u64, u64, u64, u64, usize)> {
    // An answer that does not come within a minute fails the run instead of holding it up.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let bearer = format!("Bearer {key}");
    let get = |path: String| {
        let request = client.get(format!("{base}{path}")).header("authorization", &bearer);
        async move { anyhow::Ok(request.send().await?.error_for_status()?.json::<serde_json::Value>().await?) }
    };
    let (mut ids, mut cursors) = (Vec::new(), vec![String::new()]);
    while ids.len() < 5000 {
        let page = get(page_path(200, cursors.last().map_or("", String::as_str))).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        ids.extend(items.iter().filter_map(|g| g["id"].as_str().map(str::to_owned)));
        match page["next_cursor"].as_str() {
            Some(cursor) => cursors.push(cursor.to_owned()),
            None => break,
        }
    }
    let instances = get("/v1/instances?limit=200".to_owned()).await?;
    let instance_ids: Vec<i64> = instances["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_i64()).collect())
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty() && !instance_ids.is_empty(), "no groups or instances to load");
    let rss_ready = rss(pid)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let answered = Arc::new(AtomicUsize::new(0));
    let (ids, cursors) = (Arc::new(ids), Arc::new(cursors));
    let readers = (0..connections).map(|c| {
        let (client, bearer, ids, cursors, answered) =
            (client.clone(), bearer.clone(), Arc::clone(&ids), Arc::clone(&cursors), Arc::clone(&answered));
        let base = base.to_owned();
        tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let path = match i % 4 {
                    0 => page_path(50, &cursors[i / 4 % cursors.len()]),
                    _ => format!("/v1/groups/{}", ids[i * 7919 % ids.len()]),
                };
                let answer = client.get(format!("{base}{path}")).header("authorization", &bearer).send().await?;
                anyhow::ensure!(answer.status().is_success(), "{path} answered {}", answer.status());
                answer.bytes().await?;
                answered.fetch_add(1, Ordering::Relaxed);
                i += connections;
            }
            anyhow::Ok(())
        })
    });
    let creator = {
        let (client, bearer, answered) = (client.clone(), bearer.clone(), Arc::clone(&answered));
        let base = base.to_owned();
        tokio::spawn(async move {
            let mut due = tokio::time::Instant::now();
            for n in 0.. {
                due += Duration::from_millis(1000 / CREATIONS_PER_SECOND);
                tokio::time::sleep_until(due).await;
                if Instant::now() >= deadline {
                    break;
                }
                let body = serde_json::json!({
                    "instance_id": instance_ids[n % instance_ids.len()],
                    "subject": format!("Load group {n}"),
                    "participants": ["+17137157533"],
                });
                let answer = client
                    .post(format!("{base}/v1/groups"))
                    .header("authorization", &bearer)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(answer.status().is_success(), "a creation answered {}", answer.status());
                answered.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    let load = tokio::spawn(futures_util::future::join_all(readers));
    let (mut at_10s, mut max, mut last) = (rss_ready, rss_ready, rss_ready);
    let started = Instant::now();
    for second in 1..=seconds {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        last = rss(pid)?;
        max = max.max(last);
        if second == 10.min(seconds) {
            at_10s = last;
        }
    }
    for task in load.await? {
        task??;
    }
    creator.await??;
    Ok((rss_ready, at_10s, last, max, answered.load(Ordering::Relaxed)))
}

/// A page of `limit` groups after `cursor` ("": the first page).
fn page_path(limit: u32, cursor: &str) -> String {
    match cursor {
        "" => format!("/v1/groups?limit={limit}"),
        cursor => format!("/v1/groups?limit={limit}&cursor={cursor}"),
    }
}

/// A process's resident memory, in bytes, from `/proc/<pid>/status`.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}
