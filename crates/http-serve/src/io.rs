//! The socket as hyper sees it, with a bound on how long a write may make no progress.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::ServeStats;

/// A [`TcpStream`] whose writes fail with [`io::ErrorKind::TimedOut`] once they have been blocked
/// (the peer's receive window full) for `timeout`. Reads pass through untouched: hyper bounds
/// them with its header read timeout, and routes bound bodies with [`read_body`](crate::read_body).
pub(crate) struct StallGuard {
    stream: TcpStream,
    timeout: Duration,
    /// Armed while a write is blocked.
    stalled: Option<Pin<Box<Sleep>>>,
    stats: Arc<ServeStats>,
}

impl StallGuard {
    pub(crate) fn new(stream: TcpStream, timeout: Duration, stats: Arc<ServeStats>) -> Self {
        Self { stream, timeout, stalled: None, stats }
    }

    /// After a write returned `Pending`: keep waiting, or fail if the stall has lasted too long.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                self.stats.count_write_stall();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "response write stalled: the client stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn guard<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.poll_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.guard(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.guard(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.guard(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.guard(cx, result)
    }
}
