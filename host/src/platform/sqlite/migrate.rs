//! Versioned SQLite schemas: each store keeps an ordered list of
//! migrations and its database records how many ran (`PRAGMA
//! user_version`), so a state directory written by an older release is
//! brought up to date at open and one written by a newer release is
//! refused instead of misread.

use crate::error::Error;
use rusqlite::Connection;

/// A database whose schema is newer than this release knows.
#[derive(Debug, thiserror::Error)]
#[error(
    "schema version {found} is newer than this release knows ({known}): \
     it was written by a newer modal; upgrade modal to open it"
)]
struct NewerSchema {
    found: usize,
    known: usize,
}

/// Brings `conn` to the newest schema of `migrations` in one transaction;
/// refuses a database written by a newer release. `what` names it in
/// errors.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str], what: &str) -> Result<(), Error> {
    let context = || format!("{what}: migrating its schema");
    let fail = |e: rusqlite::Error| Error::storage(context(), e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    let current: usize = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    if current > migrations.len() {
        let newer = NewerSchema {
            found: current,
            known: migrations.len(),
        };
        return Err(Error::storage(what.to_string(), newer));
    }
    for step in &migrations[current..] {
        tx.execute_batch(step).map_err(fail)?;
    }
    tx.pragma_update(None, "user_version", migrations.len())
        .map_err(fail)?;
    tx.commit().map_err(fail)
}
