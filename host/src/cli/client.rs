//! The CLI's HTTP client for the control API: finds the server and the
//! token, sends one request, turns API errors into one-line messages.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;

/// The address the CLI talks to when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8000";

/// How to reach the server.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(long, env = "MODAL_SERVER", default_value = DEFAULT_SERVER, global = true)]
    server: String,
    /// The control token; by default read from the state directory's
    /// `token` file (written by `modal server` on first start).
    #[arg(long, env = "MODAL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The state directory holding the token file.
    #[arg(long = "state", env = "MODAL_STATE", value_name = "DIR", global = true)]
    state: Option<PathBuf>,
}

/// A connection target and credentials.
pub struct Client {
    authority: String,
    base: String,
    token: String,
}

impl ServerArgs {
    /// The state directory given with `--state` or `$MODAL_STATE`.
    pub fn state(&self) -> Option<&std::path::Path> {
        self.state.as_deref()
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        let uri: hyper::Uri = self
            .server
            .parse()
            .with_context(|| format!("`{}` is not a server URL", self.server))?;
        if uri.scheme_str().is_some_and(|s| s != "http") {
            bail!(
                "only http:// server URLs are supported, not `{}`",
                self.server
            );
        }
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("`{}` has no host", self.server))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                let dir = super::common::state_dir(self.state.as_deref())?;
                let path = dir.join(modal_host::server::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no token: pass --token or set MODAL_TOKEN, or run on the server's machine \
                             (cannot read {})",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Client {
            authority,
            base: self.server.trim_end_matches('/').to_string(),
            token,
        })
    }
}

/// What the server answered.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The API's error message, if the request failed.
    pub fn error_message(&self) -> Option<String> {
        if self.status.is_success() {
            return None;
        }
        Some(
            self.body["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the server answered {}", self.status)),
        )
    }
}

impl Client {
    /// A fresh HTTP/1.1 connection to the server.
    async fn connect(
        &self,
    ) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the modal server at {} (is `modal server` running?)",
                    self.base
                )
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the server failed")?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// A request with the server's host and the token.
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(Bytes::from(body)))
            .context("building the request")
    }

    /// Sends a request; a failed API call is still an `Answer`.
    pub async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<Answer> {
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(self.request(method, path, body)?)
            .await
            .context("the request to the server failed")?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the server's answer")?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer { status, body })
    }

    /// Sends a GET and hands each server-sent event's data to `on_event`
    /// until the server closes the stream.
    pub async fn events(&self, path: &str, mut on_event: impl FnMut(&str)) -> anyhow::Result<()> {
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(self.request(Method::GET, path, Vec::new())?)
            .await
            .context("the request to the server failed")?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let answer = Answer { status, body };
            bail!(answer.error_message().unwrap_or_default());
        }
        let mut body = response.into_body();
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the event stream broke")?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        on_event(data);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends a request and fails with the API's message unless it succeeded.
    pub async fn expect(&self, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let answer = self.send(method, path, body).await?;
        match answer.error_message() {
            Some(message) => Err(anyhow!(message)),
            None => Ok(answer.body),
        }
    }
}

/// Percent-encodes a query value or path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
