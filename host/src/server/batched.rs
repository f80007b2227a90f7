//! Batched answers: a connection's socket whose first write after a flush
//! lets the thread's other ready connections run first. Standalone (tokio
//! only), so that the bare benchmark host can serve the same way.

use std::pin::Pin;
use std::task::{Context, Poll};

/// A connection's socket whose writes first let the thread's other ready
/// connections run: the first write after a flush yields once (the task
/// goes to the back of its thread's run queue), so the answers of the
/// requests that arrived together leave together, and a client waiting on
/// several of them is woken once instead of once per answer.
pub(crate) struct Batched<T> {
    inner: T,
    /// Whether this write already yielded.
    yielded: bool,
}

impl<T> Batched<T> {
    pub(crate) fn new(inner: T) -> Batched<T> {
        Batched {
            inner,
            yielded: false,
        }
    }

    /// Yields once before the first write of a batch.
    fn wait_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Batched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Batched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.wait_turn(cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.wait_turn(cx));
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A socket that logs its writes.
    struct Logged(Arc<Mutex<Vec<&'static str>>>);

    impl tokio::io::AsyncWrite for Logged {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().push("answer written");
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_waits_for_the_other_ready_connections_then_leaves_in_one_write() {
        use tokio::io::AsyncWriteExt;
        let log = Arc::new(Mutex::new(Vec::new()));
        let answering = tokio::spawn({
            let log = log.clone();
            async move {
                let mut socket = Batched::new(Logged(log));
                socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
                socket.flush().await.unwrap();
            }
        });
        let other = tokio::spawn({
            let log = log.clone();
            async move { log.lock().unwrap().push("other connection ran") }
        });
        answering.await.unwrap();
        other.await.unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            ["other connection ran", "answer written"]
        );
    }
}
