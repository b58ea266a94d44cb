//! Server-to-server RPC over TCP: frames ([`frame`]), messages, the client pool and the listener;
//! and client agents' requests and subscriptions on the same port ([`agents`]).

pub mod agents;
pub(crate) mod client;
pub mod frame;
pub(crate) mod message;
pub(crate) mod server;

use std::time::Duration;

/// A call to another server failed. Whether the other side acted on the request is unknown
/// unless the variant says it never got it (`Connect`, `ConnectTimeout`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Could not connect (the peer never got the request).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Connecting took too long (the peer never got the request).
    #[error("connect to {addr}: no answer within {after:?}")]
    ConnectTimeout {
        /// The peer's address.
        addr: String,
        /// The bound.
        after: Duration,
    },
    /// No answer within the bound.
    #[error("{addr}: no answer within {after:?}")]
    Timeout {
        /// The peer's address.
        addr: String,
        /// The bound.
        after: Duration,
    },
    /// The peer closed the connection without answering.
    #[error("{addr}: closed the connection without answering")]
    Closed {
        /// The peer's address.
        addr: String,
    },
    /// A frame could not be sent or the answer could not be read.
    #[error("{addr}: {source}")]
    Frame {
        /// The peer's address.
        addr: String,
        /// What was wrong with the frame or the stream.
        source: frame::FrameError,
    },
    /// The peer answered with an error of its own.
    #[error("{addr} answered: {message}")]
    Remote {
        /// The peer's address.
        addr: String,
        /// Its error, as text.
        message: String,
    },
    /// The server at `addr` is not the one the request was for: it refused the request without
    /// acting on it (it came back under a new id, e.g. after its data dir was wiped).
    #[error("{addr} is server {actual}, not {addressed}: request refused")]
    WrongNode {
        /// The peer's address.
        addr: String,
        /// The id the request was addressed to.
        addressed: crate::NodeId,
        /// The id of the server that answered.
        actual: crate::NodeId,
    },
    /// The peer answered with a message of another kind.
    #[error("{addr}: answered something other than {wanted}")]
    Unexpected {
        /// The peer's address.
        addr: String,
        /// What was expected.
        wanted: &'static str,
    },
}
