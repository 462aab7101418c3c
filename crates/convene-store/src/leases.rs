//! The queries behind `LeaseStore` (tables `number_leases` and `lease_history`, migration 0011), shared by both
//! backends like those in `sql`. Taking a lease is one conditional upsert, so of two nodes racing for a free or
//! expired lease exactly one wins, and its history row is written in the same transaction.

use convene_core::store::DbResult;
use convene_core::{ClusterNode, DbError, InstanceId, Lease, Timestamp};

use crate::sql::{Backend, Statement};
use crate::stored::Columns;

fn read(row: &dyn Columns) -> DbResult<Lease> {
    Ok(Lease {
        instance: InstanceId(row.int("instance_id")?),
        node: row.text("node")?.to_owned(),
        fence: row.int("fence")?,
        acquired_at: Timestamp::from_millis(row.int("acquired_at")?),
        expires_at: Timestamp::from_millis(row.int("expires_at")?),
    })
}

pub(crate) async fn take(
    db: &impl Backend,
    instance: InstanceId,
    node: &str,
    now: Timestamp,
    until: Timestamp,
) -> DbResult<Option<Lease>> {
    let take = Statement::new(
        "INSERT INTO number_leases (instance_id, node, fence, acquired_at, expires_at) VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (instance_id) DO UPDATE SET node = excluded.node, fence = number_leases.fence + 1, \
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at \
         WHERE number_leases.expires_at <= $3",
    )
    .bind(instance.0)
    .bind(node)
    .bind(now.as_millis())
    .bind(until.as_millis())
    .must_change();
    let record = Statement::new(
        "INSERT INTO lease_history (instance_id, fence, node, acquired_at, expires_at) \
         SELECT instance_id, fence, node, acquired_at, expires_at FROM number_leases WHERE instance_id = $1",
    )
    .bind(instance.0);
    match db.execute_all(vec![take, record]).await {
        Ok(()) => {}
        // Another node holds it.
        Err(DbError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    }
    let taken = Statement::new(
        "SELECT instance_id, node, fence, acquired_at, expires_at FROM number_leases \
         WHERE instance_id = $1 AND node = $2 AND acquired_at = $3 AND expires_at = $4",
    )
    .bind(instance.0)
    .bind(node)
    .bind(now.as_millis())
    .bind(until.as_millis());
    Ok(db.fetch(taken, read).await?.into_iter().next())
}

pub(crate) async fn renew(db: &impl Backend, lease: &Lease, now: Timestamp, until: Timestamp) -> DbResult<bool> {
    let renew = Statement::new(
        "UPDATE number_leases SET expires_at = $4 \
         WHERE instance_id = $1 AND node = $2 AND fence = $3 AND expires_at > $5",
    )
    .bind(lease.instance.0)
    .bind(lease.node.as_str())
    .bind(lease.fence)
    .bind(until.as_millis())
    .bind(now.as_millis());
    Ok(db.execute(renew).await? == 1)
}

pub(crate) async fn release(db: &impl Backend, lease: &Lease, now: Timestamp) -> DbResult<()> {
    let release = Statement::new(
        "UPDATE number_leases SET expires_at = $4 \
         WHERE instance_id = $1 AND node = $2 AND fence = $3 AND expires_at > $4",
    )
    .bind(lease.instance.0)
    .bind(lease.node.as_str())
    .bind(lease.fence)
    .bind(now.as_millis());
    db.execute(release).await.map(drop)
}

pub(crate) async fn all(db: &impl Backend) -> DbResult<Vec<Lease>> {
    let select = Statement::new(
        "SELECT instance_id, node, fence, acquired_at, expires_at FROM number_leases ORDER BY instance_id",
    );
    db.fetch(select, read).await
}

pub(crate) async fn history(db: &impl Backend, instance: InstanceId) -> DbResult<Vec<Lease>> {
    let select = Statement::new(
        "SELECT instance_id, node, fence, acquired_at, expires_at FROM lease_history WHERE instance_id = $1 \
         ORDER BY fence",
    )
    .bind(instance.0);
    db.fetch(select, read).await
}

/// The leases `node` holds at `now`, by instance.
fn held_by(node: &str, now: Timestamp) -> Statement {
    Statement::new(
        "SELECT instance_id, node, fence, acquired_at, expires_at FROM number_leases \
         WHERE node = $1 AND expires_at > $2 ORDER BY instance_id",
    )
    .bind(node)
    .bind(now.as_millis())
}

/// Takes, for `node`, up to `limit` instances' leases that nobody holds at `now` (never taken, released, or expired),
/// lowest ids first, in one transaction with their history rows. Racing nodes each get their own: the upsert checks
/// expiry again on the row as it is when it writes (PostgreSQL re-reads a row another transaction changed; SQLite
/// writes one transaction at a time).
pub(crate) async fn take_free(
    db: &impl Backend,
    node: &str,
    now: Timestamp,
    until: Timestamp,
    limit: u32,
) -> DbResult<Vec<Lease>> {
    // The SELECT's own WHERE also lets SQLite read the ON CONFLICT as the upsert's, not as a join's.
    let take = Statement::new(
        "INSERT INTO number_leases (instance_id, node, fence, acquired_at, expires_at) \
         SELECT i.id, $1, 1, $2, $3 FROM instances i LEFT JOIN number_leases l ON l.instance_id = i.id \
         WHERE l.instance_id IS NULL OR l.expires_at <= $2 ORDER BY i.id LIMIT $4 \
         ON CONFLICT (instance_id) DO UPDATE SET node = excluded.node, fence = number_leases.fence + 1, \
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at \
         WHERE number_leases.expires_at <= $2",
    )
    .bind(node)
    .bind(now.as_millis())
    .bind(until.as_millis())
    .bind(i64::from(limit));
    let record = Statement::new(
        "INSERT INTO lease_history (instance_id, fence, node, acquired_at, expires_at) \
         SELECT instance_id, fence, node, acquired_at, expires_at FROM number_leases \
         WHERE node = $1 AND acquired_at = $2 AND expires_at = $3 \
         ON CONFLICT (instance_id, fence) DO NOTHING",
    )
    .bind(node)
    .bind(now.as_millis())
    .bind(until.as_millis());
    db.execute_all(vec![take, record]).await?;
    let taken = Statement::new(
        "SELECT instance_id, node, fence, acquired_at, expires_at FROM number_leases \
         WHERE node = $1 AND acquired_at = $2 AND expires_at = $3 ORDER BY instance_id",
    )
    .bind(node)
    .bind(now.as_millis())
    .bind(until.as_millis());
    db.fetch(taken, read).await
}

/// Extends every lease `node` still holds at `now` to `until`; the leases it holds after.
pub(crate) async fn renew_all(db: &impl Backend, node: &str, now: Timestamp, until: Timestamp) -> DbResult<Vec<Lease>> {
    let renew = Statement::new("UPDATE number_leases SET expires_at = $3 WHERE node = $1 AND expires_at > $2")
        .bind(node)
        .bind(now.as_millis())
        .bind(until.as_millis());
    db.execute(renew).await?;
    db.fetch(held_by(node, now), read).await
}

/// Records that `node` is alive until `until` (first seen at `now`), unless another process under its id is alive
/// elsewhere; forgets nodes gone for a day.
pub(crate) async fn node_alive(
    db: &impl Backend,
    node: &ClusterNode,
    now: Timestamp,
    until: Timestamp,
) -> DbResult<bool> {
    const FORGOTTEN_AFTER_MS: i64 = 24 * 3600 * 1000;
    let alive = Statement::new(
        "INSERT INTO cluster_nodes (node, address, key_tag, home, started_at, seen_until) \
         VALUES ($1, $4, $5, $6, $2, $3) \
         ON CONFLICT (node) DO UPDATE SET seen_until = excluded.seen_until, address = excluded.address, \
         key_tag = excluded.key_tag, home = excluded.home \
         WHERE cluster_nodes.home = excluded.home OR cluster_nodes.seen_until <= $2",
    )
    .bind(node.node.as_str())
    .bind(now.as_millis())
    .bind(until.as_millis())
    .bind(node.address.as_str())
    .bind(node.key_tag.as_str())
    .bind(node.home.as_str())
    .must_change();
    let forget = Statement::new("DELETE FROM cluster_nodes WHERE seen_until < $1")
        .bind(now.as_millis().saturating_sub(FORGOTTEN_AFTER_MS));
    match db.execute_all(vec![alive, forget]).await {
        Ok(()) => Ok(true),
        Err(DbError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

fn read_node(row: &dyn Columns) -> DbResult<ClusterNode> {
    Ok(ClusterNode {
        node: row.text("node")?.to_owned(),
        address: row.text("address")?.to_owned(),
        key_tag: row.text("key_tag")?.to_owned(),
        home: row.text("home")?.to_owned(),
    })
}

/// The nodes alive at `now`, by id.
pub(crate) async fn live_nodes(db: &impl Backend, now: Timestamp) -> DbResult<Vec<ClusterNode>> {
    let select =
        Statement::new("SELECT node, address, key_tag, home FROM cluster_nodes WHERE seen_until > $1 ORDER BY node")
            .bind(now.as_millis());
    db.fetch(select, read_node).await
}

/// The live node holding `instance`'s lease at `now`.
pub(crate) async fn holder(db: &impl Backend, instance: InstanceId, now: Timestamp) -> DbResult<Option<ClusterNode>> {
    let select = Statement::new(
        "SELECT n.node, n.address, n.key_tag, n.home FROM number_leases l JOIN cluster_nodes n ON n.node = l.node \
         WHERE l.instance_id = $1 AND l.expires_at > $2 AND n.seen_until > $2",
    )
    .bind(instance.0)
    .bind(now.as_millis());
    Ok(db.fetch(select, read_node).await?.into_iter().next())
}

/// `node` stops: every lease it holds expires at `now`, so that the nodes left take its numbers at once, and it is no
/// longer counted among the nodes alive.
pub(crate) async fn leave(db: &impl Backend, node: &str, now: Timestamp) -> DbResult<()> {
    let release = Statement::new("UPDATE number_leases SET expires_at = $2 WHERE node = $1 AND expires_at > $2")
        .bind(node)
        .bind(now.as_millis());
    let gone = Statement::new("DELETE FROM cluster_nodes WHERE node = $1").bind(node);
    db.execute_all(vec![release, gone]).await
}
