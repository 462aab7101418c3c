//! Convene's bench harness (issue 13). It starts `convene serve`'s server in this process on a fresh data directory
//! (SQLite and the sandbox), loads it over loopback HTTP for a fixed time per figure, and prints one markdown table:
//! each figure beside the limit it is held to, measured in the same run on the same machine — the trivial endpoint
//! (`GET /healthz`) through the same HTTP stack, and raw SQLite transactions writing what one creation writes (a
//! group row and three participant rows, WAL, `synchronous = FULL`). Figures issue 13 asks for that are not measured
//! yet are listed as such.
//!
//! Throughput is measured closed-loop: each connection sends its next request when the answer to the last has come,
//! so those latencies are at full load. The latency targets are measured open-loop at a fixed rate (half the load),
//! each request timed from when it was due, so a server that falls behind cannot hide it.
//!
//! `cargo run --release -p convene-bench [-- SECONDS CONNECTIONS PREFILL]` (defaults: 5 seconds a figure, 16
//! connections, and no prefill: creation is measured again after the groups the other figures made; with PREFILL,
//! after groups are created until that many exist).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use convene_core::SystemClock;
use convene_server::{AppState, Config};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio_util::sync::CancellationToken;

/// Sandbox numbers the "many numbers" creation figure spreads over.
const NUMBERS: usize = 16;

/// A figure: how many operations a second, and how long they took.
struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

