//! Webhook delivery throughput: events written into a SQLite file (through the store, as the service writes them),
//! delivered by the real dispatcher over HTTP to a receiver on 127.0.0.1 that answers 204. Prints deliveries per
//! second, once with the events spread over many groups (deliveries run side by side) and once all in one group
//! (strictly one after another, as per-group order demands).
//!
//! `cargo run --release -p convene-bench -- webhooks [EVENTS GROUPS]` prints it alone (defaults: 5000 events over
//! 100 groups); with `DATABASE_URL=postgres://…` on PostgreSQL instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use convene_core::events::{EventFilter, EventType, NewEvent, WebhookEndpoint};
use convene_core::{Clock, InstanceId, Store, SystemClock};
use convene_server::delivery::{Dispatcher, SealsSecrets as _, Secret, WebhookConfig, open_secret_box};
use uuid::Uuid;

/// Prints deliveries per second for `events` events over `groups` groups, then all in one group.
pub async fn print(events: usize, groups: usize, postgres: Option<&str>) -> anyhow::Result<()> {
    println!("webhook throughput: {events} events, one endpoint on 127.0.0.1");
    for (label, keys) in [(format!("{groups} groups"), groups.max(1)), ("1 group".to_owned(), 1)] {
        let (elapsed, delivered) = run(events, keys, postgres).await?;
        println!(
            "  {label:>12}: {delivered} deliveries in {:.2} s = {:.0} deliveries/s",
            elapsed.as_secs_f64(),
            delivered as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Delivers `events` events, ordered within `keys` groups, to a receiver on 127.0.0.1 through the real dispatcher,
/// on a fresh SQLite file or, given a PostgreSQL server's URL, a scratch database on it: how long it took, and how
/// many arrived.
pub async fn run(events: usize, keys: usize, postgres: Option<&str>) -> anyhow::Result<(Duration, usize)> {
    let dir = tempfile::tempdir()?;
    let database = match postgres {
        Some(server) => Some(convene_store::ScratchDatabase::create(server).await?),
        None => None,
    };
    let sqlite = format!("sqlite://{}", dir.path().join("convene.db").display());
    let store: Arc<dyn Store> = convene_store::connect(database.as_ref().map_or(sqlite.as_str(), |d| d.url())).await?;

    let received = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counter = Arc::clone(&received);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config: WebhookConfig = toml_defaults()?;
    config.allow_private_targets = vec!["127.0.0.1".into()];
    let secrets = Arc::new(open_secret_box(&config, dir.path())?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let endpoint = WebhookEndpoint {
        id: Uuid::now_v7(),
        url: format!("http://{addr}/hook"),
        description: "throughput".into(),
        filter: EventFilter::all(),
        enabled: true,
        disabled_reason: None,
        secret: secrets.seal(&Secret::generate()),
        previous_secret: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store.insert_webhook_endpoint(&endpoint).await?;
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .map(|i| {
                let id = Uuid::now_v7();
                let payload = serde_json::json!({
                    "id": id, "type": "group.updated", "timestamp": now.to_rfc3339(), "instance_id": 1,
                    "data": {"group": {"jid": format!("{}@g.us", i % keys)}, "changed": ["subject"]}
                });
                NewEvent {
                    id,
                    event_type: EventType::GroupUpdated,
                    instance_id: Some(InstanceId(1)),
                    ordering_key: format!("group:{}", i % keys),
                    payload: payload.to_string(),
                    created_at: now,
                }
            })
            .collect();
        store.commit(&[], &batch).await?;
    }

    let dispatcher = Dispatcher::new(Arc::clone(&store), clock, config, secrets)?;
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < events {
        if dispatcher.deliver_due().await? == 0 && started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("stalled at {} of {events}", received.load(Ordering::Relaxed));
        }
    }
    let elapsed = started.elapsed();
    if let Some(db) = database {
        db.drop_now().await.ok();
    }
    Ok((elapsed, received.load(Ordering::Relaxed)))
}

/// The shipped `[webhooks]` defaults.
fn toml_defaults() -> anyhow::Result<WebhookConfig> {
    let dir = tempfile::tempdir()?;
    Ok(convene_server::Config::for_directory(dir.path()).webhooks)
}
