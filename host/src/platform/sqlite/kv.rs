//! [`SqliteKeyValue`]: the key-value state of apps in one SQLite file
//! (`kv.db`, WAL). A write is acknowledged once its transaction committed
//! to the log, so it survives a crash of the process. Point reads and
//! writes run on the calling thread (a few to a few tens of microseconds,
//! less than a hop to the blocking pool), reads on a connection of their
//! own. Nothing on that path syncs: the log is checkpointed into the
//! database (which syncs) by a thread of its own, every second.

use super::Db;
use crate::error::Error;
use crate::kv::{KeyValue, LIST_PAGE, add, counter};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// The embedded key-value store.
pub struct SqliteKeyValue {
    writer: Db,
    reader: Mutex<Connection>,
    _checkpoints: Checkpoints,
}

/// How often the log is moved into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The checkpointing thread; stops when dropped.
struct Checkpoints(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

fn start_checkpoints(path: &Path) -> Result<Checkpoints, Error> {
    let conn = Connection::open(path).map_err(|e| Error::storage("kv.db: opening", e))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("modal-kv-checkpoint".into())
        .spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(CHECKPOINT_EVERY);
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = done {
                    tracing::warn!("kv.db: checkpoint failed: {e}");
                }
            }
        });
    spawned.map_err(|e| Error::Internal(format!("starting the kv.db checkpoints: {e}")))?;
    Ok(Checkpoints(stop))
}

/// The schema (see [`Db::open`]); append, never edit.
const MIGRATIONS: &[&str] = &["CREATE TABLE kv (
        app TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (app, bucket, key)
    ) WITHOUT ROWID;"];

/// Automatic checkpoints are off: they would sync on a runtime thread.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = 0;";

impl SqliteKeyValue {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteKeyValue, Error> {
        let writer = Db::open(path, "kv.db", PRAGMAS, MIGRATIONS)?;
        let fail = |e| Error::storage("kv.db: opening", e);
        let reader = Connection::open(path).map_err(fail)?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")
            .map_err(fail)?;
        Ok(SqliteKeyValue {
            writer,
            reader: Mutex::new(reader),
            _checkpoints: start_checkpoints(path)?,
        })
    }

    /// Runs a read on the calling thread.
    fn read<T>(
        &self,
        doing: &'static str,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        op(&conn).map_err(|e| Error::storage(format!("kv.db: {doing}"), e))
    }
}

