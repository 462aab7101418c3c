//! Convene's bench harness (issue 13). It starts `convene serve`'s server in this process on a fresh data directory
//! (SQLite and the sandbox, or PostgreSQL), loads it over loopback HTTP for a fixed time per figure, and prints one
//! markdown table: each figure beside the limit it is held to, measured in the same run on the same machine — the
//! trivial endpoint (`GET /healthz`) through the same HTTP stack, and raw database transactions writing what one
//! creation writes (a group row and three participant rows; SQLite in WAL with `synchronous = FULL`, PostgreSQL with
//! its defaults) — then the campaign, webhook deliveries, and memory and start with many numbers and groups. Creation
//! after the prefill is held to creation in empty worlds (a new server each turn), measured in turns with it.
//!
//! Throughput is measured closed-loop: each connection sends its next request when the answer to the last has come,
//! so those latencies are at full load. The latency targets are measured open-loop at a fixed rate (half the load),
//! each request timed from when it was due, so a server that falls behind cannot hide it.
//!
//! `cargo run --release -p convene-bench [-- SECONDS CONNECTIONS PREFILL NUMBERS GROUPS]` (defaults: 5 seconds a
//! figure, 16 connections, no prefill: creation is measured again after the groups the other figures made, or after
//! groups are created until PREFILL exist; and 10,000 numbers with 100,000 groups for memory and start, loaded for
//! 60 s). With `DATABASE_URL=postgres://…` the server and the raw transactions run on a scratch database there.
//! `… -- campaign [GROUPS NUMBERS]`, `… -- webhooks [EVENTS GROUPS]` and `… -- scale [NUMBERS GROUPS SECONDS]` run
//! one part alone; `… -- fill DIR [NUMBERS GROUPS]` only makes part 4's data directory and `… -- serve-child DIR`
//! serves one, to profile a server at scale.

mod campaign;
mod scale;
mod webhooks;

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

/// Turns in which creation after the prefill and creation in an empty world are measured, one after the other.
const CREATION_TURNS: usize = 3;

/// Creation in a new empty world before its turn is measured.
const WARM_UP: Duration = Duration::from_secs(1);

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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let part = match args.first().map(String::as_str) {
        Some(word @ ("campaign" | "webhooks" | "scale" | scale::SERVE_CHILD | scale::FILL)) => Some(word.to_owned()),
        _ => None,
    };
    if part.is_some() {
        args.remove(0);
    }
    let postgres = std::env::var("DATABASE_URL").ok().filter(|url| url.starts_with("postgres"));
    if part.as_deref() == Some(scale::SERVE_CHILD) {
        let dir = args.first().ok_or_else(|| anyhow::anyhow!("serve-child DIR"))?;
        return scale::serve_child(std::path::Path::new(dir)).await;
    }
    if part.as_deref() == Some(scale::FILL) {
        let (dir, counts) = args.split_first().ok_or_else(|| anyhow::anyhow!("fill DIR [NUMBERS GROUPS]"))?;
        let count = |i: usize, default: usize| counts.get(i).and_then(|n| n.parse().ok()).unwrap_or(default);
        return scale::fill(std::path::Path::new(dir), count(0, 10_000), count(1, 100_000)).await;
    }
    let numbers: Vec<u64> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let arg = |i: usize, default: u64| numbers.get(i).copied().unwrap_or(default);
    match part.as_deref() {
        Some("campaign") => campaign::run(arg(0, 1000) as usize, arg(1, 40) as usize, true).await.map(drop),
        Some("webhooks") => webhooks::print(arg(0, 5000) as usize, arg(1, 100) as usize, postgres.as_deref()).await,
        Some("scale") => {
            let scale =
                scale::measure(arg(0, 10_000) as usize, arg(1, 100_000) as usize, arg(2, 60).max(10), 16).await?;
            print_table_head();
            scale_rows(&scale);
            Ok(())
        }
        _ => {
            let seconds = Duration::from_secs(arg(0, 5).max(1));
            let connections = arg(1, 16).max(1) as usize;
            harness(seconds, connections, arg(2, 0) as usize, postgres.as_deref(), (arg(3, 10_000), arg(4, 100_000)))
                .await
        }
    }
}

