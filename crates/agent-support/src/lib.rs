//! What the two agents of this workspace (serf-agent, consul-lite) share, so that it is written
//! once: the logging that feeds their `monitor` streams, and the streamed HTTP body those
//! streams are sent with.
//!
//! ```text
//!  tracing events ──► registry ─┬─► fmt layer (stderr) ◄── reloadable EnvFilter (log level, SIGHUP)
//!                               └─► monitor layer ── LogHub (broadcast, bounded) ──► LogSubscription
//!                                                                                     │ (per stream level)
//!                                        agent endpoint: format lines ─► mpsc ─► ChannelBody ─► client
//! ```
//!
//! - [`logging::Logging`] installs the global `tracing` subscriber: stderr at a level that can be
//!   changed at run time, plus the monitor layer, enabled only up to the most verbose level some
//!   open stream asked for (nobody pays for debug records nobody reads).
//! - [`logging::LogHub::subscribe`] gives a stream its records; a reader that falls more than
//!   [`logging::MONITOR_BUFFER`] records behind skips them and is told how many
//!   ([`logging::LogSubscription::recv`] returns `Err(skipped)`): the agent never waits for it.
//! - [`ChannelBody`] turns an `mpsc` channel of chunks into an HTTP body.
//!
//! What it does not do: format lines for a wire (each agent has its own: NDJSON for serf-agent,
//! Consul's text or JSON lines for consul-lite), authenticate streams, parse command lines
//! (serf-agent's and consul-lite's single-dash flag rewriting differ: consul-lite stops at the
//! command that `lock` and `watch` run), or keep any log history (a stream sees records logged
//! after it subscribed, nothing earlier).

#![deny(missing_docs)]

pub mod logging;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// A streamed HTTP body: each message of the channel is one chunk (sent as it comes); the body
/// ends when every sender is dropped.
#[derive(Debug)]
pub struct ChannelBody {
    chunks: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// The body that carries what is sent on the other side of `chunks`.
    pub fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self { chunks }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}
