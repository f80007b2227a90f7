//! [`PgSecrets`]: sealed secrets in the cluster's database. Only sealed
//! values are stored; the key that opens them is given to each host and
//! never written to the database.

use super::{Pg, fail, to_i64, to_u64};
use crate::error::Error;
use crate::platform::secrets::{SealedSecret, SecretStore};

/// The schema; append, never edit.
const MIGRATIONS: &[&str] = &["CREATE TABLE secrets (
        name TEXT NOT NULL,
        revision BIGINT NOT NULL,
        keys TEXT[] NOT NULL,
        nonce BYTEA NOT NULL,
        ciphertext BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (name, revision)
    );"];

const COLUMNS: &str = "name, revision, keys, nonce, ciphertext, created_at";

/// The cluster's secret store.
pub struct PgSecrets {
    pg: Pg,
}

impl PgSecrets {
    /// The store in `pg`, its schema brought up to date.
    pub async fn open(pg: Pg) -> Result<PgSecrets, Error> {
        pg.migrate("secrets", MIGRATIONS).await?;
        Ok(PgSecrets { pg })
    }
}

fn sealed(row: &tokio_postgres::Row) -> SealedSecret {
    SealedSecret {
        name: row.get(0),
        revision: to_u64(row.get(1)),
        keys: row.get(2),
        nonce: row.get(3),
        ciphertext: row.get(4),
        created_at: to_u64(row.get(5)),
    }
}

#[async_trait::async_trait]
impl SecretStore for PgSecrets {
    async fn insert(&self, secret: SealedSecret) -> Result<u64, Error> {
        let doing = "storing a secret";
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        // Two hosts creating a revision of one secret at once take turns.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('secret:' || $1))",
            &[&secret.name],
        )
        .await
        .map_err(fail(doing))?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO secrets ({COLUMNS})
                     SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4, $5
                     FROM secrets WHERE name = $1
                     RETURNING revision"
                ),
                &[
                    &secret.name,
                    &secret.keys,
                    &secret.nonce,
                    &secret.ciphertext,
                    &to_i64(secret.created_at),
                ],
            )
            .await
            .map_err(fail(doing))?;
        tx.commit().await.map_err(fail(doing))?;
        Ok(to_u64(row.get(0)))
    }

    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<SealedSecret>, Error> {
        let doing = "reading a secret";
        let client = self.pg.client(doing).await?;
        let revision = revision.map(to_i64);
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM secrets
                     WHERE name = $1 AND ($2::BIGINT IS NULL OR revision = $2)
                     ORDER BY revision DESC LIMIT 1"
                ),
                &[&name, &revision],
            )
            .await
            .map_err(fail(doing))?;
        Ok(row.as_ref().map(sealed))
    }

    async fn list(&self) -> Result<Vec<(SealedSecret, u64)>, Error> {
        let doing = "listing secrets";
        let client = self.pg.client(doing).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT DISTINCT ON (name) {COLUMNS},
                        MIN(created_at) OVER (PARTITION BY name)
                     FROM secrets ORDER BY name, revision DESC"
                ),
                &[],
            )
            .await
            .map_err(fail(doing))?;
        Ok(rows.iter().map(|r| (sealed(r), to_u64(r.get(6)))).collect())
    }

    async fn delete(&self, name: &str) -> Result<bool, Error> {
        let doing = "deleting a secret";
        let client = self.pg.client(doing).await?;
        let n = client
            .execute("DELETE FROM secrets WHERE name = $1", &[&name])
            .await
            .map_err(fail(doing))?;
        Ok(n > 0)
    }
}
