//! The apps' key-value buckets seen from outside the guests (`modal dict`,
//! `/api/v1/apps/{app}/dicts`): list, read, write and clear, with the same
//! names and limits the guests have.

use super::Platform;
use crate::error::Error;
use crate::kv::{bucket_name, check_key, check_value};

impl Platform {
    /// The buckets of `app` that hold keys, with their number of keys.
    pub async fn dicts(&self, app: &str) -> Result<Vec<(String, u64)>, Error> {
        self.record(app).await?;
        self.inner.kv.buckets(app).await
    }

    /// A page of the keys of bucket `bucket` of `app`, from the
    /// `cursor`-th on, and the cursor of the next page.
    pub async fn dict_keys(
        &self,
        app: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), Error> {
        self.record(app).await?;
        self.inner
            .kv
            .list_keys(app, bucket_name(bucket)?, cursor)
            .await
    }

    /// The value at `key`.
    pub async fn dict_get(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.record(app).await?;
        check_key(key)?;
        self.inner.kv.get(app, bucket_name(bucket)?, key).await
    }

    /// Sets `key` to `value`.
    pub async fn dict_put(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        self.record(app).await?;
        check_key(key)?;
        check_value(&value)?;
        self.inner
            .kv
            .set(app, bucket_name(bucket)?, key, value)
            .await
    }

    /// Removes `key`.
    pub async fn dict_delete(&self, app: &str, bucket: &str, key: &str) -> Result<(), Error> {
        self.record(app).await?;
        check_key(key)?;
        self.inner.kv.delete(app, bucket_name(bucket)?, key).await
    }

    /// Removes every key of a bucket.
    pub async fn dict_clear(&self, app: &str, bucket: &str) -> Result<(), Error> {
        self.record(app).await?;
        self.inner.kv.clear(app, bucket_name(bucket)?).await
    }
}
