//! The queries behind `DeviceKeyStore` (table `device_keys`, migration 0010), shared by both backends like those in
//! `sql`. Writes go through the backend's one transaction path (`execute_all`; on SQLite the committer, which commits
//! concurrent writers together).

use convene_core::store::DbResult;
use convene_core::{DeviceKeyRow, DeviceKeyWrite, InstanceId};

use crate::sql::{Backend, Statement};
use crate::stored::Columns;

fn read(row: &dyn Columns) -> DbResult<DeviceKeyRow> {
    Ok(DeviceKeyRow {
        scope: row.text("scope")?.to_owned(),
        key: row.text("key")?.to_owned(),
        value: row.text("value")?.to_owned(),
        number: row.int("number")?,
    })
}

pub(crate) async fn get(
    db: &impl Backend,
    instance: InstanceId,
    space: &str,
    scope: &str,
    key: &str,
) -> DbResult<Option<DeviceKeyRow>> {
    let select = Statement::new(
        "SELECT scope, key, value, number FROM device_keys \
         WHERE instance_id = $1 AND space = $2 AND scope = $3 AND key = $4",
    )
    .bind(instance.0)
    .bind(space)
    .bind(scope)
    .bind(key);
    Ok(db.fetch(select, read).await?.into_iter().next())
}

pub(crate) async fn list(
    db: &impl Backend,
    instance: InstanceId,
    space: &str,
    scope: Option<&str>,
) -> DbResult<Vec<DeviceKeyRow>> {
    let select = Statement::new(
        "SELECT scope, key, value, number FROM device_keys \
         WHERE instance_id = $1 AND space = $2 AND ($3 IS NULL OR scope = $3) ORDER BY scope, key",
    )
    .bind(instance.0)
    .bind(space)
    .bind(scope);
    db.fetch(select, read).await
}

pub(crate) async fn write(db: &impl Backend, instance: InstanceId, writes: Vec<DeviceKeyWrite>) -> DbResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let id = instance.0;
    let statements = writes
        .into_iter()
        .map(|write| match write {
            DeviceKeyWrite::Put { space, scope, key, value, number } => Statement::new(
                "INSERT INTO device_keys (instance_id, space, scope, key, value, number) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (instance_id, space, scope, key) \
                 DO UPDATE SET value = excluded.value, number = excluded.number",
            )
            .bind(id)
            .bind(space)
            .bind(scope)
            .bind(key)
            .bind(value)
            .bind(number),
            DeviceKeyWrite::Renumber { space, scope, key, number } => Statement::new(
                "UPDATE device_keys SET number = $5 WHERE instance_id = $1 AND space = $2 AND scope = $3 AND key = $4",
            )
            .bind(id)
            .bind(space)
            .bind(scope)
            .bind(key)
            .bind(number),
            DeviceKeyWrite::Delete { space, scope, key } => Statement::new(
                "DELETE FROM device_keys WHERE instance_id = $1 AND space = $2 \
                 AND ($3 IS NULL OR scope = $3) AND ($4 IS NULL OR key = $4)",
            )
            .bind(id)
            .bind(space)
            .bind(scope)
            .bind(key),
        })
        .collect();
    db.execute_all(statements).await
}

pub(crate) async fn delete_numbered_up_to(
    db: &impl Backend,
    instance: InstanceId,
    space: &str,
    last: i64,
) -> DbResult<u64> {
    let delete = Statement::new(
        "DELETE FROM device_keys WHERE instance_id = $1 AND space = $2 AND number >= 1 AND number <= $3",
    )
    .bind(instance.0)
    .bind(space)
    .bind(last);
    db.execute(delete).await
}

pub(crate) async fn forget(db: &impl Backend, instance: InstanceId) -> DbResult<()> {
    db.execute(Statement::new("DELETE FROM device_keys WHERE instance_id = $1").bind(instance.0)).await.map(drop)
}
