//! The campaign: many groups across many sandbox numbers with WhatsApp's creation limits switched on, on a
//! simulated clock, through the real queue, pacing, worker and store. It reports what happened against the targets:
//! all completed, no rate-limit hits, no bans, no duplicates, nothing lost, within 5% of the pacing minimum, and how
//! long it took on the wall clock.
//!
//! `cargo run --release -p convene-bench -- campaign [GROUPS NUMBERS]` prints it alone; defaults: 1000 groups, 40
//! numbers, each number paced as a real one (one group per 5 minutes, 30 a day) while the network refuses
//! creations less than 4 minutes apart or past 40 a day, and bans after 3 refusals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::store::{JobListQuery, JobState};
use convene_core::{Clock, ManualClock, PacingPolicy, Timestamp};
use convene_sandbox::NetworkLimits;
use convene_server::service::{NewGroup, Service};
use convene_server::{Config, Networks};

/// What a campaign did.
pub struct Campaign {
    pub groups: usize,
    pub numbers: usize,
    pub completed: usize,
    pub rate_limit_hits: u64,
    pub bans: u64,
    pub duplicates: usize,
    pub lost: usize,
    /// Simulated time over the pacing minimum.
    pub ratio: f64,
    pub wall: Duration,
}

impl Campaign {
    /// Every safety target met (the wall time is judged apart).
    pub fn safe(&self) -> bool {
        self.completed == self.groups
            && self.rate_limit_hits == 0
            && self.bans == 0
            && self.duplicates == 0
            && self.lost == 0
            && self.ratio <= 1.05
    }
}

/// Runs `groups` creations over `numbers` numbers; with `verbose`, prints each figure.
pub async fn run(groups: usize, numbers: usize, verbose: bool) -> anyhow::Result<Campaign> {
    let policy = PacingPolicy::REAL_NUMBER;
    let limits =
        NetworkLimits { enabled: true, min_interval_secs: 240, max_per_day: 40, ban_after_hits: 3, ban_secs: 86_400 };

    // A gateway on a temporary SQLite file, a simulated clock and an in-memory sandbox with its limits on.
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_directory(dir.path());
    config.set("sandbox.pacing", policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    config.set("sandbox.network_limits", &limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = ManualClock::new(Timestamp::from_millis(1_795_392_000_000));
    let store = convene_store::connect(&config.database_url).await?;
    let service = Service::start(
        store.clone(),
        Networks::in_memory(&config, Arc::new(clock.clone())).await?,
        Arc::new(clock.clone()),
        config.creation.clone(),
        convene_server::service::Placement::Alone,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut instance_ids = Vec::new();
    for _ in 0..numbers {
        let (instance, _) = service
            .instances()
            .create(convene_sandbox::KIND, None, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        instance_ids.push(instance.id);
    }
    let subjects: Vec<String> = (0..groups).map(|i| format!("Campaign group {i:04}")).collect();
    let batch: Vec<NewGroup> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| NewGroup {
            subject: s.clone(),
            participants: vec![format!("+1713715{:04}", i % 10_000), format!("+1864735{:04}", (i * 7) % 10_000)],
            ..NewGroup::default()
        })
        .collect();

    // Run the campaign: the worker's passes, the clock jumping to the next due job.
    let started = clock.now();
    let wall = Instant::now();
    let mut enqueued = Vec::new();
    for chunk in batch.chunks(1000) {
        enqueued
            .push(service.enqueue_groups(&instance_ids, chunk.to_vec()).await.map_err(|e| anyhow::anyhow!("{e:?}"))?);
    }
    let mut passes = 0u64;
    loop {
        service.run_due_jobs().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        passes += 1;
        match service.next_job_due().await.map_err(|e| anyhow::anyhow!("{e:?}"))? {
            Some(at) if at > clock.now() => clock.set(at),
            Some(_) => {}
            None => break,
        }
    }
    let took = started.until(clock.now());

    // What happened.
    let mut completed = 0;
    for batch in &enqueued {
        let jobs = store
            .list_jobs(&JobListQuery {
                state: Some(JobState::Succeeded),
                batch_id: Some(batch.batch_id),
                before: None,
                limit: 500,
            })
            .await?;
        // list_jobs pages at 500: count by asking for each job instead when batches are large.
        completed += if jobs.len() < 500 { jobs.len() } else { count_succeeded(&*store, batch).await? };
    }
    let mut on_network: HashMap<String, usize> = HashMap::new();
    for g in service.sandbox().groups().await? {
        *on_network.entry(g.subject).or_default() += 1;
    }
    let duplicates: usize = on_network.values().map(|n| n.saturating_sub(1)).sum();
    let lost = subjects.iter().filter(|s| !on_network.contains_key(*s)).count();
    let stats = service.sandbox().stats();
    let per_number = groups.div_ceil(numbers) as u64;
    let minimum = policy.minimum_duration(per_number);
    let ratio = if minimum.is_zero() { 1.0 } else { took.as_secs_f64() / minimum.as_secs_f64() };

    let campaign = Campaign {
        groups,
        numbers,
        completed,
        rate_limit_hits: stats.rate_limit_hits,
        bans: stats.bans,
        duplicates,
        lost,
        ratio,
        wall: wall.elapsed(),
    };
    service.shutdown().await;
    if !verbose {
        return Ok(campaign);
    }
    println!("campaign: {groups} groups over {numbers} sandbox numbers");
    println!(
        "  pacing per number:       one per {} s, burst {}, at most {:?} a day",
        policy.min_interval_secs, policy.burst, policy.daily_cap
    );
    println!(
        "  network limits:          {} s apart, {} a day, ban after {} refusals",
        limits.min_interval_secs, limits.max_per_day, limits.ban_after_hits
    );
    println!("  groups completed:        {completed} / {groups}");
    println!("  network rate-limit hits: {}", stats.rate_limit_hits);
    println!("  temporary bans:          {}", stats.bans);
    println!("  duplicates:              {duplicates}");
    println!("  lost requests:           {lost}");
    println!("  simulated time:          {}", hms(took));
    println!("  pacing minimum:          {} ({per_number} groups per number)", hms(minimum));
    println!("  time / minimum:          {ratio:.4}");
    println!("  worker passes:           {passes}; wall time {:.1} s", campaign.wall.as_secs_f64());
    println!("  targets met:             {}", if campaign.safe() { "yes" } else { "NO" });
    Ok(campaign)
}

async fn count_succeeded(
    store: &dyn convene_core::Store,
    batch: &convene_server::service::Enqueued,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for job in &batch.jobs {
        if store.get_job(job.id).await?.state == JobState::Succeeded {
            n += 1;
        }
    }
    Ok(n)
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60)
}
