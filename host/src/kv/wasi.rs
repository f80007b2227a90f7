//! The host side of `wasi:keyvalue` (`store`, `atomics`, `batch`) on the
//! app's [`KeyValue`](super::KeyValue) store, with the limits checked
//! before anything is stored.

use super::{Access, Bucket, bucket_name, check_key, check_value};
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::error::Error;
use crate::sandbox::Sandbox;
use wasmtime::component::Resource;

fn other(e: impl std::fmt::Display) -> store::Error {
    store::Error::Other(e.to_string())
}

/// A refused operation: the reason, without the `bad input:` prefix.
fn invalid(e: Error) -> store::Error {
    match e {
        Error::BadInput(message) => store::Error::Other(message),
        e => other(e),
    }
}

impl Sandbox {
    /// The store, the app and the name of an open bucket.
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<(&Access, &str), store::Error> {
        let name = self.table.get(bucket).map_err(other)?;
        Ok((&self.kv, name.name.as_str()))
    }
}

/// A storage error as the guest sees it: its message, without the cause
/// (which may name host paths).
fn stored<T>(result: Result<T, Error>) -> Result<T, store::Error> {
    result.map_err(|e| match e {
        Error::Storage { context, .. } => {
            tracing::error!("key-value store: {context}");
            store::Error::Other(format!("the key-value store failed ({context})"))
        }
        e => invalid(e),
    })
}

impl store::Host for Sandbox {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, store::Error> {
        let name = bucket_name(&identifier).map_err(invalid)?.to_string();
        self.table.push(Bucket { name }).map_err(other)
    }
}

impl store::HostBucket for Sandbox {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        check_key(&key).map_err(invalid)?;
        stored(kv.store.get(&kv.app, name, &key).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        check_key(&key)
            .and_then(|()| check_value(&value))
            .map_err(invalid)?;
        stored(kv.store.set(&kv.app, name, &key, value).await)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        check_key(&key).map_err(invalid)?;
        stored(kv.store.delete(&kv.app, name, &key).await)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<bool, store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        check_key(&key).map_err(invalid)?;
        stored(kv.store.exists(&kv.app, name, &key).await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        let (keys, cursor) = stored(kv.store.list_keys(&kv.app, name, cursor.unwrap_or(0)).await)?;
        Ok(store::KeyResponse { keys, cursor })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for Sandbox {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        check_key(&key).map_err(invalid)?;
        stored(kv.store.increment(&kv.app, name, &key, delta).await)
    }
}

impl batch::Host for Sandbox {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            check_key(&key).map_err(invalid)?;
            let value = stored(kv.store.get(&kv.app, name, &key).await)?;
            found.push(value.map(|v| (key, v)));
        }
        Ok(found)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        for (key, value) in &key_values {
            check_key(key)
                .and_then(|()| check_value(value))
                .map_err(invalid)?;
        }
        stored(kv.store.set_many(&kv.app, name, key_values).await)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), store::Error> {
        let (kv, name) = self.bucket(&bucket)?;
        for key in &keys {
            check_key(key).map_err(invalid)?;
        }
        stored(kv.store.delete_many(&kv.app, name, keys).await)
    }
}
