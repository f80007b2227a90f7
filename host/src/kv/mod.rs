//! Durable key-value state of apps: the [`KeyValue`] store behind the
//! standard `wasi:keyvalue` interfaces a guest imports. Buckets are named
//! and belong to an app: shared by all its versions and instances,
//! surviving redeploys and restarts. [`Memory`] keeps them in the process
//! (`modal run`, an embedded host without a platform); the platform's
//! default is SQLite in the state directory.

use crate::error::Error;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1 << 10;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 8 << 20;
/// Longest bucket name, in bytes.
pub const MAX_BUCKET: usize = 63;
/// Keys one `list-keys` answer holds at most (then it gives a cursor).
pub const LIST_PAGE: usize = 1000;

/// Where the key-value state of apps is kept. Each method is one
/// operation on one bucket of one app (or on all of an app's buckets).
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync + 'static {
    /// The value of `key`, if any.
    async fn get(&self, app: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Sets `key` to `value`.
    async fn set(&self, app: &str, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), Error>;
    /// Removes `key` (nothing happens if it is absent).
    async fn delete(&self, app: &str, bucket: &str, key: &str) -> Result<(), Error>;
    /// Whether `key` has a value.
    async fn exists(&self, app: &str, bucket: &str, key: &str) -> Result<bool, Error>;
    /// Up to [`LIST_PAGE`] keys in order, from the `cursor`-th on; the
    /// cursor of the next page when there are more.
    async fn list_keys(
        &self,
        app: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), Error>;
    /// Adds `delta` to the number (decimal text) stored at `key`, 0 when
    /// absent, in one step; returns the new number.
    async fn increment(&self, app: &str, bucket: &str, key: &str, delta: u64)
    -> Result<u64, Error>;
    /// Sets every entry, all or none.
    async fn set_many(
        &self,
        app: &str,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error>;
    /// Removes every key, all or none.
    async fn delete_many(&self, app: &str, bucket: &str, keys: Vec<String>) -> Result<(), Error>;
    /// The app's buckets with their number of keys, by name.
    async fn buckets(&self, app: &str) -> Result<Vec<(String, u64)>, Error>;
    /// Removes every key of a bucket.
    async fn clear(&self, app: &str, bucket: &str) -> Result<(), Error>;
    /// Removes every bucket of an app (it was collected).
    async fn delete_app(&self, app: &str) -> Result<(), Error>;
}

/// Checks a bucket name: 1 to [`MAX_BUCKET`] letters, digits, `-`, `_` or
/// `.`. The empty name is Spin's and wasmCloud's default bucket: it is
/// `default` here.
pub fn bucket_name(name: &str) -> Result<&str, Error> {
    if name.is_empty() {
        return Ok("default");
    }
    let ok = name.len() <= MAX_BUCKET
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(Error::BadInput(format!(
            "invalid bucket name `{}`: use 1 to {MAX_BUCKET} letters, digits, `-`, `_` or `.`",
            name.escape_debug()
        )))
    }
}

/// A page of keys read with one more than [`LIST_PAGE`] asked for (the
/// extra one says whether another page follows), from the `cursor`-th
/// key on: the page, and the cursor of the next one.
pub fn page(mut keys: Vec<String>, cursor: u64) -> (Vec<String>, Option<u64>) {
    let next = (keys.len() > LIST_PAGE).then(|| {
        keys.truncate(LIST_PAGE);
        cursor + LIST_PAGE as u64
    });
    (keys, next)
}

