//! The embedded storage: SQLite files in the state directory behind the
//! [`Registry`](super::Registry) and [`RecordStore`](super::RecordStore)
//! traits. Every query runs on tokio's blocking pool, never on a runtime
//! thread, and every schema is versioned (see [`migrate`]).

mod kv;
mod migrate;
mod records;
mod registry;
mod secrets;

pub use kv::SqliteKeyValue;
pub use records::SqliteRecords;
pub use registry::SqliteRegistry;
pub use secrets::SqliteSecrets;

use crate::error::Error;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// One SQLite connection shared by a store's operations; `name` (the
/// file's name) prefixes its errors.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    name: &'static str,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, applies
    /// `pragmas`, then brings its schema up to `migrations`.
    pub(crate) fn open(
        path: &Path,
        name: &'static str,
        pragmas: &str,
        migrations: &[&str],
    ) -> Result<Db, Error> {
        let fail = |e: rusqlite::Error| Error::storage(format!("{name}: opening"), e);
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.execute_batch(pragmas).map_err(fail)?;
        migrate::migrate(&mut conn, migrations, name)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            name,
        })
    }

    /// Runs `op` on the connection on the calling thread: for operations
    /// shorter than a hop to the blocking pool (no fsync, no scan).
    pub(crate) fn run_here<T>(
        &self,
        doing: &'static str,
        op: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        op(&mut conn).map_err(|e| Error::storage(format!("{}: {doing}", self.name), e))
    }

    /// Runs `op` on the connection off the runtime; `doing` says what it
    /// does in the error.
    pub(crate) async fn run<T, F>(&self, doing: &'static str, op: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let name = self.name;
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut conn)
        })
        .await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::storage(format!("{name}: {doing}"), e)),
            Err(e) => Err(Error::storage(format!("{name}: {doing}"), e)),
        }
    }
}

/// A JSON encoding failure as a SQLite parameter error.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}
