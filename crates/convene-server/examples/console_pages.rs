//! The console's page load at scale: 1,000 sandbox numbers and 100,000 groups in a SQLite file. Each page is asked
//! through the whole router in this process (session cookie, CSP layer, rendering), so the time printed is the
//! server's, without a network; `GET /healthz` through the same router is printed beside it as the floor. The target
//! (issue 12) is under 200 ms for each page.
//!
//! `cargo run --release -p convene-server --example console_pages [-- NUMBERS GROUPS]` (defaults: 1000 100000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use convene_core::events::Change;
use convene_core::store::GroupRecord;
use convene_core::{GroupId, GroupJid, GroupSettings, SystemClock};
use convene_server::{AppState, Config};
use tower::ServiceExt as _;

/// Timed requests per page, after `WARM_UP` untimed ones.
const RUNS: usize = 30;
const WARM_UP: usize = 3;
const LIMIT: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let numbers = args.first().copied().unwrap_or(1000).max(1);
    let groups = args.get(1).copied().unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let config = Config::for_directory(dir.path());
    let state = AppState::open(&config, Arc::new(SystemClock)).await?;
    let service = state.service.clone();
    let admin = service.bootstrap(false).await?.expect("a fresh data directory").api_key;

    // Arrange: the numbers through the service (each a sandbox connector), the groups straight into the store, a
    // thousand to a transaction, spread over the numbers; one more group made on the network, for its own page.
    let started = Instant::now();
    let mut instance_ids = Vec::with_capacity(numbers);
    for i in 0..numbers {
        let (record, _) = service.instances().create(convene_sandbox::KIND, Some(&format!("Desk {i}")), None).await?;
        instance_ids.push(record.id);
    }
    let now = service.now();
    for chunk in (0..groups).collect::<Vec<_>>().chunks(1000) {
        let records: Vec<GroupRecord> = chunk
            .iter()
            .map(|&i| GroupRecord {
                id: GroupId::new(),
                instance_id: instance_ids[i % numbers],
                jid: GroupJid::parse(&format!("1203630{:011}@g.us", i)).expect("a group id"),
                subject: format!("Customer {i} | Onboarding"),
                description: None,
                settings: GroupSettings::default(),
                created_at: now,
                updated_at: now,
                left_at: None,
                creation_job_id: None,
            })
            .collect();
        let changes: Vec<Change<'_>> = records.iter().map(Change::InsertGroup).collect();
        service.store().commit(&changes, &[]).await?;
    }
    let new = convene_server::service::NewGroup {
        subject: "War room".into(),
        participants: vec!["+17137157533".into()],
        ..Default::default()
    };
    let made = service.create_group(instance_ids[0], new, convene_server::service::RetryGuard::DuplicateWindow).await?;
    println!("seeded {numbers} numbers and {groups} groups in {:.1} s", started.elapsed().as_secs_f64());

    let (secret, _) = service.keys().sign_in(&admin).await?;
    let router = convene_server::router(state, config.max_body_bytes);
    let pages = [
        ("GET /healthz (the floor)", "/healthz".to_owned()),
        ("numbers, first page", "/console/numbers".to_owned()),
        ("a number", format!("/console/numbers/{}", instance_ids[0])),
        ("groups, first page", "/console/groups".to_owned()),
        ("groups of one number", format!("/console/groups?number={}", instance_ids[numbers / 2])),
        ("groups, subject search (one match)", format!("/console/groups?q=customer+{}+%7C", groups / 2)),
        ("a group (members from the network)", format!("/console/groups/{}", made.group.record.id.0)),
        ("campaigns", "/console/campaigns".to_owned()),
        ("sandbox", "/console/sandbox".to_owned()),
    ];
    println!();
    println!("| page ({numbers} numbers, {groups} groups) | p50 ms | p95 ms | max ms | limit |");
    println!("|---|---:|---:|---:|---|");
    let mut over = 0;
    for (name, path) in pages {
        let mut times = Vec::with_capacity(RUNS);
        for run in 0..WARM_UP + RUNS {
            let request =
                Request::get(&path).header(header::COOKIE, format!("convene_session={secret}")).body(Body::empty())?;
            let began = Instant::now();
            let response = router.clone().oneshot(request).await?;
            let status = response.status();
            axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            let took = began.elapsed();
            anyhow::ensure!(status == StatusCode::OK, "{path} answered {status}");
            if run >= WARM_UP {
                times.push(took);
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
        let worst = at(1.0);
        if path != "/healthz" && Duration::from_secs_f64(at(0.95) / 1000.0) > LIMIT {
            over += 1;
        }
        println!("| {name} | {:.2} | {:.2} | {worst:.2} | {} ms |", at(0.5), at(0.95), LIMIT.as_millis());
    }
    println!();
    println!("{over} pages over the limit at p95");
    service.shutdown().await;
    Ok(())
}
