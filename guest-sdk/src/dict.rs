//! Durable key-value state: a [`Dict`] is a named bucket of the app, kept
//! by the host across calls, instances, redeploys and restarts (the
//! standard `wasi:keyvalue` interfaces underneath, so the data is the
//! same one Spin or wasmCloud components of the app would see).

use crate::__bindings::wasi::keyvalue::{atomics, batch, store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a key-value operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictError(String);

impl std::fmt::Display for DictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DictError {}

/// Lets `?` pass a `DictError` up from a function that returns
/// `Result<_, String>`.
impl From<DictError> for String {
    fn from(e: DictError) -> String {
        e.0
    }
}

impl From<store::Error> for DictError {
    fn from(e: store::Error) -> DictError {
        DictError(match e {
            store::Error::NoSuchStore => "no such bucket".to_string(),
            store::Error::AccessDenied => "access to the bucket was denied".to_string(),
            store::Error::Other(message) => message,
        })
    }
}

/// A named bucket of the app's key-value state. Values are JSON (use the
/// `_bytes` methods for raw bytes); `increment` keeps a number as decimal
/// text, which reads back as JSON too.
pub struct Dict {
    bucket: store::Bucket,
}

impl Dict {
    /// Opens the bucket `name` (1 to 63 letters, digits, `-`, `_`, `.`),
    /// created on first write.
    pub fn open(name: &str) -> Result<Dict, DictError> {
        Ok(Dict {
            bucket: store::open(name)?,
        })
    }

    /// The value at `key`, decoded from JSON.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DictError> {
        match self.get_bytes(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                DictError(format!(
                    "the value at `{key}` is not the JSON expected: {e}"
                ))
            }),
        }
    }

    /// Stores `value` at `key`, as JSON.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), DictError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| DictError(format!("the value could not be encoded as JSON: {e}")))?;
        self.put_bytes(key, &bytes)
    }

    /// The bytes at `key`.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, DictError> {
        Ok(self.bucket.get(key)?)
    }

    /// Stores `value` at `key` as it is.
    pub fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), DictError> {
        Ok(self.bucket.set(key, value)?)
    }

    /// Removes `key` (nothing happens when it is absent).
    pub fn delete(&self, key: &str) -> Result<(), DictError> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &str) -> Result<bool, DictError> {
        Ok(self.bucket.exists(key)?)
    }

    /// Adds `delta` to the number at `key` (0 when absent) in one step;
    /// returns the new number.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, DictError> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Every key, in order.
    pub fn keys(&self) -> Result<Vec<String>, DictError> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// The values at `keys` (JSON), in their order.
    pub fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<T>>, DictError> {
        batch::get_many(&self.bucket, keys)?
            .into_iter()
            .map(|entry| match entry {
                None => Ok(None),
                Some((key, bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    DictError(format!(
                        "the value at `{key}` is not the JSON expected: {e}"
                    ))
                }),
            })
            .collect()
    }

    /// Stores every `(key, value)` (as JSON) at once.
    pub fn put_many<T: Serialize>(&self, entries: &[(String, T)]) -> Result<(), DictError> {
        let encoded = entries
            .iter()
            .map(|(k, v)| {
                serde_json::to_vec(v)
                    .map(|bytes| (k.clone(), bytes))
                    .map_err(|e| DictError(format!("the value could not be encoded as JSON: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(batch::set_many(&self.bucket, &encoded)?)
    }
}
