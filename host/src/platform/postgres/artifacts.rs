//! [`PgArtifacts`]: components and mount archives in the cluster's
//! database, in chunks of 1 MiB (`BYTEA`), so every host reads what any
//! host stored. An artifact is visible once all its chunks are committed.

use super::{Pg, fail, to_i64};
use crate::compile::digest;
use crate::error::Error;
use crate::platform::ArtifactStore;
use bytes::{Bytes, BytesMut};

/// Bytes per stored chunk.
const CHUNK: usize = 1 << 20;

/// The schema; append, never edit. `artifacts` names the complete ones.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE artifact_chunks (
        digest TEXT NOT NULL,
        chunk INTEGER NOT NULL,
        bytes BYTEA NOT NULL,
        PRIMARY KEY (digest, chunk)
    );
    CREATE TABLE artifacts (
        digest TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        chunks INTEGER NOT NULL
    );",
    "ALTER TABLE artifacts ADD COLUMN stored_at BIGINT NOT NULL DEFAULT 0;",
];

/// The cluster's artifact store.
pub struct PgArtifacts {
    pg: Pg,
}

impl PgArtifacts {
    /// The store in `pg`, its schema brought up to date.
    pub async fn open(pg: Pg) -> Result<PgArtifacts, Error> {
        pg.migrate("artifacts", MIGRATIONS).await?;
        Ok(PgArtifacts { pg })
    }
}

fn check(digest: &str) -> Result<(), Error> {
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::storage(
            "artifacts",
            format!("`{digest}` is not a SHA-256 digest"),
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl ArtifactStore for PgArtifacts {
    async fn put(&self, digest: &str, bytes: Bytes) -> Result<(), Error> {
        check(digest)?;
        let doing = format!("storing artifact {digest}");
        let mut client = self.pg.client(&doing).await?;
        let tx = client.transaction().await.map_err(fail(&doing))?;
        // Two hosts storing the same artifact take turns; the second finds
        // it complete.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('artifact:' || $1))",
            &[&digest],
        )
        .await
        .map_err(fail(&doing))?;
        let done = tx
            .query_opt("SELECT 1 FROM artifacts WHERE digest = $1", &[&digest])
            .await
            .map_err(fail(&doing))?;
        let now = to_i64(crate::platform::now_ms());
        if done.is_some() {
            // Stored again: as new for garbage collection.
            tx.execute(
                "UPDATE artifacts SET stored_at = $2 WHERE digest = $1",
                &[&digest, &now],
            )
            .await
            .map_err(fail(&doing))?;
            return tx.commit().await.map_err(fail(&doing));
        }
        tx.execute("DELETE FROM artifact_chunks WHERE digest = $1", &[&digest])
            .await
            .map_err(fail(&doing))?;
        let insert = tx
            .prepare("INSERT INTO artifact_chunks (digest, chunk, bytes) VALUES ($1, $2, $3)")
            .await
            .map_err(fail(&doing))?;
        let mut chunks = 0i32;
        for piece in bytes.chunks(CHUNK) {
            tx.execute(&insert, &[&digest, &chunks, &piece])
                .await
                .map_err(fail(&doing))?;
            chunks += 1;
        }
        tx.execute(
            "INSERT INTO artifacts (digest, size, chunks, stored_at) VALUES ($1, $2, $3, $4)",
            &[&digest, &to_i64(bytes.len() as u64), &chunks, &now],
        )
        .await
        .map_err(fail(&doing))?;
        tx.commit().await.map_err(fail(&doing))
    }

    async fn get(&self, wanted: &str) -> Result<Bytes, Error> {
        check(wanted)?;
        let doing = format!("reading artifact {wanted}");
        let client = self.pg.client(&doing).await?;
        let size: Option<i64> = client
            .query_opt("SELECT size FROM artifacts WHERE digest = $1", &[&wanted])
            .await
            .map_err(fail(&doing))?
            .map(|r| r.get(0));
        let Some(size) = size else {
            return Err(Error::storage(doing, "no such artifact"));
        };
        let rows = client
            .query(
                "SELECT bytes FROM artifact_chunks WHERE digest = $1 ORDER BY chunk",
                &[&wanted],
            )
            .await
            .map_err(fail(&doing))?;
        let mut bytes = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        for row in &rows {
            bytes.extend_from_slice(row.get::<_, &[u8]>(0));
        }
        let actual = digest(&bytes);
        if actual != wanted {
            return Err(Error::storage(
                format!("artifact {wanted}"),
                format!("corrupt: its content hashes to {actual}"),
            ));
        }
        Ok(bytes.freeze())
    }

    async fn list(&self, before: u64) -> Result<Vec<String>, Error> {
        let doing = "listing artifacts";
        let client = self.pg.client(doing).await?;
        let rows = client
            .query(
                "SELECT digest FROM artifacts WHERE stored_at < $1 ORDER BY digest",
                &[&to_i64(before)],
            )
            .await
            .map_err(fail(doing))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn exists(&self, digest: &str) -> Result<bool, Error> {
        check(digest)?;
        let doing = "reading the artifacts";
        let client = self.pg.client(doing).await?;
        let row = client
            .query_opt("SELECT 1 FROM artifacts WHERE digest = $1", &[&digest])
            .await
            .map_err(fail(doing))?;
        Ok(row.is_some())
    }

    async fn delete(&self, digest: &str) -> Result<(), Error> {
        check(digest)?;
        let doing = format!("deleting artifact {digest}");
        let mut client = self.pg.client(&doing).await?;
        let tx = client.transaction().await.map_err(fail(&doing))?;
        for table in ["artifacts", "artifact_chunks"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE digest = $1"),
                &[&digest],
            )
            .await
            .map_err(fail(&doing))?;
        }
        tx.commit().await.map_err(fail(&doing))
    }
}