fn print_table_head() {
    println!();
    println!("| figure | per second | p50 ms | p99 ms | limit (same run) | ratio | target |");
    println!("|---|---:|---:|---:|---|---:|---|");
}

/// The rows of part 4: memory and start.
fn scale_rows(scale: &scale::Scale) {
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let what = format!("{} numbers, {} groups", scale.numbers, scale.groups);
    println!(
        "| startup to a ready /healthz, {what} (made in {:.0} s) | | | {:.0} | ≤ 300 ms | {:.2} | ≤ 1 |",
        scale.made_in.as_secs_f64(),
        scale.startup.as_secs_f64() * 1000.0,
        scale.startup.as_secs_f64() * 1000.0 / 300.0,
    );
    println!(
        "| RSS, {what}: ready {:.1} MB, after 10 s of load {:.1} MB, at {} s {:.1} MB (most {:.1} MB; {:.0} requests/s) \
         | | | | ≤ 100 MB | {:.2} | ≤ 1 |",
        mb(scale.rss_ready),
        mb(scale.rss_at_10s),
        scale.load_seconds,
        mb(scale.rss_end),
        mb(scale.rss_max),
        scale.requests as f64 / scale.load_seconds as f64,
        mb(scale.rss_max) / 100.0,
    );
    let growth = (scale.rss_end as f64 - scale.rss_at_10s as f64) / scale.rss_at_10s as f64;
    println!(
        "| RSS growth from 10 s to {} s of load: {:+.1}% | | | | within ±10% | {:.2} | ≤ 1 |",
        scale.load_seconds,
        growth * 100.0,
        growth.abs() / 0.1,
    );
}

