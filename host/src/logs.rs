//! Capture of a guest's stdout and stderr into a bounded per-execution
//! buffer.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Appended when an execution's logs were cut at the limit.
const TRUNCATED: &str = "\n[modal: log output truncated]\n";

/// Both output streams of one instance write here, in order; the host
/// takes the contents after each execution.
#[derive(Clone)]
pub(crate) struct LogCapture {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
    /// Masks secret values in what is taken.
    secrets: crate::SecretEnv,
}

impl LogCapture {
    /// A capture keeping at most `limit` bytes per execution, with the
    /// values of `secrets` masked.
    pub(crate) fn new(limit: usize, secrets: crate::SecretEnv) -> Self {
        LogCapture {
            inner: Arc::new(Mutex::new(Captured {
                buf: Vec::new(),
                limit,
                truncated: false,
                secrets,
            })),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.limit.saturating_sub(c.buf.len());
        if bytes.len() > room {
            c.truncated = true;
        }
        let n = bytes.len().min(room);
        c.buf.extend_from_slice(&bytes[..n]);
    }

    /// Takes what was written since the last take, as text.
    pub(crate) fn take(&self) -> String {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if c.buf.is_empty() && !c.truncated {
            return String::new();
        }
        let mut text = String::from_utf8_lossy(&c.buf).into_owned();
        if std::mem::take(&mut c.truncated) {
            text.push_str(TRUNCATED);
        }
        c.buf.clear();
        c.secrets.mask(text)
    }
}

impl IsTerminal for LogCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for LogCapture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready; bytes past the limit are dropped, never refused, so
        // that a guest's `println!` cannot fail because of logging.
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for LogCapture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_and_clears() {
        let logs = LogCapture::new(8, Default::default());
        logs.append(b"abc");
        logs.append(b"def");
        assert_eq!(logs.take(), "abcdef");
        assert_eq!(logs.take(), "");
    }

    #[test]
    fn output_past_the_limit_is_cut_with_a_marker() {
        let logs = LogCapture::new(4, Default::default());
        logs.append(b"abcdef");
        assert_eq!(logs.take(), format!("abcd{TRUNCATED}"));
        logs.append(b"xy");
        assert_eq!(logs.take(), "xy");
    }
}
