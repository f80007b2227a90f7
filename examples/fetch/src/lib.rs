//! The fetch app: outbound HTTP from a guest. `get` fetches a URL with
//! [`modal_guest::fetch`] (`wasi:http/outgoing-handler` underneath) and
//! returns `STATUS BODY`. The host denies every request unless the app was
//! granted the host at deploy:
//! `modal run fetch.wasm::get '"http://127.0.0.1:8080/"' --allow-http 127.0.0.1:8080`.

#[modal_guest::app]
mod fetch {
    /// Fetches `url` (http or https) and returns `STATUS BODY`.
    #[function(timeout = "30s")]
    fn get(url: String) -> Result<String, String> {
        let response = modal_guest::fetch("GET", &url, &[], b"")?;
        let body = String::from_utf8_lossy(&response.body);
        Ok(format!("{} {body}", response.status))
    }
}