/// The whole table.
async fn harness(
    seconds: Duration,
    connections: usize,
    prefill: usize,
    postgres: Option<&str>,
    (scale_numbers, scale_groups): (u64, u64),
) -> anyhow::Result<()> {
    let server = BenchServer::start(postgres).await?;
    let (client, base, bearer) = (&server.client, &server.base, &server.bearer);
    let on_postgres = server.scratch.is_some();
    let engine = if on_postgres { "PostgreSQL" } else { "SQLite" };
    println!(
        "convene-bench: {} s a figure, {connections} connections, 127.0.0.1, {engine} + sandbox",
        seconds.as_secs()
    );

    // The limits first: the trivial endpoint over the same HTTP stack, and raw transactions on the same engine.
    let trivial = load(seconds, connections, |_, _| client.get(format!("{base}/healthz")).send()).await?;
    let raw_sqlite = server.raw_transactions("raw", seconds, connections).await?;

    let create_on = |pick: fn(usize) -> usize| {
        let server = &server;
        move |_: usize, _: usize| server.create(pick)
    };
    let create_one = load(seconds, connections, create_on(|_| 0)).await?;
    let create_many = load(seconds, connections, create_on(|n| n)).await?;
    // The target's creation rate is 0.45 of raw SQLite's; its latency target holds at half that.
    let half_target_rate = 0.45 * raw_sqlite / 2.0;
    let create_half = {
        let create = create_on(|n| n);
        load_at_rate(seconds, connections, half_target_rate, |i| create(0, i)).await?
    };
    let groups = server.created.load(Ordering::Relaxed);
    // Reads spread over the first 1,000 groups (every one of them is read several times a figure).
    let listed: serde_json::Value =
        client.get(format!("{base}/v1/groups?limit=200")).header("authorization", bearer).send().await?.json().await?;
    let ids: Vec<String> = listed["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|g| g["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "no group to read: {listed}");
    let group_path =
        |connection: usize, i: usize| format!("{base}/v1/groups/{}", ids[(i * 31 + connection) % ids.len()]);
    let get_one = load(seconds, connections, |connection, i| {
        client.get(group_path(connection, i)).header("authorization", bearer).send()
    })
    .await?;
    let list_fifty_page = || client.get(format!("{base}/v1/groups?limit=50")).header("authorization", bearer).send();
    let list_fifty = load(seconds, connections, |_, _| list_fifty_page()).await?;
    // The same page while one connection creates groups: every creation adds a group, so the page is kept only
    // until the next commit.
    let (list_fifty_creating, creating) = tokio::join!(
        load(seconds, connections.saturating_sub(1).max(1), |_, _| list_fifty_page()),
        load(seconds, 1, create_on(|n| n)),
    );
    let (list_fifty_creating, creating) = (list_fifty_creating?, creating?);
    let get_one_half = load_at_rate(seconds, connections, get_one.per_second / 2.0, |i| {
        client.get(group_path(0, i)).header("authorization", bearer).send()
    })
    .await?;
    let list_fifty_half =
        load_at_rate(seconds, connections, list_fifty.per_second / 2.0, |_| list_fifty_page()).await?;
    // Creation again, once more groups exist: the sandbox's and the database's costs must not grow with them.
    while server.created.load(Ordering::Relaxed) < prefill {
        load(seconds, connections.max(32), create_on(|n| n)).await?;
    }
    let groups_before = server.created.load(Ordering::Relaxed);
    // The storage's limit again, just before: whether the disk itself was slower then than at the start.
    let raw_again = server.raw_transactions("raw-again", seconds, connections).await?;
    // Creation in this world and in empty ones, in turns of the same length over the same half minute: measured a
    // minute and a half apart instead, the same build's ratio read 0.70 to 1.22 from run to run. Each turn in an
    // empty world is on a server of its own, warmed up first (its first commits grow new files), and the order
    // (empty first, then this world first, then empty first) cancels a steady drift of the machine's speed.
    let (mut after_prefill, mut in_empty) = (Turns::default(), Turns::default());
    let mut empty_groups = 0;
    for turn in 0..CREATION_TURNS {
        let empty = BenchServer::start(postgres).await?;
        load(WARM_UP, connections, |_, _| empty.create(|n| n)).await?;
        let mut turns = [(&server, &mut after_prefill), (&empty, &mut in_empty)];
        if turn % 2 == 0 {
            turns.reverse();
        }
        for (world, times) in turns {
            let cpu_before = process_cpu();
            let answers = load_times(seconds, connections, |_, _| world.create(|n| n)).await?;
            let cpu = cpu_before.zip(process_cpu()).and_then(|(before, after)| after.checked_sub(before));
            times.add(answers, cpu);
        }
        empty_groups = empty_groups.max(empty.created.load(Ordering::Relaxed));
        empty.stop().await?;
    }
    // On PostgreSQL most of a creation's CPU is the database server's, in processes of its own.
    let cpu_per_creation = match on_postgres {
        false => (after_prefill.cpu_per_answer(), in_empty.cpu_per_answer()),
        true => (None, None),
    };
    let (create_after, create_empty) = (after_prefill.into_load(), in_empty.into_load());
    server.stop().await?;

    // The other parts, each on its own data.
    let campaign = campaign::run(1000, 40, false).await?;
    let webhooks_many = webhooks::run(5000, 100, postgres).await?;
    let webhooks_one = webhooks::run(2000, 1, postgres).await?;
    let scale = scale::measure(scale_numbers as usize, scale_groups as usize, 60, connections).await?;

    print_table_head();
    let row = |name: &str, figure: &Load, limit: &str, limit_rate: f64, target: &str| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {limit} | {:.2} | {target} |",
            figure.per_second,
            figure.p50.as_secs_f64() * 1000.0,
            figure.p99.as_secs_f64() * 1000.0,
            figure.per_second / limit_rate,
        );
    };
    let sqlite_limit = match on_postgres {
        true => format!("raw PostgreSQL, {connections} connections: {raw_sqlite:.0} tx/s"),
        false => format!("raw SQLite FULL: {raw_sqlite:.0} tx/s"),
    };
    let http_limit = format!("GET /healthz: {:.0}/s", trivial.per_second);
    row("GET /healthz (the HTTP limit)", &trivial, &http_limit, trivial.per_second, "—");
    row("create a group, 1 sandbox number", &create_one, &sqlite_limit, raw_sqlite, "—");
    row(&format!("create a group, {NUMBERS} sandbox numbers"), &create_many, &sqlite_limit, raw_sqlite, "≥ 0.45");
    row(&format!("GET one group, 200 in turn ({groups} exist)"), &get_one, &http_limit, trivial.per_second, "≥ 0.5");
    row("list 50 groups", &list_fifty, &http_limit, trivial.per_second, "≥ 0.5");
    row(
        &format!("list 50 groups while one connection creates groups ({:.0}/s)", creating.per_second),
        &list_fifty_creating,
        &http_limit,
        trivial.per_second,
        "—",
    );
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
    let engine_again = if on_postgres { "raw PostgreSQL transactions" } else { "raw SQLite FULL transactions" };
    println!(
        "| {engine_again} again, just before the next figure | {raw_again:.0} | | | {sqlite_limit} (at the start) | \
         {:.2} | — |",
        raw_again / raw_sqlite
    );
    row(
        &format!(
            "create a group, {NUMBERS} numbers, after {groups_before} groups exist ({CREATION_TURNS} turns of {} s; \
             at the start: {:.0}/s)",
            seconds.as_secs(),
            create_many.per_second
        ),
        &create_after,
        &format!(
            "the same in empty worlds, in turns with it: {:.0}/s (a new server each turn, up to {empty_groups} \
             groups{})",
            create_empty.per_second,
            match cpu_per_creation {
                (Some(after), Some(empty)) => format!(
                    "; the bench process's CPU per creation, client and servers: {} µs at {groups_before} groups, \
                     {} µs in the empty worlds",
                    after.as_micros(),
                    empty.as_micros()
                ),
                _ => String::new(),
            }
        ),
        create_empty.per_second,
        "≥ 0.9 (at 100,000)",
    );
    println!(
        "| the campaign: {} groups on {} numbers, WhatsApp's limits on, simulated clock ({}/{} done, {} rate-limit \
         hits, {} bans, {} duplicates, {} lost, time / pacing minimum {:.4}) | | | {:.0} | < 30 s wall{} | {:.2} | < 1 |",
        campaign.groups,
        campaign.numbers,
        campaign.completed,
        campaign.groups,
        campaign.rate_limit_hits,
        campaign.bans,
        campaign.duplicates,
        campaign.lost,
        campaign.ratio,
        campaign.wall.as_secs_f64() * 1000.0,
        if campaign.safe() { "" } else { " — SAFETY TARGETS MISSED" },
        campaign.wall.as_secs_f64() / 30.0,
    );
    for (name, (elapsed, delivered)) in
        [("over 100 groups", webhooks_many), ("in one group (one after another, in order)", webhooks_one)]
    {
        let rate = delivered as f64 / elapsed.as_secs_f64();
        println!(
            "| webhook deliveries {name}, to a receiver on 127.0.0.1 | {rate:.0} | | | {http_limit} | {:.2} | — |",
            rate / trivial.per_second
        );
    }
    scale_rows(&scale);
    Ok(())
}

