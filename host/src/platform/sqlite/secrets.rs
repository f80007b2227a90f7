//! [`SqliteSecrets`]: sealed secrets in their own SQLite file
//! (`secrets.db`, full sync), apart from the registry: every revision of
//! every secret, values sealed, names and keys in clear.

use super::Db;
use crate::error::Error;
use crate::platform::secrets::{SealedSecret, SecretStore};
use rusqlite::{OptionalExtension, params};
use std::path::Path;

/// The embedded secret store.
pub struct SqliteSecrets {
    db: Db,
}

/// The schema (see [`Db::open`]); append, never edit.
const MIGRATIONS: &[&str] = &["CREATE TABLE secrets (
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        keys TEXT NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (name, revision)
    );"];

const COLUMNS: &str = "name, revision, keys, nonce, ciphertext, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SealedSecret> {
    let keys: String = r.get(2)?;
    Ok(SealedSecret {
        name: r.get(0)?,
        revision: r.get(1)?,
        keys: serde_json::from_str(&keys).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        nonce: r.get(3)?,
        ciphertext: r.get(4)?,
        created_at: r.get(5)?,
    })
}

impl SqliteSecrets {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteSecrets, Error> {
        let pragmas =
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;";
        let db = Db::open(path, "secrets.db", pragmas, MIGRATIONS)?;
        Ok(SqliteSecrets { db })
    }
}

#[async_trait::async_trait]
impl SecretStore for SqliteSecrets {
    async fn insert(&self, secret: SealedSecret) -> Result<u64, Error> {
        self.db
            .run("storing a secret", move |c| {
                let tx = c.transaction()?;
                let revision: u64 = tx.query_row(
                    "SELECT COALESCE(MAX(revision), 0) + 1 FROM secrets WHERE name = ?1",
                    [&secret.name],
                    |r| r.get(0),
                )?;
                tx.execute(
                    &format!("INSERT INTO secrets ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![
                        secret.name,
                        revision,
                        super::to_json(&secret.keys)?,
                        secret.nonce,
                        secret.ciphertext,
                        secret.created_at
                    ],
                )?;
                tx.commit()?;
                Ok(revision)
            })
            .await
    }

    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<SealedSecret>, Error> {
        let name = name.to_string();
        self.db
            .run("reading a secret", move |c| {
                let sql = format!(
                    "SELECT {COLUMNS} FROM secrets WHERE name = ?1 AND (?2 IS NULL OR revision = ?2)
                     ORDER BY revision DESC LIMIT 1"
                );
                c.query_row(&sql, params![name, revision], row).optional()
            })
            .await
    }

    async fn list(&self) -> Result<Vec<(SealedSecret, u64)>, Error> {
        self.db
            .run("listing secrets", |c| {
                let sql = format!(
                    "SELECT {COLUMNS}, (SELECT MIN(created_at) FROM secrets f WHERE f.name = s.name)
                     FROM secrets s
                     WHERE revision = (SELECT MAX(revision) FROM secrets m WHERE m.name = s.name)
                     ORDER BY name"
                );
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map([], |r| Ok((row(r)?, r.get(6)?)))?;
                rows.collect()
            })
            .await
    }

    async fn delete(&self, name: &str) -> Result<bool, Error> {
        let name = name.to_string();
        self.db
            .run("deleting a secret", move |c| {
                c.execute("DELETE FROM secrets WHERE name = ?1", [name])
                    .map(|n| n > 0)
            })
            .await
    }
}
