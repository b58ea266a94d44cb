//! Inputs and outputs of the state machine: what the driver sends, what it is told.

use std::net::SocketAddr;

use bytes::Bytes;
use membership::{Member, Tags};

/// Identifies a request/response exchange over a stream (TCP) that the driver carries out for the
/// state machine.
pub type StreamId = u64;

/// Why a [`TransmitKind::StreamRequest`] failed, as the driver saw it. The difference matters to
/// failure detection: a refused TCP ping proves that the target's process is gone, anything
/// else is silence (docs/protocol.md section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection was refused (`ECONNREFUSED`: the host answered that nothing listens on the
    /// port). Report only that: a reset after the connection was accepted, a timeout or a
    /// refusal frame are [`StreamError::Failed`].
    Refused(String),
    /// Any other failure: no answer within the stream timeout, the connection closed without an
    /// answer, a bad frame, a refusal frame from the peer, no route.
    Failed(String),
}

impl StreamError {
    /// The reason, as the driver gave it.
    pub fn reason(&self) -> &str {
        match self {
            Self::Refused(r) | Self::Failed(r) => r,
        }
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "connection refused: {r}"),
            Self::Failed(r) => f.write_str(r),
        }
    }
}

impl From<String> for StreamError {
    /// A failure that is not a refusal.
    fn from(reason: String) -> Self {
        Self::Failed(reason)
    }
}

/// Something the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// The bytes: a whole datagram, or one stream frame without the length prefix.
    pub payload: Bytes,
    /// How to send it.
    pub kind: TransmitKind,
}

/// How a [`Transmit`] travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    /// One UDP datagram.
    Datagram,
    /// Open a stream to `to`, write the payload as one frame, read one frame back and hand it to
    /// [`crate::Swim::handle_stream_response`] with this id (or the error, on failure or timeout:
    /// a refused connection as [`StreamError::Refused`], anything else as
    /// [`StreamError::Failed`]).
    StreamRequest(StreamId),
}

/// The local node, as given to [`crate::Swim::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Unique name in the cluster.
    pub name: String,
    /// The address other nodes reach this one at (UDP and TCP, same port).
    pub addr: SocketAddr,
    /// Tags.
    pub tags: Tags,
    /// Set once per process start and larger than any earlier start of the same name (the driver
    /// uses wall-clock microseconds): a restarted node is a new life, never confused with the old.
    pub generation: u64,
}

/// Something that happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A member was seen alive for the first time, or alive again after failing or leaving.
    MemberJoined(Member),
    /// A live member's tags, address or protocol versions changed.
    MemberUpdated(Member),
    /// A member is suspected of having failed.
    MemberSuspected(Member),
    /// A suspected member refuted the suspicion.
    MemberRecovered(Member),
    /// A member was declared failed.
    MemberFailed(Member),
    /// A member left gracefully.
    MemberLeft(Member),
    /// A failed or left member was removed from the table.
    MemberReaped(Member),
    /// A node claimed a live member's name from another address; the claim was refused.
    NameConflict {
        /// The member as known.
        existing: Member,
        /// The address of the refused claim.
        claimed_addr: SocketAddr,
    },
    /// A push-pull exchange with a seed started by [`crate::Swim::join`] succeeded.
    JoinSucceeded {
        /// The seed contacted.
        seed: SocketAddr,
    },
    /// A push-pull exchange with a seed started by [`crate::Swim::join`] failed.
    JoinFailed {
        /// The seed.
        seed: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The leave broadcast has gone out (or the wait for it reached its bound).
    LeaveComplete,
    /// An application payload arrived through gossip or directly.
    User(Bytes),
    /// This node's direct probe of `node` was acked: the round-trip time and the payload the
    /// node put in its ack (see [`crate::Swim::set_ack_payload`]).
    ProbeAck {
        /// The member probed.
        node: String,
        /// Time from ping to ack.
        rtt: std::time::Duration,
        /// The member's ack payload.
        payload: Bytes,
    },
    /// A push-pull exchange brought the other side's opaque state (see
    /// [`crate::Swim::set_local_state`]).
    RemoteState {
        /// The exchange was a join: this node's own join (the seed's answer), or another node's
        /// join request to this node. `false` for periodic anti-entropy exchanges.
        join: bool,
        /// The state.
        state: Bytes,
    },
}