/// `convene serve`'s server in this process, on a fresh data directory (or a scratch PostgreSQL database), with
/// `NUMBERS` sandbox numbers and a client for its API.
struct BenchServer {
    client: reqwest::Client,
    base: String,
    bearer: String,
    numbers: Vec<i64>,
    /// Creations asked of this server so far; the count numbers each one's subject and first participant.
    created: AtomicUsize,
    service: convene_server::Service,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    scratch: Option<convene_store::ScratchDatabase>,
    dir: tempfile::TempDir,
}

impl BenchServer {
    async fn start(postgres: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = Config::for_directory(dir.path());
        config.bootstrap_sandbox_instance = true;
        let scratch = match postgres {
            Some(server) => Some(convene_store::ScratchDatabase::create(server).await?),
            None => None,
        };
        if let Some(database) = &scratch {
            config.database_url = database.url().to_owned();
        }
        let state = AppState::open(&config, Arc::new(SystemClock)).await?;
        let service = state.service.clone();
        let first = service.bootstrap(true).await?.expect("a fresh data directory");
        let mut numbers = vec![first.instance.expect("a bootstrap sandbox number").0.id.0];
        for i in 1..NUMBERS {
            numbers.push(
                service.instances().create(convene_sandbox::KIND, Some(&format!("Bench {i}")), None).await?.0.id.0,
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { convene_server::serve(listener, state, &config, shutdown).await }
        });
        // Every figure keeps to its connections, each kept open between requests. An answer that does not come
        // within a minute fails the run instead of holding it up: the harness stops by itself.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let bearer = format!("Bearer {}", first.api_key);
        Ok(Self {
            client,
            base,
            bearer,
            numbers,
            created: AtomicUsize::new(0),
            service,
            shutdown,
            serving,
            scratch,
            dir,
        })
    }

