//! The CLI's HTTP client for the control API: finds the server and the
//! token, and offers one typed method per route, taking and returning the
//! types of [`modal_host::api`]. A failure the server reports becomes
//! [`ClientError::Api`], which keeps its kind and message.

use super::progress::Progress;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use modal_host::api::{
    ApiError, AppDetail, AppList, CallResult, CallStatus, DeployQuery, Deployed, DictChanged,
    DictKeys, DictValue, Dicts, ErrorBody, ExecutionRecord, Executions, GcReport, History,
    LogsQuery, Paused, ResultQuery, RollbackQuery, RunStarted, Schedules, SecretCreate,
    SecretDeleted, Secrets, Spawned, Stats, Stopped, VersionQuery, sse,
};
use modal_host::platform::SecretInfo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

/// The address the CLI talks to when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8000";

/// How to reach the server.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The server's URL: `http://HOST:PORT`, or `https://HOST[:PORT]` for a
    /// server behind a TLS proxy (its certificate must be signed by a public
    /// certificate authority or by one given with --ca-cert).
    #[arg(long, env = "MODAL_SERVER", default_value = DEFAULT_SERVER, global = true)]
    server: String,
    /// A PEM file of certificate authorities to trust for an `https://`
    /// server besides the public ones (a private CA of your TLS proxy).
    #[arg(long, env = "MODAL_CA_CERT", value_name = "FILE", global = true)]
    ca_cert: Option<PathBuf>,
    /// The control token; by default read from the state directory's
    /// `token` file (written by `modal server` on first start).
    #[arg(long, env = "MODAL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The state directory holding the token file.
    #[arg(long = "state", env = "MODAL_STATE", value_name = "DIR", global = true)]
    state: Option<PathBuf>,
}

impl ServerArgs {
    /// The state directory given with `--state` or `$MODAL_STATE`.
    pub fn state(&self) -> Option<&std::path::Path> {
        self.state.as_deref()
    }

    /// A client for the server these arguments name.
    pub fn client(&self) -> anyhow::Result<Client> {
        let uri: hyper::Uri = self
            .server
            .parse()
            .with_context(|| format!("`{}` is not a server URL", self.server))?;
        let https = match uri.scheme_str() {
            None | Some("http") => false,
            Some("https") => true,
            Some(_) => bail!("`{}` is not an http:// or https:// server URL", self.server),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("`{}` has no host", self.server))?;
        let default_port = if https { 443 } else { 80 };
        let address = format!("{host}:{}", uri.port_u16().unwrap_or(default_port));
        let authority = uri
            .authority()
            .map_or_else(|| address.clone(), |a| a.as_str().to_string());
        let tls = if https {
            Some(Tls::new(host, self.ca_cert.as_deref())?)
        } else {
            None
        };
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
            address,
            authority,
            base: self.server.trim_end_matches('/').to_string(),
            token,
            tls,
        })
    }
}