impl Load {
    fn of(mut times: Vec<Duration>, elapsed: Duration) -> Self {
        times.sort();
        let at =
            |q: f64| times.get(((times.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default();
        Self { per_second: times.len() as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let seconds = Duration::from_secs(args.first().copied().unwrap_or(5).max(1));
    let connections = args.get(1).copied().unwrap_or(16).max(1) as usize;
    let prefill = args.get(2).copied().unwrap_or(0) as usize;

    let dir = tempfile::tempdir()?;
    let mut config = Config::for_directory(dir.path());
    config.bootstrap_sandbox_instance = true;
    let state = AppState::open(&config, Arc::new(SystemClock)).await?;
    let service = state.service.clone();
    let first = service.bootstrap(true).await?.expect("a fresh data directory");
    let api_key = first.api_key;
    let mut numbers = vec![first.instance.expect("a bootstrap sandbox number").0.id.0];
    for i in 1..NUMBERS {
        numbers.push(
            service
                .create_instance(convene_core::ConnectorKind::Sandbox, Some(&format!("Bench {i}")), None)
                .await?
                .0
                .id
                .0,
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { convene_server::serve(listener, state, &config, shutdown).await }
    });
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let bearer = format!("Bearer {api_key}");
    println!("convene-bench: {} s a figure, {connections} connections, 127.0.0.1, SQLite + sandbox", seconds.as_secs());

    // The limits first: the trivial endpoint over the same HTTP stack, and raw SQLite.
    let trivial = load(seconds, connections, |_, _| client.get(format!("{base}/healthz")).send()).await?;
    let raw_sqlite = raw_sqlite_transactions(dir.path(), seconds).await?;

    let sequence = Arc::new(AtomicUsize::new(0));
    let create_on = |pick: fn(usize) -> usize| {
        let (client, base, bearer, numbers, sequence) = (&client, &base, &bearer, &numbers, Arc::clone(&sequence));
        move |_: usize, _: usize| {
            let n = sequence.fetch_add(1, Ordering::Relaxed);
            let body = json!({
                "instance_id": numbers[pick(n) % numbers.len()],
                "subject": format!("Bench group {n}"),
                "participants": [format!("+1713715{:04}", n % 10_000), "+18647351567", "+447700176576"],
            });
            client.post(format!("{base}/v1/groups")).header("authorization", bearer).json(&body).send()
        }
    };
    let create_one = load(seconds, connections, create_on(|_| 0)).await?;
    let create_many = load(seconds, connections, create_on(|n| n)).await?;
    // The target's creation rate is 0.45 of raw SQLite's; its latency target holds at half that.
    let half_target_rate = 0.45 * raw_sqlite / 2.0;
    let create_half = {
        let create = create_on(|n| n);
        load_at_rate(seconds, half_target_rate, |i| create(0, i)).await?
    };
    let groups = sequence.load(Ordering::Relaxed);
    let listed: serde_json::Value =
        client.get(format!("{base}/v1/groups?limit=1")).header("authorization", &bearer).send().await?.json().await?;
    let group_id = listed["items"][0]["id"].as_str().unwrap_or_default().to_owned();
    let get_one = load(seconds, connections, |_, _| {
        client.get(format!("{base}/v1/groups/{group_id}")).header("authorization", &bearer).send()
    })
    .await?;
    let list_fifty = load(seconds, connections, |_, _| {
        client.get(format!("{base}/v1/groups?limit=50")).header("authorization", &bearer).send()
    })
    .await?;
    let get_one_half = load_at_rate(seconds, get_one.per_second / 2.0, |_| {
        client.get(format!("{base}/v1/groups/{group_id}")).header("authorization", &bearer).send()
    })
    .await?;
    let list_fifty_half = load_at_rate(seconds, list_fifty.per_second / 2.0, |_| {
        client.get(format!("{base}/v1/groups?limit=50")).header("authorization", &bearer).send()
    })
    .await?;
    // Creation again, once more groups exist: the sandbox's and the database's costs must not grow with them.
    while sequence.load(Ordering::Relaxed) < prefill {
        load(seconds, connections.max(32), create_on(|n| n)).await?;
    }
    let groups_before = sequence.load(Ordering::Relaxed);
    let create_after = load(seconds, connections, create_on(|n| n)).await?;

    println!();
    println!("| figure | per second | p50 ms | p99 ms | limit (same run) | ratio | target |");
    println!("|---|---:|---:|---:|---|---:|---|");
    let row = |name: &str, figure: &Load, limit: &str, limit_rate: f64, target: &str| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {limit} | {:.2} | {target} |",
            figure.per_second,
            figure.p50.as_secs_f64() * 1000.0,
            figure.p99.as_secs_f64() * 1000.0,
            figure.per_second / limit_rate,
        );
    };
    let sqlite_limit = format!("raw SQLite FULL: {:.0} tx/s", raw_sqlite);
    let http_limit = format!("GET /healthz: {:.0}/s", trivial.per_second);
    row("GET /healthz (the HTTP limit)", &trivial, &http_limit, trivial.per_second, "—");
    row("create a group, 1 sandbox number", &create_one, &sqlite_limit, raw_sqlite, "—");
    row(&format!("create a group, {NUMBERS} sandbox numbers"), &create_many, &sqlite_limit, raw_sqlite, "≥ 0.45");
    row(&format!("GET one group ({groups} exist)"), &get_one, &http_limit, trivial.per_second, "≥ 0.5");
    row("list 50 groups", &list_fifty, &http_limit, trivial.per_second, "≥ 0.5");
    let latency_row = |name: &str, figure: &Load, limit_ms: f64| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | p99 ≤ {limit_ms} ms | {:.2} | ≤ 1 |",
            figure.per_second,
            figure.p50.as_secs_f64() * 1000.0,
            figure.p99.as_secs_f64() * 1000.0,
            figure.p99.as_secs_f64() * 1000.0 / limit_ms,
        );
    };
    latency_row(
        &format!("create a group, {NUMBERS} numbers, at half the target rate ({half_target_rate:.0}/s, open loop)"),
        &create_half,
        50.0,
    );
    latency_row("GET one group at half its rate (open loop)", &get_one_half, 5.0);
    latency_row("list 50 groups at half its rate (open loop)", &list_fifty_half, 5.0);
    row(
        &format!("create a group, {NUMBERS} numbers, after {groups_before} groups exist"),
        &create_after,
        &format!("the same, before: {:.0}/s", create_many.per_second),
        create_many.per_second,
        "≥ 0.9 (at 100,000)",
    );
    for missing in [
        "RSS with 10,000 numbers and 100,000 groups, and over 60 s (≤ 100 MB, flat)",
        "startup to a ready /healthz with 100,000 groups (≤ 300 ms)",
        "the campaign example, 1,000 groups on 40 numbers (< 30 s wall): not run here, run \
         `cargo run --release -p convene-server --example campaign`",
        "webhook deliveries/s (for now: `cargo run --release -p convene-server --example webhook_throughput`)",
        "the same on PostgreSQL",
    ] {
        println!("| {missing} | not measured yet | | | | | |");
    }

    shutdown.cancel();
    server.await??;
    service.shutdown().await;
    Ok(())
}

/// Runs `request` from `connections` tasks for `seconds`, each waiting for its answer before the next; every answer
/// must be a success.
async fn load<F, Fut>(seconds: Duration, connections: usize, request: F) -> anyhow::Result<Load>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let started = Instant::now();
    let deadline = started + seconds;
    let tasks = (0..connections).map(|connection| {
        let request = &request;
        async move {
            let mut times = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let began = Instant::now();
                let response = request(connection, i).await?;
                let status = response.status();
                response.bytes().await?;
                anyhow::ensure!(status.is_success(), "answered {status}");
                times.push(began.elapsed());
                i += 1;
            }
            anyhow::Ok(times)
        }
    });
    let mut all = Vec::new();
    for times in futures_util::future::join_all(tasks).await {
        all.extend(times?);
    }
    Ok(Load::of(all, started.elapsed()))
}