    /// The next creation asked of this server: the n-th goes to number `pick(n)`.
    fn create(
        &self,
        pick: fn(usize) -> usize,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + use<> {
        let n = self.created.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "instance_id": self.numbers[pick(n) % self.numbers.len()],
            "subject": format!("Bench group {n}"),
            "participants": [format!("+1713715{:04}", n % 10_000), "+18647351567", "+447700176576"],
        });
        self.client.post(format!("{}/v1/groups", self.base)).header("authorization", &self.bearer).json(&body).send()
    }

    /// Raw transactions a second on this server's engine: on SQLite in a new file `name`.db beside the server's
    /// files, on PostgreSQL in new tables of its scratch database.
    async fn raw_transactions(&self, name: &str, seconds: Duration, connections: usize) -> anyhow::Result<f64> {
        match &self.scratch {
            Some(database) => raw_postgres_transactions(database.url(), seconds, connections).await,
            None => raw_sqlite_transactions(&self.dir.path().join(format!("{name}.db")), seconds).await,
        }
    }

    /// Stops the server and its service, drops its scratch database and removes its data directory.
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.serving.await??;
        self.service.shutdown().await;
        if let Some(database) = self.scratch {
            database.drop_now().await.ok();
        }
        Ok(())
    }
}

/// Answer times gathered over several turns of `load_times`, the time they took together, and the CPU time this
/// process spent in them.
#[derive(Default)]
struct Turns {
    times: Vec<Duration>,
    elapsed: Duration,
    cpu: Duration,
    /// Whether a turn's CPU time could not be read (off Linux, or a reading that went backwards).
    cpu_unread: bool,
}

impl Turns {
    /// Adds a turn and the process's CPU time in it.
    fn add(&mut self, (times, elapsed): (Vec<Duration>, Duration), cpu: Option<Duration>) {
        self.times.extend(times);
        self.elapsed += elapsed;
        match cpu {
            Some(cpu) => self.cpu += cpu,
            None => self.cpu_unread = true,
        }
    }

    /// The process's CPU time per answer over the turns.
    fn cpu_per_answer(&self) -> Option<Duration> {
        let answers = u32::try_from(self.times.len()).ok().filter(|n| *n > 0)?;
        (!self.cpu_unread).then(|| self.cpu / answers)
    }

    fn into_load(self) -> Load {
        Load::of(self.times, self.elapsed)
    }
}

/// The CPU time this process has used, in all its threads (user and system), from `/proc/self/stat`, whose times
/// are in USER_HZ ticks: 100 a second on Linux (`sysconf(_SC_CLK_TCK)`, fixed for this interface). `None` off Linux.
fn process_cpu() -> Option<Duration> {
    cpu_time_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The user and system time in a `/proc/<pid>/stat` line: its fields 14 and 15 (utime, stime), counted after the
/// command's name, which may hold spaces and parentheses but ends at the line's last parenthesis.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    const TICKS_PER_SECOND: u64 = 100;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Runs `request` from `connections` tasks for `seconds`, each waiting for its answer before the next; every answer
/// must be a success.
async fn load<F, Fut>(seconds: Duration, connections: usize, request: F) -> anyhow::Result<Load>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let (times, elapsed) = load_times(seconds, connections, request).await?;
    Ok(Load::of(times, elapsed))
}

