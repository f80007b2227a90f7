//! Body adapters of a web request: the request body capped at its limit
//! ([`CappedBody`]) and a finished handler's answer settled into one
//! buffer of known length ([`settle`]).

use super::{WebBody, WebResponse};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Largest finished body sent with its length rather than chunked.
const SETTLE_LIMIT: usize = 256 * 1024;

/// Bytes of an oversized request body read (and discarded) before
/// answering 413.
const DISCARD_CAP: u64 = 1 << 30;

/// Reads and discards `body`, up to [`DISCARD_CAP`] bytes: a client still
/// sending a body too large to take would otherwise see a broken pipe
/// instead of the 413.
pub(crate) async fn discard<B>(mut body: B)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    let mut discarded = 0u64;
    while discarded < DISCARD_CAP {
        match body.frame().await {
            Some(Ok(frame)) => discarded += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
}

/// The body of a handler that has returned: its frames are all waiting in
/// the channel, so they are taken now and sent as one buffer with a
/// `content-length` (hyper adds it for a body of known size). Anything
/// unexpected (trailers, an error, a frame not yet there, a large body)
/// keeps what was read in front of the rest, streamed as before.
pub(super) fn settle(response: WebResponse) -> WebResponse {
    let (parts, body) = response.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    WebResponse::from_parts(parts, settle_body(body, declared))
}

/// See [`settle`]; `declared` is the guest's `content-length` header, if
/// it set one (`Some(None)` when unreadable). A body that does not match it
/// streams as it is, and hyper deals with the mismatch as before.
fn settle_body(mut body: WebBody, declared: Option<Option<u64>>) -> WebBody {
    use http_body_util::BodyExt;
    use hyper::body::Body;
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let unsettled = loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => break None,
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    size += data.len();
                    chunks.push(data);
                    if size > SETTLE_LIMIT {
                        break Some(None);
                    }
                }
                Err(frame) => break Some(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => break Some(Some(Err(e))),
            Poll::Pending => break Some(None),
        }
    };
    let matches = declared.is_none_or(|d| d == Some(size as u64));
    match unsettled {
        None if matches => {
            let data = match chunks.len() {
                0 => Bytes::new(),
                1 => chunks.pop().unwrap_or_default(),
                _ => Bytes::from(chunks.concat()),
            };
            http_body_util::Full::new(data)
                .map_err(|never| match never {})
                .boxed_unsync()
        }
        next => {
            let mut frames: std::collections::VecDeque<_> = chunks
                .into_iter()
                .map(|c| Ok(hyper::body::Frame::data(c)))
                .collect();
            frames.extend(next.flatten());
            Prefixed { frames, rest: body }.boxed_unsync()
        }
    }
}

/// Frames already taken from a body, then the rest of it.
struct Prefixed {
    frames:
        std::collections::VecDeque<Result<hyper::body::Frame<Bytes>, wasmtime_wasi_http::Error>>,
    rest: WebBody,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }
}

/// A request body cut off at the limit: past it the guest's stream fails
/// and the flag tells the host to answer 413.
pub(super) struct CappedBody<B> {
    /// The client's body.
    pub(super) inner: B,
    /// Bytes still allowed.
    pub(super) left: u64,
    /// The limit, for the error.
    pub(super) limit: u64,
    /// Set when the body passed the limit.
    pub(super) exceeded: Arc<AtomicBool>,
}

impl<B> hyper::body::Body for CappedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.left {
                    this.exceeded.store(true, Ordering::Release);
                    let error = wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.limit));
                    return Poll::Ready(Some(Err(error)));
                }
                this.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                    format!("reading the request body: {e}"),
                )))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
