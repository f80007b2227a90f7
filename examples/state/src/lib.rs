//! The state app: durable key-value state through `modal_guest::Dict`
//! (the standard `wasi:keyvalue` underneath).
//!
//! `modal call state visit '"ada"'` counts visits across instances,
//! versions and restarts; `put`/`get` store JSON values; `burst` writes
//! many keys; `modal dict get state notes KEY` reads them from outside.

#[modal_guest::app]
mod state {
    use modal_guest::json::Value;
    use modal_guest::{Dict, DictError};

    /// Counts the visits of `name` (bucket `visits`).
    #[function]
    fn visit(name: String) -> Result<u64, DictError> {
        Dict::open("visits")?.increment(&name, 1)
    }

    /// Stores `value` at `key` in bucket `notes`.
    #[function]
    fn put(key: String, value: Value) -> Result<(), DictError> {
        Dict::open("notes")?.put(&key, &value)
    }

    /// The value at `key` in bucket `notes`.
    #[function]
    fn get(key: String) -> Result<Option<Value>, DictError> {
        Dict::open("notes")?.get(&key)
    }

    /// The keys of `bucket`.
    #[function]
    fn keys(bucket: String) -> Result<Vec<String>, DictError> {
        Dict::open(&bucket)?.keys()
    }

    /// Writes `n` keys `{prefix}{i}` to bucket `burst`, one put each.
    #[function(timeout = "5m")]
    fn burst(prefix: String, n: u64) -> Result<u64, DictError> {
        let dict = Dict::open("burst")?;
        for i in 0..n {
            dict.put_bytes(&format!("{prefix}{i}"), b"1")?;
        }
        Ok(n)
    }

    /// Reads key `k` of bucket `bench` `n` times (for the benchmark).
    #[function(timeout = "5m")]
    fn gets(n: u64) -> Result<u64, DictError> {
        let dict = Dict::open("bench")?;
        let mut found = 0;
        for _ in 0..n {
            found += u64::from(dict.get_bytes("k")?.is_some());
        }
        Ok(found)
    }

    /// Writes `n` keys of 100 bytes to bucket `bench` (for the benchmark).
    #[function(timeout = "5m")]
    fn puts(n: u64) -> Result<u64, DictError> {
        let dict = Dict::open("bench")?;
        let value = [b'v'; 100];
        for i in 0..n {
            dict.put_bytes(&format!("k{}", i % 1000), &value)?;
        }
        Ok(n)
    }

    /// Tries to store a value of `bytes` bytes; the error text if refused.
    #[function]
    fn store_bytes(bytes: usize) -> String {
        let result = Dict::open("big").and_then(|d| d.put_bytes("blob", &vec![7; bytes]));
        match result {
            Ok(()) => "stored".into(),
            Err(e) => e.to_string(),
        }
    }

    /// Prints the value of environment variable `key` (a secret's, say:
    /// the host masks it in the logs) and returns its length.
    #[function]
    fn print_env(key: String) -> Option<usize> {
        let value = std::env::var(&key).ok()?;
        println!("{key} is {value}");
        Some(value.len())
    }

    /// Fails with an error that holds the value of `key` (masked by the
    /// host).
    #[function]
    fn fail_with_env(key: String) -> Result<(), String> {
        Err(format!("{key} was {}", std::env::var(&key).unwrap_or_default()))
    }

    /// Tries to open a bucket named `name`; the error text if refused.
    #[function]
    fn open_bucket(name: String) -> String {
        match Dict::open(&name) {
            Ok(_) => "opened".into(),
            Err(e) => e.to_string(),
        }
    }
}