/// `load`'s answer times, and how long it ran.
async fn load_times<F, Fut>(
    seconds: Duration,
    connections: usize,
    request: F,
) -> anyhow::Result<(Vec<Duration>, Duration)>
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
    Ok((all, started.elapsed()))
}

/// Sends `request` at a fixed `rate` for `seconds` whatever the answers' pace (open loop), so the latencies are those
/// of a server under that load; each is timed from when it was due, so a server that falls behind shows it. Every
/// answer must be a success.
///
/// As wrk2 does, the requests go out over `connections` connections, each sending the ones due on it in turn: one
/// that is late delays those behind it on its connection, and they count as late too. (A task and, when every
/// connection was busy, a new connection per request made a stall of a few milliseconds grow into seconds of
/// overload on two cores: opening connections and scheduling tasks took the CPU the server needed to catch up.)
async fn load_at_rate<F, Fut>(seconds: Duration, connections: usize, rate: f64, request: F) -> anyhow::Result<Load>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let rate = rate.max(1.0);
    let total = (rate * seconds.as_secs_f64()).round() as usize;
    let started = tokio::time::Instant::now();
    // Each connection is a task of its own: driven together from this one task, the client's own work for thousands
    // of requests a second ran on one thread and was counted as the server's latency.
    let mut senders = Vec::with_capacity(connections);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (send, mut due_requests) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Fut)>();
        senders.push(send);
        workers.spawn(async move {
            let mut times = Vec::new();
            while let Some((due, response)) = due_requests.recv().await {
                let response = response.await?;
                let status = response.status();
                response.bytes().await?;
                anyhow::ensure!(status.is_success(), "answered {status}");
                times.push((due - started, due.elapsed()));
            }
            anyhow::Ok(times)
        });
    }
    // A request's future does nothing until its connection's task awaits it, once the one before it is answered.
    for sent in 0..total {
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        tokio::time::sleep_until(due).await;
        let _ = senders[sent % senders.len()].send((due, request(sent)));
    }
    drop(senders);
    let mut times = Vec::with_capacity(total);
    while let Some(done) = workers.join_next().await {
        times.extend(done??);
    }
    if std::env::var_os("CONVENE_BENCH_TIMELINE").is_some() {
        print_timeline(&times);
    }
    Ok(Load::of(times.into_iter().map(|(_, took)| took).collect(), started.elapsed()))
}

/// With `CONVENE_BENCH_TIMELINE` set, when the slow answers of an open-loop figure came: for each quarter second
/// with one slower than 5 ms, how many there were and the slowest (to tell a stall from a steady queue).
fn print_timeline(times: &[(Duration, Duration)]) {
    let mut quarters = std::collections::BTreeMap::<u128, (usize, usize, Duration)>::new();
    for &(due, took) in times {
        let quarter = quarters.entry(due.as_millis() / 250).or_default();
        quarter.0 += 1;
        if took > Duration::from_millis(5) {
            quarter.1 += 1;
            quarter.2 = quarter.2.max(took);
        }
    }
    let slow: Vec<String> = quarters
        .iter()
        .filter(|(_, (_, slow, _))| *slow > 0)
        .map(|(q, (n, slow, most))| format!("{:.2}s {slow}/{n} ≤{:.0}ms", *q as f64 / 4.0, most.as_secs_f64() * 1000.0))
        .collect();
    eprintln!("timeline: {}", slow.join(", "));
}