/// Sends `request` at a fixed `rate` for `seconds` whatever the answers' pace (open loop), so the latencies are those
/// of a server under that load; each is timed from when it was due, so a server that falls behind shows it. Every
/// answer must be a success.
async fn load_at_rate<F, Fut>(seconds: Duration, rate: f64, request: F) -> anyhow::Result<Load>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    use futures_util::StreamExt as _;
    let rate = rate.max(1.0);
    let total = (rate * seconds.as_secs_f64()).round() as usize;
    let started = tokio::time::Instant::now();
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let mut times = Vec::with_capacity(total);
    let mut sent = 0;
    while sent < total || !in_flight.is_empty() {
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        tokio::select! {
            () = tokio::time::sleep_until(due), if sent < total => {
                let request = &request;
                in_flight.push(async move {
                    let response = request(sent).await?;
                    let status = response.status();
                    response.bytes().await?;
                    anyhow::ensure!(status.is_success(), "answered {status}");
                    anyhow::Ok(due.elapsed())
                });
                sent += 1;
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => times.push(done?),
        }
    }
    Ok(Load::of(times, started.elapsed()))
}

/// Transactions a second that raw SQLite commits writing a group row and three participant rows, with Convene's
/// settings (WAL, `synchronous = FULL`), one after another for `seconds`.
async fn raw_sqlite_transactions(dir: &std::path::Path, seconds: Duration) -> anyhow::Result<f64> {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut db = options.connect().await?;
    sqlx::raw_sql(
        "CREATE TABLE groups (id TEXT PRIMARY KEY, instance_id INTEGER NOT NULL, jid TEXT NOT NULL, subject TEXT NOT NULL, \
         created_at INTEGER NOT NULL); \
         CREATE TABLE participants (group_id TEXT NOT NULL, phone TEXT NOT NULL, outcome TEXT NOT NULL)",
    )
    .execute(&mut db)
    .await?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < seconds {
        let mut tx = db.begin().await?;
        let id = format!("group-{n}");
        sqlx::query("INSERT INTO groups VALUES (?, 7103000001, ?, ?, ?)")
            .bind(&id)
            .bind(format!("1203630{n:011}@g.us"))
            .bind(format!("Bench group {n}"))
            .bind(n as i64)
            .execute(&mut *tx)
            .await?;
        for phone in ["+17137157533", "+18647351567", "+447700176576"] {
            sqlx::query("INSERT INTO participants VALUES (?, ?, 'added')")
                .bind(&id)
                .bind(phone)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
