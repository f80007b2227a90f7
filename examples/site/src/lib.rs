//! The site app: a web function whose frontend is a mounted directory.
//!
//! Deploy it with `modal deploy site.wasm --mount examples/site/assets:/assets`;
//! `GET /assets/index.html` on its web URL answers from the mount. `read`,
//! `write` and `peek` show what the guest may do with files: read the
//! mount, and nothing else.

#[modal_guest::app]
mod site {
    use modal_guest::{Request, Response};

    /// Serves `/assets/...` from the mount at `/assets`.
    #[function(web(method = "GET"))]
    fn web(req: Request) -> Response {
        modal_guest::serve_dir(&req, "/assets", "/assets")
    }

    /// The text of file `path`, or the error reading it.
    #[function]
    fn read(path: String) -> String {
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("error: {e}"))
    }

    /// Tries to write `path`; the error, since mounts are read-only.
    #[function]
    fn write(path: String) -> String {
        match std::fs::write(&path, b"x") {
            Ok(()) => "written".into(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Whether `path` exists as the guest sees it.
    #[function]
    fn peek(path: String) -> bool {
        std::path::Path::new(&path).exists()
    }
}
