//! [`PgKeyValue`]: the apps' key-value buckets in the cluster's database,
//! shared by every host. A write is acknowledged once committed.

use super::{Pg, fail, to_i64, to_u64};
use crate::error::Error;
use crate::kv::{KeyValue, LIST_PAGE, add, counter};

/// The schema; append, never edit. Keys sort by their bytes (`"C"`), as
/// in the embedded store.
const MIGRATIONS: &[&str] = &["CREATE TABLE kv (
        app TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (app, bucket, key)
    );"];

const UPSERT: &str = "INSERT INTO kv (app, bucket, key, value) VALUES ($1, $2, $3, $4)
     ON CONFLICT (app, bucket, key) DO UPDATE SET value = EXCLUDED.value";

/// The cluster's key-value store.
pub struct PgKeyValue {
    pg: Pg,
}

impl PgKeyValue {
    /// The store in `pg`, its schema brought up to date.
    pub async fn open(pg: Pg) -> Result<PgKeyValue, Error> {
        pg.migrate("kv", MIGRATIONS).await?;
        Ok(PgKeyValue { pg })
    }

    /// The row of one key, read by `select` (`SELECT value`, `SELECT 1`).
    async fn lookup(
        &self,
        select: &'static str,
        app: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<tokio_postgres::Row>, Error> {
        let doing = "reading a key";
        let client = self.pg.client(doing).await?;
        let sql = format!("{select} FROM kv WHERE app = $1 AND bucket = $2 AND key = $3");
        let stmt = client.prepare_cached(&sql).await.map_err(fail(doing))?;
        client
            .query_opt(&stmt, &[&app, &bucket, &key])
            .await
            .map_err(fail(doing))
    }
}

#[async_trait::async_trait]
impl KeyValue for PgKeyValue {
    async fn get(&self, app: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let row = self.lookup("SELECT value", app, bucket, key).await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set(&self, app: &str, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), Error> {
        let doing = "writing a key";
        let client = self.pg.client(doing).await?;
        let stmt = client.prepare_cached(UPSERT).await.map_err(fail(doing))?;
        client
            .execute(&stmt, &[&app, &bucket, &key, &value])
            .await
            .map_err(fail(doing))?;
        Ok(())
    }

    async fn delete(&self, app: &str, bucket: &str, key: &str) -> Result<(), Error> {
        self.delete_many(app, bucket, vec![key.to_string()]).await
    }

    async fn exists(&self, app: &str, bucket: &str, key: &str) -> Result<bool, Error> {
        Ok(self.lookup("SELECT 1", app, bucket, key).await?.is_some())
    }

    async fn list_keys(
        &self,
        app: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), Error> {
        let doing = "listing keys";
        let client = self.pg.client(doing).await?;
        // One more than a page says whether another page follows.
        let rows = client
            .query(
                "SELECT key FROM kv WHERE app = $1 AND bucket = $2 ORDER BY key
                 LIMIT $3 OFFSET $4",
                &[&app, &bucket, &(LIST_PAGE as i64 + 1), &to_i64(cursor)],
            )
            .await
            .map_err(fail(doing))?;
        Ok(crate::kv::page(
            rows.iter().map(|r| r.get(0)).collect(),
            cursor,
        ))
    }

    async fn increment(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, Error> {
        let doing = "incrementing a key";
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        // The key (existing or not) is locked until the commit, so
        // concurrent increments from any host add up.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2 || '/' || $3))",
            &[&app, &bucket, &key],
        )
        .await
        .map_err(fail(doing))?;
        let current: Option<Vec<u8>> = tx
            .query_opt(
                "SELECT value FROM kv WHERE app = $1 AND bucket = $2 AND key = $3",
                &[&app, &bucket, &key],
            )
            .await
            .map_err(fail(doing))?
            .map(|r| r.get(0));
        let next = counter(key, current.as_deref()).and_then(|n| add(key, n, delta))?;
        let bytes = next.to_string().into_bytes();
        tx.execute(UPSERT, &[&app, &bucket, &key, &bytes])
            .await
            .map_err(fail(doing))?;
        tx.commit().await.map_err(fail(doing))?;
        Ok(next)
    }

    async fn set_many(
        &self,
        app: &str,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let doing = "writing keys";
        // One statement; a key given twice keeps its last value, as
        // writing them one by one would.
        let mut last: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        for (key, value) in entries {
            last.insert(key, value);
        }
        let (keys, values): (Vec<String>, Vec<Vec<u8>>) = last.into_iter().unzip();
        let client = self.pg.client(doing).await?;
        client
            .execute(
                "INSERT INTO kv (app, bucket, key, value)
                 SELECT $1, $2, k, v FROM UNNEST($3::TEXT[], $4::BYTEA[]) AS t (k, v)
                 ON CONFLICT (app, bucket, key) DO UPDATE SET value = EXCLUDED.value",
                &[&app, &bucket, &keys, &values],
            )
            .await
            .map_err(fail(doing))?;
        Ok(())
    }

    async fn delete_many(&self, app: &str, bucket: &str, keys: Vec<String>) -> Result<(), Error> {
        let doing = "deleting keys";
        let client = self.pg.client(doing).await?;
        client
            .execute(
                "DELETE FROM kv WHERE app = $1 AND bucket = $2 AND key = ANY($3)",
                &[&app, &bucket, &keys],
            )
            .await
            .map_err(fail(doing))?;
        Ok(())
    }

    async fn buckets(&self, app: &str) -> Result<Vec<(String, u64)>, Error> {
        let doing = "listing buckets";
        let client = self.pg.client(doing).await?;
        let rows = client
            .query(
                "SELECT bucket, COUNT(*) FROM kv WHERE app = $1 GROUP BY bucket ORDER BY bucket",
                &[&app],
            )
            .await
            .map_err(fail(doing))?;
        Ok(rows.iter().map(|r| (r.get(0), to_u64(r.get(1)))).collect())
    }

    async fn clear(&self, app: &str, bucket: &str) -> Result<(), Error> {
        let doing = "clearing a bucket";
        let client = self.pg.client(doing).await?;
        client
            .execute(
                "DELETE FROM kv WHERE app = $1 AND bucket = $2",
                &[&app, &bucket],
            )
            .await
            .map_err(fail(doing))?;
        Ok(())
    }

    async fn delete_app(&self, app: &str) -> Result<(), Error> {
        let doing = "deleting an app's buckets";
        let client = self.pg.client(doing).await?;
        client
            .execute("DELETE FROM kv WHERE app = $1", &[&app])
            .await
            .map_err(fail(doing))?;
        Ok(())
    }
}
