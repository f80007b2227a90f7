//! The cluster storage: one PostgreSQL database that every host of a
//! cluster shares, behind the same traits as the embedded SQLite files.
//! [`Pg`] is a pool of connections (`deadpool-postgres` over
//! `tokio-postgres`); each store brings its schema up to date at start-up
//! under an advisory lock, so hosts of one release can start together.

mod artifacts;
mod kv;
mod records;
mod registry;
mod secrets;

pub use artifacts::PgArtifacts;
pub use kv::PgKeyValue;
pub use records::PgRecords;
pub use registry::PgRegistry;
pub use secrets::PgSecrets;

use crate::error::Error;
use deadpool_postgres::{ManagerConfig, PoolConfig, RecyclingMethod, Runtime};

/// Connections a host keeps to the database by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Longest wait for a connection of the pool (for a free one, or to open
/// one).
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The advisory lock held while a schema is migrated (any constant all
/// hosts agree on: "modal" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_6f64_616c;

/// A pool of connections to the cluster's database.
#[derive(Clone)]
pub struct Pg {
    pool: deadpool_postgres::Pool,
    /// For the connections that are not pooled (listening).
    url: std::sync::Arc<str>,
    /// `host:port/database`, without the credentials.
    target: std::sync::Arc<str>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.write_str("Pg(..)")
    }
}

/// A connection listening for notifications ([`Pg::listener`]).
pub(crate) struct Listener {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Keeps the connection open.
    _client: tokio_postgres::Client,
}

