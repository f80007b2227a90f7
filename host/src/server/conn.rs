//! Limits on connections and request bodies: a cap on open connections
//! that sheds idle ones (oldest first, those that never sent a request
//! before those between requests) to make room for new clients, a deadline
//! for a connection's first request, a read timeout for request bodies, and
//! the batching of the answers of connections ready at once
//! (`batched.rs`).

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;

/// Connections kept open at most when the file-descriptor limit gives no
/// better figure.
const FALLBACK_MAX_CONNECTIONS: usize = 1024;

/// File descriptors kept back from connections for the registry, records,
/// artifacts, compiled code and guests' outbound requests.
const RESERVED_FDS: u64 = 64;

/// Most connections by default, whatever the descriptor limit: each may
/// buffer up to a few hundred KiB of headers, so memory, not descriptors,
/// bounds a large limit (`--max-connections` raises it).
const MAX_DEFAULT_CONNECTIONS: u64 = 4096;

/// The default connection cap: raises the soft file-descriptor limit to
/// the hard one, then takes three quarters of it (less a reserve for the
/// host's own files), at most 4096, so a flood of connections can never
/// starve the host of descriptors or memory.
pub fn default_max_connections() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if limit == 0 {
        return FALLBACK_MAX_CONNECTIONS;
    }
    (limit.saturating_sub(RESERVED_FDS) * 3 / 4).clamp(16, MAX_DEFAULT_CONNECTIONS) as usize
}

/// One open connection, as the cap sees it.
pub(crate) struct Conn {
    /// Requests in progress.
    active: AtomicUsize,
    /// Whether it has started a request.
    started: AtomicBool,
    /// Told to close (shed for a newer connection).
    shed: Notify,
}

impl Conn {
    /// Marks a request as started; the guard marks its end.
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        self.started.store(true, Ordering::Release);
        self.active.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Resolves when the connection must close: it was shed, or it sent no
    /// request within `first_request` of being accepted.
    pub(crate) async fn closing(&self, first_request: Duration) {
        let shed = self.shed.notified();
        let idle = async {
            tokio::time::sleep(first_request).await;
            if self.started.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = shed => {}
            () = idle => tracing::debug!("closing a connection that sent no request in time"),
        }
    }
}

/// A request in progress on a connection.
pub(crate) struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of a server, oldest first.
pub(crate) struct Connections {
    max: usize,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

/// An admitted connection; dropping it frees its place.
pub(crate) struct Admitted {
    id: u64,
    pub(crate) conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open().remove(&self.id);
    }
}

impl Connections {
    pub(crate) fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a new connection, shedding an idle one when all
    /// are taken; `None` when every open connection is busy with a request.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open();
        if open.len() >= self.max && !Self::shed_one(&mut open) {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            active: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            shed: Notify::new(),
        });
        open.insert(id, conn.clone());
        Some(Admitted {
            id,
            conn,
            connections: self.clone(),
        })
    }

    /// Sheds one idle connection to free a file descriptor (e.g. after an
    /// accept failed for lack of them). Returns whether one was shed.
    pub(crate) fn shed_idle(&self) -> bool {
        Self::shed_one(&mut self.open())
    }

    /// Closes the oldest connection that never started a request, else the
    /// oldest one between requests.
    fn shed_one(open: &mut BTreeMap<u64, Arc<Conn>>) -> bool {
        let idle = |c: &Arc<Conn>| c.active.load(Ordering::Acquire) == 0;
        let victim = open
            .iter()
            .find(|(_, c)| idle(c) && !c.started.load(Ordering::Acquire))
            .or_else(|| open.iter().find(|(_, c)| idle(c)))
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(conn) => {
                conn.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A response body that keeps its request counted as in progress until
/// it has been sent or dropped.
pub(crate) struct Guarded<B> {
    inner: B,
    _request: RequestGuard,
}

impl<B> Guarded<B> {
    pub(crate) fn new(inner: B, request: RequestGuard) -> Guarded<B> {
        Guarded {
            inner,
            _request: request,
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// No data came for the body timeout.
    #[error("the request body stalled for {0:?}")]
    Stalled(Duration),
    /// The connection failed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that fails when no frame arrives for `timeout` (or,
/// with [`within`](Self::within), when the whole body takes longer than
/// its limit); the flag tells the server to answer 408.
pub(crate) struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    /// Armed at the first wait, re-armed after each frame.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the whole body must have arrived, if bounded.
    total: Option<tokio::time::Instant>,
    stalled: Arc<AtomicBool>,
}

impl TimedBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> (TimedBody, Arc<AtomicBool>) {
        let stalled = Arc::new(AtomicBool::new(false));
        let body = TimedBody {
            inner,
            timeout,
            sleep: None,
            total: None,
            stalled: stalled.clone(),
        };
        (body, stalled)
    }

    /// Bounds the whole body to `limit` from now.
    pub(crate) fn within(mut self, limit: Duration) -> TimedBody {
        self.total = Some(tokio::time::Instant::now() + limit);
        self
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
            }
            Poll::Pending => {
                let (timeout, total) = (this.timeout, this.total);
                let sleep = this.sleep.get_or_insert_with(|| {
                    let next = tokio::time::Instant::now() + timeout;
                    let at = total.map_or(next, |t| t.min(next));
                    Box::pin(tokio::time::sleep_until(at))
                });
                if sleep.as_mut().poll(cx).is_ready() {
                    this.stalled.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(BodyError::Stalled(timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_silent_connection_is_shed_first() {
        let connections = Connections::new(2);
        let a = connections.admit().unwrap();
        let b = connections.admit().unwrap();
        let _busy = b.conn.request();
        // Full: `a` never sent a request, so it goes.
        let c = connections.admit().unwrap();
        assert_eq!(connections.open().len(), 2);
        assert!(!connections.open().contains_key(&a.id));
        // Full again: `b` is busy and `c` idle, so `c` goes.
        let _d = connections.admit().unwrap();
        assert!(!connections.open().contains_key(&c.id));
        drop(_busy);
        drop(a);
        assert!(connections.open().contains_key(&b.id));
    }

    #[test]
    fn a_cap_of_busy_connections_admits_no_more() {
        let connections = Connections::new(1);
        let a = connections.admit().unwrap();
        let _busy = a.conn.request();
        assert!(connections.admit().is_none());
        assert!(!connections.shed_idle());
    }
}