/// Transactions a second that raw SQLite commits writing a group row and three participant rows, with Convene's
/// settings (WAL, `synchronous = FULL`), one after another for `seconds`.
async fn raw_sqlite_transactions(file: &std::path::Path, seconds: Duration) -> anyhow::Result<f64> {
    let options = SqliteConnectOptions::new()
        .filename(file)
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

/// Transactions a second that PostgreSQL commits writing a group row and three participant rows, from `connections`
/// connections at once (PostgreSQL shares a flush between concurrent commits), for `seconds`.
async fn raw_postgres_transactions(url: &str, seconds: Duration, connections: usize) -> anyhow::Result<f64> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(connections as u32).connect(url).await?;
    // Dropped first: measured again later in the run, the tables start empty, as SQLite's new file does.
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS raw_groups, raw_participants; \
         CREATE TABLE raw_groups (id TEXT PRIMARY KEY, instance_id BIGINT NOT NULL, jid TEXT NOT NULL, \
         subject TEXT NOT NULL, created_at BIGINT NOT NULL); \
         CREATE TABLE raw_participants (group_id TEXT NOT NULL, phone TEXT NOT NULL, outcome TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let started = Instant::now();
    let writers = (0..connections).map(|_| async {
        while started.elapsed() < seconds {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let mut tx = pool.begin().await?;
            let id = format!("group-{n}");
            sqlx::query("INSERT INTO raw_groups VALUES ($1, 7103000001, $2, $3, $4)")
                .bind(&id)
                .bind(format!("1203630{n:011}@g.us"))
                .bind(format!("Bench group {n}"))
                .bind(n as i64)
                .execute(&mut *tx)
                .await?;
            for phone in ["+17137157533", "+18647351567", "+447700176576"] {
                sqlx::query("INSERT INTO raw_participants VALUES ($1, $2, 'added')")
                    .bind(&id)
                    .bind(phone)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            done.fetch_add(1, Ordering::Relaxed);
        }
        anyhow::Ok(())
    });
    for writer in futures_util::future::join_all(writers).await {
        writer?;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(not(target_os = "linux"), ignore = "reads /proc/self/stat, which Linux has")]
    fn the_process_cpu_time_grows_with_the_work_this_process_does() {
        // Arrange
        let start = process_cpu().expect("/proc/self/stat is read");
        let deadline = Instant::now() + Duration::from_secs(20);

        // Act: spin until 200 ms more of CPU time is read, or the deadline.
        let mut spins = 0u64;
        let mut read = start;
        while read < start + Duration::from_millis(200) && Instant::now() < deadline {
            for _ in 0..100_000 {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
            read = process_cpu().unwrap();
        }

        // Assert
        assert!(read >= start + Duration::from_millis(200), "read {read:?} after {start:?}");
    }

    #[test]
    fn the_cpu_time_is_read_from_the_fields_after_the_name_in_user_hz_ticks() {
        // A name holding ") " and digits; utime 250 and stime 30 ticks, cutime and cstime (children) left out.
        let stat = "42 (a) 7 8) R 1 42 42 0 -1 4194304 10 0 0 0 250 30 999 999 20 0 3 0 100 1000 200";

        assert_eq!(cpu_time_of_stat(stat), Some(Duration::from_millis(2800)));
        assert_eq!(cpu_time_of_stat("42 (a) R 1"), None, "a line cut short");
    }

    #[test]
    fn cpu_per_answer_is_the_turns_cpu_over_all_their_answers_and_unknown_if_a_turn_could_not_be_read() {
        // Arrange: 30 ms over 3 answers, then 30 ms over 1 (the mean of the two turns' own figures would be 20 ms).
        let answers = |n: usize| (vec![Duration::from_millis(1); n], Duration::from_secs(1));
        let mut turns = Turns::default();
        turns.add(answers(3), Some(Duration::from_millis(30)));
        turns.add(answers(1), Some(Duration::from_millis(30)));

        // Act
        let per_answer = turns.cpu_per_answer();
        turns.add(answers(1), None);

        // Assert
        assert_eq!(per_answer, Some(Duration::from_millis(15)));
        assert_eq!(turns.cpu_per_answer(), None, "a turn whose CPU time was not read");
        assert_eq!(Turns::default().cpu_per_answer(), None, "no answers");
    }
}
