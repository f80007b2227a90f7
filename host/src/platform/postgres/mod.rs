//! The cluster storage: one PostgreSQL database that every host of a
//! cluster shares, behind the same traits as the embedded SQLite files.
//! [`Pg`] is a pool of connections (`deadpool-postgres` over
//! `tokio-postgres`); each store brings its schema up to date at start-up
//! under an advisory lock, so hosts of one release can start together.

mod artifacts;
mod kv;
mod secrets;

pub use artifacts::PgArtifacts;
pub use kv::PgKeyValue;
pub use secrets::PgSecrets;

use crate::error::Error;
use deadpool_postgres::{ManagerConfig, PoolConfig, RecyclingMethod, Runtime};

/// Connections a host keeps to the database by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The advisory lock held while a schema is migrated (any constant all
/// hosts agree on: "modal" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_6f64_616c;

/// A pool of connections to the cluster's database.
#[derive(Clone)]
pub struct Pg {
    pool: deadpool_postgres::Pool,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.write_str("Pg(..)")
    }
}

/// A database failure while `doing`.
pub(crate) fn fail(doing: &str) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
    move |e| Error::storage(format!("postgres: {doing}"), describe(&e))
}

/// The server's own message when it sent one (`db error` alone says
/// nothing), else the driver's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

impl Pg {
    /// A pool of at most `size` connections to the database at `url`
    /// (`postgres://user[:password]@host[:port]/database`); one connection
    /// is opened at once, so a wrong URL fails here with one line.
    pub async fn connect(url: &str, size: usize) -> Result<Pg, Error> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_string());
        config.pool = Some(PoolConfig::new(size.max(1)));
        config.manager = Some(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
            .map_err(|e| Error::BadInput(format!("invalid database URL: {e}")))?;
        let pg = Pg { pool };
        drop(pg.client("connecting").await?);
        Ok(pg)
    }

    /// A connection of the pool, for `doing`.
    pub(crate) async fn client(&self, doing: &str) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(|e| {
            let cause = match e {
                deadpool_postgres::PoolError::Backend(e) => describe(&e),
                other => other.to_string(),
            };
            Error::storage(format!("postgres: {doing}"), cause)
        })
    }

    /// Brings the schema of `store` up to `migrations` (each applied once,
    /// in order, in one transaction with the version it reaches). A
    /// database migrated by a newer release is refused.
    pub(crate) async fn migrate(&self, store: &str, migrations: &[&str]) -> Result<(), Error> {
        let doing = format!("migrating the {store} schema");
        let mut client = self.client(&doing).await?;
        let tx = client.transaction().await.map_err(fail(&doing))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(fail(&doing))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS modal_schema (
                store TEXT PRIMARY KEY,
                version INTEGER NOT NULL
            )",
        )
        .await
        .map_err(fail(&doing))?;
        let current: i32 = tx
            .query_opt(
                "SELECT version FROM modal_schema WHERE store = $1",
                &[&store],
            )
            .await
            .map_err(fail(&doing))?
            .map_or(0, |r| r.get(0));
        let current = usize::try_from(current).unwrap_or(0);
        if current > migrations.len() {
            return Err(Error::Internal(format!(
                "the database's {store} schema is at version {current}, newer than this release \
                 of modal knows ({}); upgrade modal on this host",
                migrations.len()
            )));
        }
        for migration in &migrations[current..] {
            tx.batch_execute(migration).await.map_err(fail(&doing))?;
        }
        let version = i32::try_from(migrations.len()).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO modal_schema (store, version) VALUES ($1, $2)
             ON CONFLICT (store) DO UPDATE SET version = EXCLUDED.version",
            &[&store, &version],
        )
        .await
        .map_err(fail(&doing))?;
        tx.commit().await.map_err(fail(&doing))
    }
}

