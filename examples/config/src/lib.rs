//! The config app: a function that names the secret it needs in code
//! (`secrets = ["config"]`), so `modal deploy config.wasm` attaches it
//! without `--secret`, and fails naming it while it does not exist.

#[modal_guest::app]
mod config {
    /// The value of setting `key` (a variable of the `config` secret), or
    /// `null`.
    #[function(secrets = ["config"])]
    fn setting(key: String) -> Option<String> {
        std::env::var(key).ok()
    }
}