impl Listener {
    /// The next payload; `None` once the connection is lost.
    pub(crate) async fn next(&mut self) -> Option<String> {
        self.rx.recv().await
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
        // Bounded waits: with the database gone, a store operation fails
        // within seconds instead of hanging its caller.
        config.pool = Some(PoolConfig {
            timeouts: deadpool_postgres::Timeouts {
                wait: Some(POOL_WAIT),
                create: Some(POOL_WAIT),
                recycle: Some(POOL_WAIT),
            },
            ..PoolConfig::new(size.max(1))
        });
        config.manager = Some(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
            .map_err(|e| Error::BadInput(format!("invalid database URL: {e}")))?;
        let pg = Pg {
            pool,
            url: url.into(),
            target: target(url).into(),
        };
        drop(pg.client("connecting").await?);
        Ok(pg)
    }

    /// Where the database is (`host:port/database`), without credentials:
    /// safe to print.
    pub fn describe_target(&self) -> &str {
        &self.target
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

    /// Runs one statement `sql` (prepared once per connection) for
    /// `doing`; its rows.
    pub(crate) async fn query(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let client = self.client(doing).await?;
        let stmt = client.prepare_cached(sql).await.map_err(fail(doing))?;
        client.query(&stmt, params).await.map_err(fail(doing))
    }

    /// A connection of its own that listens on `channel`: the payloads of
    /// the notifications it receives, until the connection is lost.
    pub(crate) async fn listener(&self, channel: &str) -> Result<Listener, Error> {
        use futures_util::StreamExt;
        let doing = "listening for changes";
        let (client, mut connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(fail(doing))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("the listening connection failed: {}", describe(&e));
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(fail(doing))?;
        Ok(Listener {
            rx,
            _client: client,
        })
    }

    /// The control token every host of the cluster accepts: the one
    /// stored, else `candidate`, stored now (the first host creates it).
    pub async fn token(&self, candidate: &str) -> Result<String, Error> {
        self.setting("token", candidate).await
    }

    /// The stored control token, if a host created one.
    pub async fn stored_token(&self) -> Result<Option<String>, Error> {
        let doing = "reading the control token";
        let client = self.client(doing).await?;
        let row = client
            .query_opt("SELECT value FROM modal_settings WHERE name = 'token'", &[])
            .await;
        match row {
            Ok(row) => Ok(row.map(|r| r.get(0))),
            // No table yet: no host ever started on this database.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Ok(None)
            }
            Err(e) => Err(fail(doing)(e)),
        }
    }

    /// Checks that `key` is the key the cluster's secrets are sealed with
    /// (the first host to start records which, by a fingerprint).
    pub async fn check_key(&self, key: &crate::platform::SecretKey) -> Result<(), Error> {
        let mine = key.fingerprint();
        if self.setting("secret_key_fingerprint", &mine).await? != mine {
            return Err(Error::BadInput(
                "this host's secret key is not the cluster's: give every host the same key file \
                 (--secret-key-file)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The stored value of the cluster-wide setting `name`, else
    /// `candidate`, stored now.
    async fn setting(&self, name: &str, candidate: &str) -> Result<String, Error> {
        let doing = "reading the cluster's settings";
        self.migrate(
            "settings",
            &["CREATE TABLE modal_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);"],
        )
        .await?;
        let client = self.client(doing).await?;
        client
            .execute(
                "INSERT INTO modal_settings (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate],
            )
            .await
            .map_err(fail(doing))?;
        let row = client
            .query_one("SELECT value FROM modal_settings WHERE name = $1", &[&name])
            .await
            .map_err(fail(doing))?;
        Ok(row.get(0))
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

/// `host:port/database` of a database URL (the URL was checked already).
fn target(url: &str) -> String {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "?".into();
    };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
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
        assert_eq!(one.list(u64::MAX).await.unwrap(), std::slice::from_ref(&d));
        assert!(one.list(1).await.unwrap().is_empty(), "stored just now");
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
        assert!(one.list(u64::MAX).await.unwrap().is_empty());
        assert!(one.get(&d).await.is_err());
        assert!(one.get("../etc").await.is_err());
        let empty = crate::compile::digest(b"");
        one.put(&empty, Bytes::new()).await.unwrap();
        assert_eq!(one.get(&empty).await.unwrap(), Bytes::new());
    }

    #[tokio::test]
    async fn the_registry_publishes_announces_and_fences_the_scheduler() {
        use crate::platform::registry::{Registry, sample_version};
        use std::time::Duration;
        let (url, pg) = fresh().await;
        let one = PgRegistry::open(pg).await.unwrap();
        let two = PgRegistry::open(Pg::connect(&url, 2).await.unwrap())
            .await
            .unwrap();
        let mut heard = two.changes();
        // The listener's first message says it (re)connected.
        let first = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await;
        assert_eq!(first.unwrap().unwrap(), crate::platform::EVERYTHING);
        assert_eq!(one.next_version("a").await.unwrap(), 1);
        one.publish(&sample_version("a", 1, "d1"), 10)
            .await
            .unwrap();
        let change = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await;
        assert_eq!(change.unwrap().unwrap(), "a", "the other host hears of it");
        assert!(
            two.publish(&sample_version("a", 1, "d9"), 11)
                .await
                .is_err(),
            "versions are immutable across hosts"
        );
        two.publish(&sample_version("a", 2, "d2"), 20)
            .await
            .unwrap();
        let app = one.app("a").await.unwrap().unwrap();
        assert_eq!(
            (app.live_version, app.created_at, app.updated_at),
            (Some(2), 10, 20)
        );
        let v = one.version("a", 1).await.unwrap().unwrap();
        assert_eq!(
            (v.env, v.secrets.len(), v.git.unwrap().dirty),
            (vec![("K".into(), "V".into())], 1, true)
        );
        assert_eq!(two.versions("a").await.unwrap().len(), 2);
        one.stop("a", 30).await.unwrap();
        assert!(matches!(
            one.stop("zzz", 30).await,
            Err(Error::AppNotFound(_))
        ));
        assert_eq!(two.stopped_before(31).await.unwrap(), ["a"]);
        assert_eq!(
            two.referenced_digests().await.unwrap(),
            ["d1".to_string(), "d2".to_string()].into()
        );

        // One lease holder at a time; the token grows when it changes hands.
        // The lease outlasts a few round trips on a busy machine.
        let ttl = Duration::from_secs(3);
        assert_eq!(
            one.take_lease("scheduler", "h1", ttl).await.unwrap(),
            Some(1)
        );
        assert_eq!(two.take_lease("scheduler", "h2", ttl).await.unwrap(), None);
        assert_eq!(
            one.take_lease("scheduler", "h1", ttl).await.unwrap(),
            Some(1)
        );
        let fires = vec![("a".to_string(), "tick".to_string(), 1000)];
        assert_eq!(one.record_fires(&fires, 1).await.unwrap(), fires);
        tokio::time::sleep(ttl + Duration::from_millis(500)).await;
        assert_eq!(
            two.take_lease("scheduler", "h2", ttl).await.unwrap(),
            Some(2)
        );
        // The old holder is fenced off; the new one cannot take a fire
        // time twice.
        assert!(matches!(
            one.record_fires(&fires, 1).await,
            Err(Error::NotLeader(_))
        ));
        assert!(two.record_fires(&fires, 2).await.unwrap().is_empty());
        let more = vec![
            ("a".to_string(), "tick".to_string(), 1000),
            ("a".to_string(), "tick".to_string(), 2000),
        ];
        assert_eq!(two.record_fires(&more, 2).await.unwrap(), more[1..]);
        two.set_paused("a", "tick", true).await.unwrap();
        let state = one.schedules().await.unwrap()[&("a".to_string(), "tick".to_string())];
        assert_eq!((state.last_fire, state.paused), (Some(2000), true));

        // Heartbeats: listed while recent, gone once the host leaves.
        let host = crate::platform::HostRecord {
            id: "h1".into(),
            address: "10.0.0.1:8000".into(),
            ..Default::default()
        };
        one.heartbeat(&host).await.unwrap();
        let listed = two.hosts(Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            (listed.len(), listed[0].address.as_str()),
            (1, "10.0.0.1:8000")
        );
        assert!(listed[0].age_ms < 5_000);
        two.take_lease("scheduler", "h1", ttl).await.unwrap();
        one.leave("h1").await.unwrap();
        assert!(two.hosts(Duration::from_secs(10)).await.unwrap().is_empty());
        one.delete_app("a").await.unwrap();
        assert!(two.app("a").await.unwrap().is_none());
        assert!(two.versions("a").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn spawned_calls_are_claimed_by_one_host_once_their_lease_ends() {
        use crate::platform::records::{CallEnd, CallState, RecordStore, SpawnedCall};
        use std::time::Duration;
        let (url, pg) = fresh().await;
        let one = PgRecords::open(pg).await.unwrap();
        let two = PgRecords::open(Pg::connect(&url, 4).await.unwrap())
            .await
            .unwrap();
        let call = |i: usize| SpawnedCall {
            id: format!("call-{i}"),
            app: "a".into(),
            function: "f".into(),
            version: Some(3),
            input: vec![i as u8],
            parent: None,
        };
        let long = Duration::from_secs(60);
        for i in 0..40 {
            one.insert_call(&call(i), 100 + i as u64, "h1", long)
                .await
                .unwrap();
        }
        assert!(
            two.claim_calls("h2", long, 100).await.unwrap().is_empty(),
            "h1 holds them"
        );
        // h1 dies: its claims are not renewed (here: ended at once).
        one.renew_calls("h1", Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let three = PgRecords::open(Pg::connect(&url, 4).await.unwrap())
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            two.claim_calls("h2", long, 25),
            three.claim_calls("h3", long, 25)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 40, "every call claimed");
        assert!(a.iter().all(|c| !b.contains(c)), "by one host each");
        for claimed in [&a, &b] {
            assert!(
                claimed.windows(2).all(|w| w[0].input < w[1].input),
                "oldest first"
            );
        }
        assert!(two.claim_calls("h2", long, 100).await.unwrap().is_empty());
        // The first end stays.
        two.finish_call("call-0", CallEnd::Succeeded(b"1".to_vec()), 500)
            .await
            .unwrap();
        let failed = CallEnd::Failed {
            kind: "trap".into(),
            message: "late".into(),
        };
        three.finish_call("call-0", failed, 600).await.unwrap();
        let record = one.call("call-0").await.unwrap().unwrap();
        assert_eq!(
            (record.state, record.output, record.finished_at),
            (CallState::Succeeded, Some(b"1".to_vec()), Some(500))
        );
        assert!(one.call("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn buckets_and_search_answer_as_every_store_must() {
        let (_, pg) = fresh().await;
        let store = PgRecords::open(pg).await.unwrap();
        crate::platform::records::conformance::check(&store).await;
    }

    #[tokio::test]
    async fn executions_from_several_hosts_have_distinct_ids() {
        use crate::app::Trigger;
        use crate::error::Outcome;
        use crate::platform::records::{ExecutionRecord, RecordStore};
        let (url, pg) = fresh().await;
        let one = PgRecords::open(pg).await.unwrap();
        let two = PgRecords::open(Pg::connect(&url, 2).await.unwrap())
            .await
            .unwrap();
        let (a, b) = (
            one.last_execution_id().await.unwrap(),
            two.last_execution_id().await.unwrap(),
        );
        assert!(a.abs_diff(b) >= 1 << 32, "blocks apart: {a} {b}");
        let record = |id: u64, function: &str, ms: f64, outcome: Outcome| ExecutionRecord {
            id,
            app: "a".into(),
            version: 1,
            function: function.into(),
            trigger: Trigger::Spawn,
            started_at: id % 1000,
            duration_ms: ms,
            outcome,
            error: (outcome != Outcome::Ok).then(|| "boom".into()),
            logs: "log".into(),
            memory: 65536,
            run_id: None,
            call_id: Some(format!("c{id}")),
            http_status: Some(200),
            parent_call_id: None,
            root_call_id: Some("root".into()),
            depth: 1,
        };
        let batch: Vec<ExecutionRecord> = (1..=10)
            .map(|i| record(a + i, "f", i as f64, Outcome::Ok))
            .collect();
        one.insert_executions(batch.clone()).await.unwrap();
        two.insert_executions(vec![record(b + 1, "g", 50.0, Outcome::Trap)])
            .await
            .unwrap();
        let recent = two.recent("a", Some("f"), 3).await.unwrap();
        assert_eq!(recent, batch[7..].to_vec(), "the latest, oldest first");
        assert_eq!(one.recent("a", None, 100).await.unwrap().len(), 11);
        assert_eq!(
            one.after("a", Some("f"), a + 8, 10).await.unwrap(),
            batch[8..].to_vec()
        );
        let usage = one.usage("a").await.unwrap();
        assert_eq!(usage.len(), 2);
        assert_eq!(
            (
                usage[0].function.as_str(),
                usage[0].calls,
                usage[0].total_ms,
                usage[0].peak_memory
            ),
            ("f", 10, 55.0, 65536)
        );
        assert_eq!((usage[1].calls, usage[1].errors), (1, 1));
        assert_eq!(one.totals().await.unwrap()["a"], (11, 1));
        assert_eq!(one.tree("root", 100).await.unwrap().len(), 11);
        one.prune(0, &["a".to_string()]).await.unwrap();
        assert!(one.recent("a", None, 10).await.unwrap().is_empty());
    }
}