/// A `u64` as PostgreSQL's `BIGINT` (values past `i64::MAX` saturate).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `BIGINT` read back as the `u64` it was written from.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KeyValue;
    use crate::platform::ArtifactStore;
    use crate::platform::secrets::{SealedSecret, SecretStore};
    use bytes::Bytes;
    use modal_test_support::pg;

    async fn fresh() -> (String, Pg) {
        let url = pg::Pg::get().database();
        let pg = Pg::connect(&url, 4).await.unwrap();
        (url, pg)
    }

    #[tokio::test]
    async fn a_wrong_url_or_an_absent_server_fails_with_one_line() {
        let e = Pg::connect("mysql://x", 1).await.unwrap_err();
        assert!(
            e.to_string().starts_with("bad input: invalid database URL"),
            "{e}"
        );
        let port = pg::Pg::get().port();
        let url = format!("postgres://modal@127.0.0.1:{port}/no_such_database");
        let e = Pg::connect(&url, 1).await.unwrap_err();
        assert!(
            e.to_string().starts_with("postgres: connecting: ")
                && e.to_string().contains("no_such_database"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn schemas_migrate_once_and_a_newer_one_is_refused() {
        let (url, pg) = fresh().await;
        // Hosts starting together: every one opens, the schema is made once.
        let opens = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let pg = Pg::connect(&url, 2).await.unwrap();
                PgKeyValue::open(pg).await.map(drop)
            })
        });
        for open in opens {
            open.await.unwrap().unwrap();
        }
        let client = pg.client("test").await.unwrap();
        client
            .execute(
                "UPDATE modal_schema SET version = 99 WHERE store = 'kv'",
                &[],
            )
            .await
            .unwrap();
        let e = PgKeyValue::open(pg.clone()).await.err().unwrap();
        assert!(
            e.to_string()
                .contains("kv schema is at version 99, newer than this release of modal knows (1)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn key_value_behaves_like_the_embedded_store_across_pools() {
        let (url, pg) = fresh().await;
        let kv = PgKeyValue::open(pg).await.unwrap();
        assert_eq!(kv.get("a", "b", "k").await.unwrap(), None);
        kv.set("a", "b", "k", b"v1".to_vec()).await.unwrap();
        kv.set("a", "b", "k", b"v2".to_vec()).await.unwrap();
        assert_eq!(kv.get("a", "b", "k").await.unwrap(), Some(b"v2".to_vec()));
        assert!(kv.exists("a", "b", "k").await.unwrap());
        assert!(
            !kv.exists("other", "b", "k").await.unwrap(),
            "apps are apart"
        );
        // Pages of keys in byte order.
        let entries: Vec<(String, Vec<u8>)> = (0..1_500)
            .map(|i| (format!("key{i:05}"), vec![1]))
            .chain([("Zed".to_string(), vec![2]), ("key00001".into(), vec![3])])
            .collect();
        kv.set_many("a", "many", entries).await.unwrap();
        assert_eq!(
            kv.get("a", "many", "key00001").await.unwrap(),
            Some(vec![3])
        );
        let (first, next) = kv.list_keys("a", "many", 0).await.unwrap();
        assert_eq!((first.len(), first[0].as_str()), (LIST, "Zed"));
        let (rest, end) = kv.list_keys("a", "many", next.unwrap()).await.unwrap();
        assert_eq!((rest.len(), end), (501, None));
        assert_eq!(
            kv.buckets("a").await.unwrap(),
            [("b".to_string(), 1), ("many".to_string(), 1_501)]
        );
        kv.delete_many("a", "many", vec!["Zed".into(), "missing".into()])
            .await
            .unwrap();
        assert!(!kv.exists("a", "many", "Zed").await.unwrap());
        // Increments from two hosts (pools) at once all count.
        let other = PgKeyValue::open(Pg::connect(&url, 4).await.unwrap())
            .await
            .unwrap();
        let stores = std::sync::Arc::new([kv, other]);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let stores = stores.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        stores[i % 2].increment("a", "c", "n", 2).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let kv = &stores[0];
        assert_eq!(kv.get("a", "c", "n").await.unwrap(), Some(b"400".to_vec()));
        let e = kv.increment("a", "b", "k", 1).await.unwrap_err();
        assert!(matches!(e, Error::BadInput(_)), "{e}");
        kv.clear("a", "many").await.unwrap();
        assert_eq!(kv.list_keys("a", "many", 0).await.unwrap(), (vec![], None));
        kv.delete_app("a").await.unwrap();
        assert!(kv.buckets("a").await.unwrap().is_empty());
    }

    const LIST: usize = crate::kv::LIST_PAGE;

    fn sealed(name: &str, at: u64) -> SealedSecret {
        SealedSecret {
            name: name.into(),
            revision: 0,
            keys: vec!["A".into(), "B".into()],
            nonce: vec![7; 24],
            ciphertext: b"sealed".to_vec(),
            created_at: at,
        }
    }

    #[tokio::test]
    async fn secrets_keep_every_revision_numbered_once() {
        let (url, pg) = fresh().await;
        let one = PgSecrets::open(pg).await.unwrap();
        let two = PgSecrets::open(Pg::connect(&url, 2).await.unwrap())
            .await
            .unwrap();
        assert_eq!(one.insert(sealed("api", 10)).await.unwrap(), 1);
        // Two hosts adding revisions at once get distinct numbers.
        let (a, b) = tokio::join!(one.insert(sealed("api", 20)), two.insert(sealed("api", 30)));
        let mut got = [a.unwrap(), b.unwrap()];
        got.sort();
        assert_eq!(got, [2, 3]);
        one.insert(sealed("db", 40)).await.unwrap();
        let latest = one.get("api", None).await.unwrap().unwrap();
        assert_eq!((latest.revision, latest.keys.len()), (3, 2));
        let first = one.get("api", Some(1)).await.unwrap().unwrap();
        assert_eq!((first.created_at, first.nonce.len()), (10, 24));
        assert!(one.get("api", Some(9)).await.unwrap().is_none());
        let listed: Vec<(String, u64, u64)> = two
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, created)| (s.name, s.revision, created))
            .collect();
        assert_eq!(
            listed,
            [("api".to_string(), 3, 10), ("db".to_string(), 1, 40)]
        );
        assert!(one.delete("api").await.unwrap());
        assert!(!one.delete("api").await.unwrap());
        assert!(two.get("api", None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn artifacts_are_chunked_checked_and_stored_once() {
        let (url, pg) = fresh().await;
        let one = PgArtifacts::open(pg.clone()).await.unwrap();
        let two = PgArtifacts::open(Pg::connect(&url, 2).await.unwrap())
            .await
            .unwrap();
        let bytes: Bytes = (0..(5 << 19))
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let d = crate::compile::digest(&bytes);
        assert!(!one.exists(&d).await.unwrap());
        let (a, b) = tokio::join!(one.put(&d, bytes.clone()), two.put(&d, bytes.clone()));
        a.unwrap();
        b.unwrap();
        assert_eq!(two.get(&d).await.unwrap(), bytes);
        assert!(two.exists(&d).await.unwrap());
        assert_eq!(one.list().await.unwrap(), std::slice::from_ref(&d));
        let client = pg.client("test").await.unwrap();
        let chunks: i64 = client
            .query_one("SELECT COUNT(*) FROM artifact_chunks", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(chunks, 3, "2.5 MiB in 1 MiB chunks");
        client
            .execute(
                "UPDATE artifact_chunks SET bytes = 'x' WHERE chunk = 1",
                &[],
            )
            .await
            .unwrap();
        let e = one.get(&d).await.unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        one.delete(&d).await.unwrap();
        one.delete(&d).await.unwrap();
        assert!(one.list().await.unwrap().is_empty());
        assert!(one.get(&d).await.is_err());
        assert!(one.get("../etc").await.is_err());
        let empty = crate::compile::digest(b"");
        one.put(&empty, Bytes::new()).await.unwrap();
        assert_eq!(one.get(&empty).await.unwrap(), Bytes::new());
    }
}
