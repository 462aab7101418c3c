//! The queries behind `LeaseStore` (tables `number_leases` and `lease_history`, migration 0011), shared by both
//! backends like those in `sql`. Taking a lease is one conditional upsert, so of two nodes racing for a free or
//! expired lease exactly one wins, and its history row is written in the same transaction.

use convene_core::store::DbResult;
use convene_core::{DbError, InstanceId, Lease, Timestamp};

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