/// Checks a key against [`MAX_KEY`].
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY {
        return Err(Error::BadInput(format!(
            "a key is at most {MAX_KEY} bytes; this one has {}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value against [`MAX_VALUE`].
pub fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_VALUE {
        return Err(Error::BadInput(format!(
            "a value is at most {} MiB; this one has {} bytes",
            MAX_VALUE >> 20,
            value.len()
        )));
    }
    Ok(())
}

/// The number stored at a key, for `increment`.
pub fn counter(key: &str, value: Option<&[u8]>) -> Result<u64, Error> {
    let Some(value) = value else { return Ok(0) };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::BadInput(format!(
                "`{}` does not hold a number (decimal text), so it cannot be incremented",
                key.escape_debug()
            ))
        })
}

/// `current + delta`, or the overflow error.
pub fn add(key: &str, current: u64, delta: u64) -> Result<u64, Error> {
    current.checked_add(delta).ok_or_else(|| {
        Error::BadInput(format!(
            "incrementing `{}` would overflow a u64",
            key.escape_debug()
        ))
    })
}

type Buckets = BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>;

/// Key-value state in the process, lost when it exits.
#[derive(Default)]
pub struct Memory {
    buckets: Mutex<Buckets>,
}

impl Memory {
    fn with<T>(&self, op: impl FnOnce(&mut Buckets) -> T) -> T {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        op(&mut buckets)
    }
}

fn id(app: &str, bucket: &str) -> (String, String) {
    (app.to_string(), bucket.to_string())
}

#[async_trait::async_trait]
impl KeyValue for Memory {
    async fn get(&self, app: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.with(|b| b.get(&id(app, bucket)).and_then(|m| m.get(key).cloned())))
    }

    async fn set(&self, app: &str, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.with(|b| {
            b.entry(id(app, bucket))
                .or_default()
                .insert(key.into(), value)
        });
        Ok(())
    }

    async fn delete(&self, app: &str, bucket: &str, key: &str) -> Result<(), Error> {
        self.with(|b| b.get_mut(&id(app, bucket)).map(|m| m.remove(key)));
        Ok(())
    }

    async fn exists(&self, app: &str, bucket: &str, key: &str) -> Result<bool, Error> {
        Ok(self.with(|b| b.get(&id(app, bucket)).is_some_and(|m| m.contains_key(key))))
    }

    async fn list_keys(
        &self,
        app: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), Error> {
        let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
        Ok(self.with(|b| {
            let Some(m) = b.get(&id(app, bucket)) else {
                return (Vec::new(), None);
            };
            let keys: Vec<String> = m.keys().skip(skip).take(LIST_PAGE).cloned().collect();
            let next =
                (skip.saturating_add(keys.len()) < m.len()).then(|| cursor + keys.len() as u64);
            (keys, next)
        }))
    }

    async fn increment(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, Error> {
        self.with(|b| {
            let m = b.entry(id(app, bucket)).or_default();
            let next = add(key, counter(key, m.get(key).map(Vec::as_slice))?, delta)?;
            m.insert(key.into(), next.to_string().into_bytes());
            Ok(next)
        })
    }

    async fn set_many(
        &self,
        app: &str,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        self.with(|b| b.entry(id(app, bucket)).or_default().extend(entries));
        Ok(())
    }

    async fn delete_many(&self, app: &str, bucket: &str, keys: Vec<String>) -> Result<(), Error> {
        self.with(|b| {
            if let Some(m) = b.get_mut(&id(app, bucket)) {
                for key in &keys {
                    m.remove(key);
                }
            }
        });
        Ok(())
    }

    async fn buckets(&self, app: &str) -> Result<Vec<(String, u64)>, Error> {
        Ok(self.with(|b| {
            b.iter()
                .filter(|((a, _), m)| a == app && !m.is_empty())
                .map(|((_, name), m)| (name.clone(), m.len() as u64))
                .collect()
        }))
    }

    async fn clear(&self, app: &str, bucket: &str) -> Result<(), Error> {
        self.with(|b| b.remove(&id(app, bucket)));
        Ok(())
    }

    async fn delete_app(&self, app: &str) -> Result<(), Error> {
        self.with(|b| b.retain(|(a, _), _| a != app));
        Ok(())
    }
}

mod wasi;

/// An open bucket of a guest (a `wasi:keyvalue` resource).
pub struct Bucket {
    name: String,
}

/// Where an instance keeps its app's key-value state.
#[derive(Clone)]
pub(crate) struct Access {
    pub(crate) store: std::sync::Arc<dyn KeyValue>,
    pub(crate) app: std::sync::Arc<str>,
}