#[async_trait::async_trait]
impl KeyValue for SqliteKeyValue {
    async fn get(&self, app: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.read("reading a key", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT value FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3",
            )?;
            stmt.query_row(params![app, bucket, key], |r| r.get(0))
                .optional()
        })
    }

    async fn set(&self, app: &str, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.writer.run_here("writing a key", |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO kv (app, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, bucket, key) DO UPDATE SET value = excluded.value",
            )?;
            stmt.execute(params![app, bucket, key, value]).map(drop)
        })
    }

    async fn delete(&self, app: &str, bucket: &str, key: &str) -> Result<(), Error> {
        self.delete_many(app, bucket, vec![key.to_string()]).await
    }

    async fn exists(&self, app: &str, bucket: &str, key: &str) -> Result<bool, Error> {
        self.read("reading a key", |c| {
            let mut stmt =
                c.prepare_cached("SELECT 1 FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3")?;
            stmt.exists(params![app, bucket, key])
        })
    }

    async fn list_keys(
        &self,
        app: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), Error> {
        let offset = i64::try_from(cursor).unwrap_or(i64::MAX);
        let keys: Vec<String> = self.read("listing keys", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv WHERE app = ?1 AND bucket = ?2 ORDER BY key LIMIT ?3 OFFSET ?4",
            )?;
            // One more than a page says whether another page follows.
            let rows = stmt.query_map(params![app, bucket, LIST_PAGE as i64 + 1, offset], |r| {
                r.get(0)
            })?;
            rows.collect()
        })?;
        Ok(crate::kv::page(keys, cursor))
    }

    async fn increment(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, Error> {
        self.writer.run_here("incrementing a key", |c| {
            let tx = c.transaction()?;
            let current: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3",
                    params![app, bucket, key],
                    |r| r.get(0),
                )
                .optional()?;
            let next = counter(key, current.as_deref()).and_then(|n| add(key, n, delta));
            if let Ok(next) = next {
                tx.execute(
                    "INSERT INTO kv (app, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (app, bucket, key) DO UPDATE SET value = excluded.value",
                    params![app, bucket, key, next.to_string().into_bytes()],
                )?;
                tx.commit()?;
            }
            Ok(next)
        })?
    }

    async fn set_many(
        &self,
        app: &str,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let (app, bucket) = (app.to_string(), bucket.to_string());
        self.writer
            .run("writing keys", move |c| {
                let tx = c.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO kv (app, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (app, bucket, key) DO UPDATE SET value = excluded.value",
                    )?;
                    for (key, value) in &entries {
                        stmt.execute(params![app, bucket, key, value])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn delete_many(&self, app: &str, bucket: &str, keys: Vec<String>) -> Result<(), Error> {
        let (app, bucket) = (app.to_string(), bucket.to_string());
        self.writer
            .run("deleting keys", move |c| {
                let tx = c.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "DELETE FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3",
                    )?;
                    for key in &keys {
                        stmt.execute(params![app, bucket, key])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn buckets(&self, app: &str) -> Result<Vec<(String, u64)>, Error> {
        self.read("listing buckets", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT bucket, COUNT(*) FROM kv WHERE app = ?1 GROUP BY bucket ORDER BY bucket",
            )?;
            let rows = stmt.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    async fn clear(&self, app: &str, bucket: &str) -> Result<(), Error> {
        let (app, bucket) = (app.to_string(), bucket.to_string());
        self.writer
            .run("clearing a bucket", move |c| {
                c.execute(
                    "DELETE FROM kv WHERE app = ?1 AND bucket = ?2",
                    params![app, bucket],
                )
                .map(drop)
            })
            .await
    }

    async fn delete_app(&self, app: &str) -> Result<(), Error> {
        let app = app.to_string();
        self.writer
            .run("deleting an app's buckets", move |c| {
                c.execute("DELETE FROM kv WHERE app = ?1", [app]).map(drop)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_live_in_buckets_of_apps_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let kv = SqliteKeyValue::open(&path).unwrap();
        kv.set("a", "index", "k", b"v1".to_vec()).await.unwrap();
        kv.set("a", "index", "k", b"v2".to_vec()).await.unwrap();
        kv.set("b", "index", "k", b"other".to_vec()).await.unwrap();
        assert_eq!(kv.get("a", "index", "k").await.unwrap().unwrap(), b"v2");
        assert_eq!(kv.increment("a", "n", "c", 5).await.unwrap(), 5);
        assert_eq!(kv.increment("a", "n", "c", 2).await.unwrap(), 7);
        assert!(kv.increment("a", "index", "k", 1).await.is_err());
        assert_eq!(kv.get("a", "index", "k").await.unwrap().unwrap(), b"v2");
        drop(kv);
        let kv = SqliteKeyValue::open(&path).unwrap();
        assert!(kv.exists("a", "index", "k").await.unwrap());
        assert_eq!(
            kv.buckets("a").await.unwrap(),
            [("index".to_string(), 1), ("n".to_string(), 1)]
        );
        kv.delete_app("a").await.unwrap();
        assert!(kv.buckets("a").await.unwrap().is_empty());
        assert_eq!(kv.get("b", "index", "k").await.unwrap().unwrap(), b"other");
    }

    #[tokio::test]
    async fn keys_are_listed_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKeyValue::open(&dir.path().join("kv.db")).unwrap();
        let entries = (0..LIST_PAGE + 5)
            .map(|i| (format!("k{i:05}"), vec![1]))
            .collect();
        kv.set_many("a", "b", entries).await.unwrap();
        let (first, cursor) = kv.list_keys("a", "b", 0).await.unwrap();
        assert_eq!(first.len(), LIST_PAGE);
        assert_eq!(first[0], "k00000");
        let (rest, end) = kv.list_keys("a", "b", cursor.unwrap()).await.unwrap();
        assert_eq!(rest.len(), 5);
        assert_eq!(end, None);
    }
}