/// What an `https://` connection needs: the client settings (trusted
/// authorities) and the name the certificate must carry.
struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl Tls {
    /// Settings for a server named `host`, trusting the public certificate
    /// authorities (the Mozilla set of `webpki-roots`) and those in the PEM
    /// file `ca_cert`.
    fn new(host: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Tls> {
        use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_cert {
            let unreadable = || format!("cannot read the CA certificates in {}", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(unreadable)?
                .collect::<Result<Vec<_>, _>>()
                .with_context(unreadable)?;
            if certs.is_empty() {
                bail!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                );
            }
            for cert in certs {
                roots.add(cert).with_context(|| {
                    format!("{} holds a certificate rustls cannot use", path.display())
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The client speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // `[::1]` names the address `::1`.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .with_context(|| format!("`{host}` is not a host name TLS can check"))?;
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// Why a request to the control API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused or failed the request and said why.
    #[error("{error}")]
    Api {
        /// The answer's status.
        status: StatusCode,
        /// The kind of failure and its message.
        error: ApiError,
    },
    /// The server failed the request without saying why (not the API's
    /// error body).
    #[error("the server answered {status}")]
    Status {
        /// The answer's status.
        status: StatusCode,
    },
    /// The answer is not the body the route returns.
    #[error("the server's answer was not understood")]
    Decode(#[source] serde_json::Error),
    /// The server could not be reached, or the exchange broke.
    #[error(transparent)]
    Transport(#[from] anyhow::Error),
    /// The TLS handshake failed: the server's certificate is not trusted,
    /// or it does not speak TLS. Retrying does not help.
    #[error("{0}")]
    Tls(String),
}

impl ClientError {
    /// The error of a failed answer: the API's error body if it has one.
    fn from_answer(status: StatusCode, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => ClientError::Api {
                status,
                error: body.error,
            },
            Err(_) => ClientError::Status { status },
        }
    }

    /// Whether the same request may succeed later: the server was not
    /// reachable, the exchange broke, or the server was restarting or
    /// overloaded (503) or behind a gateway that could not reach it.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } | ClientError::Status { status } => matches!(
                *status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            ClientError::Decode(_) | ClientError::Tls(_) => false,
        }
    }
}

/// What [`path`] escapes in a path segment: all but letters, digits and
/// `-_.~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `/api/v1/` and the percent-encoded `segments`, then `?query` unless the
/// query is empty.
fn path(segments: &[&str], query: &str) -> String {
    let mut path = String::from("/api/v1");
    for s in segments {
        path.push('/');
        path.extend(utf8_percent_encode(s, SEGMENT));
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(query);
    }
    path
}

/// Delay before the first reconnect of an event stream; it doubles up to
/// [`MAX_RECONNECT_DELAY`].
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// Longest delay between two reconnects of an event stream: a restarted
/// server is seen within this long.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// How long an event stream keeps trying to reconnect to a server that
/// stays unreachable before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(300);

/// Longest silence on an event stream before the connection is taken for
/// dead: three of the server's 15-second keep-alives.
const STREAM_IDLE_LIMIT: Duration = Duration::from_secs(45);

/// A connection target and credentials.
pub struct Client {
    /// Where to connect: `host:port`.
    address: String,
    /// The `Host` header: the URL's host and port, as given.
    authority: String,
    base: String,
    token: String,
    /// For an `https://` server.
    tls: Option<Tls>,
}

/// The TCP stream of a connection to the server, written without
/// vectored writes. A plain write is a `send` with `MSG_NOSIGNAL`, while
/// `writev` raises SIGPIPE when the server has closed the connection (as
/// a TLS peer that refused the handshake does), and the client commands
/// restore SIGPIPE's default action (see `cli::main`), which would end the
/// process without a word.
struct Socket(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Bytes of a request body handed to the connection at a time: small
/// enough for an upload's progress to move, large enough to cost nothing.
const UPLOAD_CHUNK: usize = 256 << 10;

/// A request body: its bytes handed to the connection in chunks of
/// [`UPLOAD_CHUNK`], each reported to the upload's progress, if any.
pub struct Upload {
    data: Bytes,
    sent: usize,
    progress: Option<Progress>,
}

impl Upload {
    /// `data`, reporting its progress to `progress`.
    pub fn new(data: Vec<u8>, progress: Option<Progress>) -> Upload {
        Upload {
            data: Bytes::from(data),
            sent: 0,
            progress,
        }
    }
}

impl From<Vec<u8>> for Upload {
    fn from(data: Vec<u8>) -> Upload {
        Upload::new(data, None)
    }
}

impl hyper::body::Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let total = self.data.len();
        if self.sent >= total {
            return Poll::Ready(None);
        }
        let end = (self.sent + UPLOAD_CHUNK).min(total);
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        if let Some(progress) = &self.progress {
            progress(end as u64, total as u64);
        }
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

/// A request sender on a fresh HTTP/1.1 connection.
type Sender = hyper::client::conn::http1::SendRequest<Upload>;

/// Starts HTTP/1.1 on `io`; the connection runs in a task of its own.
async fn handshake<T>(io: T) -> anyhow::Result<Sender>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP handshake with the server failed")?;
    tokio::spawn(conn);
    Ok(sender)
}

impl Client {
    /// A fresh HTTP/1.1 connection to the server, over TLS for `https://`.
    async fn connect(&self) -> Result<Sender, ClientError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the modal server at {} (is `modal server` running?)",
                    self.base
                )
            })?;
        let _ = stream.set_nodelay(true);
        let stream = Socket(stream);
        let Some(tls) = &self.tls else {
            return Ok(handshake(stream).await?);
        };
        match tls.connector.connect(tls.name.clone(), stream).await {
            Ok(stream) => Ok(handshake(stream).await?),
            Err(e) => Err(self.tls_error(e)),
        }
    }

    /// The error of a failed TLS handshake: one line saying what to do
    /// when the certificate is not trusted; a connection that broke is a
    /// transport error (worth a retry).
    fn tls_error(&self, e: std::io::Error) -> ClientError {
        let base = &self.base;
        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                ClientError::Tls(format!(
                    "the certificate of {base} is signed by an unknown certificate \
                     authority: trust it with --ca-cert FILE (or MODAL_CA_CERT)"
                ))
            }
            Some(e @ rustls::Error::InvalidCertificate(_)) => {
                ClientError::Tls(format!("the certificate of {base} is not accepted: {e}"))
            }
            Some(e) => ClientError::Tls(format!(
                "TLS with {base} failed: {e} (is it an https:// server?)"
            )),
            None => anyhow::Error::new(e)
                .context(format!("TLS with {base} failed"))
                .into(),
        }
    }

    /// Sends a request with the server's host and the token.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Upload,
        last_event_id: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if let Some(id) = last_event_id {
            request = request.header(sse::LAST_EVENT_ID, id);
        }
        let request = request.body(body).context("building the request")?;
        let mut sender = self.connect().await?;
        Ok(sender
            .send_request(request)
            .await
            .context("the request to the server failed")?)
    }

    /// Sends a request and reads the whole answer.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Upload>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.send(method, path, body.into(), None).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the server's answer")?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request and decodes a successful answer as `T`.
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Upload>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.exchange(method, path, body).await?;
        if !status.is_success() {
            return Err(ClientError::from_answer(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(ClientError::Decode)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, Vec::new()).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Into<Upload>,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, body).await
    }

    /// Uploads a mount archive unless the server has it, reporting to
    /// `progress`; returns its digest and whether it was uploaded.
    pub async fn put_archive(
        &self,
        archive: Vec<u8>,
        progress: Option<Progress>,
    ) -> Result<(String, bool), ClientError> {
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&archive))
        };
        let path = path(&["archives", &digest], "");
        let (status, _) = self.exchange(Method::HEAD, &path, Vec::new()).await?;
        if status.is_success() {
            return Ok((digest, false));
        }
        let upload = Upload::new(archive, progress);
        let _: serde_json::Value = self.request(Method::PUT, &path, upload).await?;
        Ok((digest, true))
    }

    /// Every secret (names, keys, revisions; never values).
    pub async fn secrets(&self) -> Result<Secrets, ClientError> {
        self.get(&path(&["secrets"], "")).await
    }

    /// Creates secret `name` (a new revision with `force`).
    pub async fn create_secret(
        &self,
        name: &str,
        create: &SecretCreate,
        force: bool,
    ) -> Result<SecretInfo, ClientError> {
        let query = if force { "force=true" } else { "" };
        let body = serde_json::to_vec(create).map_err(ClientError::Decode)?;
        self.post(&path(&["secrets", name], query), body).await
    }

    /// Deletes secret `name`.
    pub async fn delete_secret(
        &self,
        name: &str,
        force: bool,
    ) -> Result<SecretDeleted, ClientError> {
        let query = if force { "force=true" } else { "" };
        self.request(Method::DELETE, &path(&["secrets", name], query), Vec::new())
            .await
    }

    /// The key-value buckets of `app`.
    pub async fn dicts(&self, app: &str) -> Result<Dicts, ClientError> {
        self.get(&path(&["apps", app, "dicts"], "")).await
    }

    /// A page of the keys of a bucket, from `cursor` on.
    pub async fn dict_keys(
        &self,
        app: &str,
        bucket: &str,
        cursor: u64,
    ) -> Result<DictKeys, ClientError> {
        let query = format!("cursor={cursor}");
        self.get(&path(&["apps", app, "dicts", bucket], &query))
            .await
    }

    /// The value at `key` of a bucket.
    pub async fn dict_get(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
    ) -> Result<DictValue, ClientError> {
        self.get(&path(&["apps", app, "dicts", bucket, "keys", key], ""))
            .await
    }

    /// Sets `key` of a bucket to `value`.
    pub async fn dict_put(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<DictChanged, ClientError> {
        let path = path(&["apps", app, "dicts", bucket, "keys", key], "");
        self.request(Method::PUT, &path, value).await
    }

    /// Removes every key of a bucket.
    pub async fn dict_clear(&self, app: &str, bucket: &str) -> Result<DictChanged, ClientError> {
        let path = path(&["apps", app, "dicts", bucket], "");
        self.request(Method::DELETE, &path, Vec::new()).await
    }

    /// Every app the server keeps.
    pub async fn apps(&self) -> Result<AppList, ClientError> {
        self.get(&path(&["apps"], "")).await
    }

    /// The live hosts.
    pub async fn hosts(&self) -> Result<modal_host::api::HostList, ClientError> {
        self.get(&path(&["hosts"], "")).await
    }

    /// The versions of `app`.
    pub async fn history(&self, app: &str) -> Result<History, ClientError> {
        self.get(&path(&["apps", app, "history"], "")).await
    }

    /// Deploys `wasm` as a new live version of `app`, reporting the
    /// upload to `progress`.
    pub async fn deploy(
        &self,
        app: &str,
        query: &DeployQuery,
        wasm: Vec<u8>,
        progress: Option<Progress>,
    ) -> Result<Deployed, ClientError> {
        let path = path(&["apps", app, "deploy"], &query.to_query());
        self.post(&path, Upload::new(wasm, progress)).await
    }

    /// Makes an earlier version's code live again, as a new version.
    pub async fn rollback(
        &self,
        app: &str,
        query: &RollbackQuery,
    ) -> Result<Deployed, ClientError> {
        let path = path(&["apps", app, "rollback"], &query.to_query());
        self.post(&path, Vec::new()).await
    }

    /// Stops `app`.
    pub async fn stop(&self, app: &str) -> Result<Stopped, ClientError> {
        self.post(&path(&["apps", app, "stop"], ""), Vec::new())
            .await
    }

    /// Calls `function` with `input` and waits for it. A call that ran
    /// and failed is `Ok`, with its `error` and logs; one that could not
    /// run is an error.
    pub async fn call(
        &self,
        app: &str,
        function: &str,
        query: VersionQuery,
        input: Vec<u8>,
    ) -> Result<CallResult, ClientError> {
        let path = path(
            &["apps", app, "functions", function, "call"],
            &query.to_query(),
        );
        let (status, bytes) = self.exchange(Method::POST, &path, input).await?;
        match serde_json::from_slice::<CallResult>(&bytes) {
            Ok(result) if status.is_success() || result.error.is_some() => Ok(result),
            Ok(_) => Err(ClientError::Status { status }),
            Err(_) if !status.is_success() => Err(ClientError::from_answer(status, &bytes)),
            Err(e) => Err(ClientError::Decode(e)),
        }
    }

    /// Starts a call of `function` in the background.
    pub async fn spawn(
        &self,
        app: &str,
        function: &str,
        query: VersionQuery,
        input: Vec<u8>,
    ) -> Result<Spawned, ClientError> {
        let path = path(
            &["apps", app, "functions", function, "spawn"],
            &query.to_query(),
        );
        self.post(&path, input).await
    }

    /// The state of spawned call `id`, waiting as `query` says.
    pub async fn result(&self, id: &str, query: &ResultQuery) -> Result<CallStatus, ClientError> {
        self.get(&path(&["calls", id], &query.to_query())).await
    }

    /// The executions of call `id` and of the calls it made.
    pub async fn tree(&self, id: &str) -> Result<Executions, ClientError> {
        self.get(&path(&["calls", id, "tree"], "")).await
    }

    /// Recent executions of `app`.
    pub async fn logs(&self, app: &str, query: &LogsQuery) -> Result<Executions, ClientError> {
        self.get(&path(&["apps", app, "logs"], &query.to_query()))
            .await
    }

    /// Usage of `app` per version and function.
    pub async fn usage(&self, app: &str) -> Result<Stats, ClientError> {
        self.get(&path(&["apps", app, "stats"], "")).await
    }

    /// The schedules of `app`.
    pub async fn schedules(&self, app: &str) -> Result<Schedules, ClientError> {
        self.get(&path(&["apps", app, "schedules"], "")).await
    }

    /// Pauses (`true`) or resumes the schedule of `function`.
    pub async fn set_paused(
        &self,
        app: &str,
        function: &str,
        paused: bool,
    ) -> Result<Paused, ClientError> {
        let action = if paused { "pause" } else { "resume" };
        let path = path(&["apps", app, "schedules", function, action], "");
        self.post(&path, Vec::new()).await
    }

    /// Fires the schedule of `function` once, now.
    pub async fn run_schedule(&self, app: &str, function: &str) -> Result<RunStarted, ClientError> {
        let path = path(&["apps", app, "schedules", function, "run"], "");
        self.post(&path, Vec::new()).await
    }

    /// Hands each new execution of `app` (of `function` if given) to
    /// `on_record`, starting after execution `after` when given. When the
    /// stream breaks (a server restart) it reconnects, sooner at first
    /// and every [`MAX_RECONNECT_DELAY`] at most, and resumes after the
    /// last execution seen; it gives up on an error that will not pass,
    /// or after [`RECONNECT_FOR`] without reaching the server.
    pub async fn follow(
        &self,
        app: &str,
        function: Option<&str>,
        after: Option<u64>,
        mut on_record: impl FnMut(ExecutionRecord),
    ) -> Result<(), ClientError> {
        let query = LogsQuery {
            function: function.map(str::to_string),
            follow: true,
            ..LogsQuery::default()
        };
        let path = path(&["apps", app, "logs"], &query.to_query());
        let mut last_id = after.map(|id| id.to_string());
        let mut delay = FIRST_RECONNECT_DELAY;
        let mut lost_at: Option<Instant> = None;
        loop {
            let result = self
                .stream(
                    &path,
                    &mut last_id,
                    || {
                        if lost_at.take().is_some() {
                            eprintln!("(reconnected)");
                        }
                        delay = FIRST_RECONNECT_DELAY;
                    },
                    &mut on_record,
                )
                .await;
            match result {
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) if lost_at.is_some_and(|at| at.elapsed() > RECONNECT_FOR) => return Err(e),
                _ => {}
            }
            if lost_at.is_none() {
                eprintln!("(lost the connection to the server; reconnecting…)");
                lost_at = Some(Instant::now());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    /// One connection of [`follow`](Client::follow): reads events until the
    /// stream ends or breaks, keeping `last_id` up to date. `on_open` runs
    /// once the server accepted the stream.
    async fn stream(
        &self,
        path: &str,
        last_id: &mut Option<String>,
        on_open: impl FnOnce(),
        on_record: &mut impl FnMut(ExecutionRecord),
    ) -> Result<(), ClientError> {
        let response = self
            .send(Method::GET, path, Vec::new().into(), last_id.as_deref())
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(ClientError::from_answer(status, &bytes));
        }
        on_open();
        let mut body = response.into_body();
        let mut parser = sse::Parser::new();
        loop {
            let frame = match tokio::time::timeout(STREAM_IDLE_LIMIT, body.frame()).await {
                Err(_) => return Err(anyhow!("the event stream went silent").into()),
                Ok(None) => return Ok(()),
                Ok(Some(frame)) => frame.context("the event stream broke")?,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for event in parser.feed(&data) {
                if let Ok(record) = serde_json::from_str(&event.data) {
                    on_record(record);
                }
            }
            if let Some(id) = parser.last_event_id() {
                *last_id = Some(id.to_string());
            }
        }
    }
}

/// Routes of the API that no command uses yet; the client covers them so
/// that it answers for the whole contract.
#[allow(dead_code)]
impl Client {
    /// An app, its versions, its live pools and its web addresses.
    pub async fn app(&self, app: &str) -> Result<AppDetail, ClientError> {
        self.get(&path(&["apps", app], "")).await
    }

    /// Collects stopped apps past the retention and unused artifacts.
    pub async fn gc(&self) -> Result<GcReport, ClientError> {
        self.post(&path(&["gc"], ""), Vec::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_their_segments() {
        assert_eq!(
            path(&["apps", "a/b c", "logs"], "limit=5"),
            "/api/v1/apps/a%2Fb%20c/logs?limit=5"
        );
        assert_eq!(path(&["gc"], ""), "/api/v1/gc");
    }

    #[tokio::test]
    async fn uploads_go_out_in_chunks_and_report_their_progress() {
        use hyper::body::Body as _;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let report = seen.clone();
        let progress: Progress = Arc::new(move |sent, total| {
            report.lock().unwrap().push((sent, total));
        });
        let total = 2 * UPLOAD_CHUNK + 1000;
        let upload = Upload::new(vec![7; total], Some(progress));
        assert_eq!(upload.size_hint().exact(), Some(total as u64));
        let body = upload.collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), total);
        let chunk = UPLOAD_CHUNK as u64;
        let total = total as u64;
        assert_eq!(
            *seen.lock().unwrap(),
            [(chunk, total), (2 * chunk, total), (total, total)]
        );
        let empty = Upload::from(Vec::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[test]
    fn only_passing_failures_are_retried() {
        let api = |status: u16, kind: &str| ClientError::Api {
            status: StatusCode::from_u16(status).unwrap(),
            error: ApiError::new(kind, "m"),
        };
        assert!(api(503, "shutting_down").is_transient());
        assert!(!api(404, "app_not_found").is_transient());
        assert!(ClientError::Transport(anyhow!("refused")).is_transient());
        assert!(
            ClientError::from_answer(StatusCode::BAD_GATEWAY, b"<html>").is_transient(),
            "a gateway's page is a passing failure too"
        );
        assert_eq!(
            ClientError::from_answer(
                StatusCode::NOT_FOUND,
                br#"{"error":{"kind":"app_not_found","message":"no app named `x`"}}"#
            )
            .to_string(),
            "no app named `x`"
        );
    }
}
