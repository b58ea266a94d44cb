//! [`SerfError`]: what can go wrong in the serf layer.

use std::io;
use std::path::PathBuf;

use crate::{JoinError, NodeConfigError, NodeError, StartError};

/// Why an operation of the serf layer failed. Each variant says what it refused; unless stated,
/// nothing was changed or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerfError {
    /// A field of [`super::SerfConfig`] breaks a rule.
    #[error("{field}: {value} is invalid: {rule}")]
    Config {
        /// The field, as named in [`super::SerfConfig`].
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The node configuration ([`super::SerfConfig::node`]) is invalid.
    #[error("node.{0}")]
    NodeConfig(#[from] NodeConfigError),
    /// The node could not start (binding the sockets, ...).
    #[error(transparent)]
    Start(#[from] StartError),
    /// An operation of the underlying node failed (it stopped, a leave timed out, ...).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Joining failed: no seed answered.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A user event larger than the limit; nothing was sent.
    #[error("user event of {len} bytes (name + payload) is larger than the limit of {max} bytes")]
    EventTooLarge {
        /// Name plus payload, in bytes.
        len: usize,
        /// The limit: [`super::SerfConfig::max_user_event_size`], or less when one gossip
        /// message cannot carry that much (see the module docs).
        max: usize,
    },
    /// A query larger than the limit; nothing was sent.
    #[error("query of {len} bytes (encoded) is larger than the limit of {max} bytes")]
    QueryTooLarge {
        /// The encoded query, in bytes.
        len: usize,
        /// The limit: [`super::SerfConfig::max_query_size`], or less when one gossip message
        /// cannot carry that much.
        max: usize,
    },
    /// A query response larger than the limit; nothing was sent and the query can still be
    /// answered.
    #[error("query response of {len} bytes (encoded) is larger than the limit of {max} bytes")]
    ResponseTooLarge {
        /// The encoded response (wrapped for relaying when the query asked for relays).
        len: usize,
        /// The limit: [`super::SerfConfig::max_query_response_size`], or less when one datagram
        /// cannot carry that much.
        max: usize,
    },
    /// This node already answered the query (a query is answered once).
    #[error("query {name:?} (id {id}) was already answered by this node")]
    AlreadyResponded {
        /// The query's name.
        name: String,
        /// The query's id.
        id: u32,
    },
    /// The query's deadline passed: its originator no longer listens.
    #[error("the deadline of query {name:?} (id {id}) has passed")]
    DeadlinePassed {
        /// The query's name.
        name: String,
        /// The query's id.
        id: u32,
    },
    /// A tag filter of a query is not a valid regular expression; nothing was sent.
    #[error("tag filter {tag}={expr:?} is not a valid regular expression: {reason}")]
    InvalidFilter {
        /// The tag.
        tag: String,
        /// The expression.
        expr: String,
        /// What the regex parser said.
        reason: String,
    },
    /// The snapshot file could not be read or opened.
    // The OS error is the `source`, not part of this message: reporters that print the chain
    // (anyhow's `{:#}`) would show it twice.
    #[error("snapshot {}", .path.display())]
    Snapshot {
        /// [`super::SerfConfig::snapshot_path`].
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The keyring file could not be read, parsed or written.
    #[error("keyring file {}: {reason}", .path.display())]
    KeyringFile {
        /// [`super::SerfConfig::keyring_file`].
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key operation on a node without encryption: there is no keyring to change, and the
    /// key would travel in clear text. Nothing was sent.
    #[error("encryption is not enabled on this node: no keyring to change")]
    NoEncryption,
    /// [`super::SerfHandle::use_key`] with a key this node has not installed: making it primary
    /// elsewhere would cut this node off. Install it first; nothing was sent.
    #[error("key {fingerprint} is not installed on this node; install it first")]
    KeyNotInstalled {
        /// The key's fingerprint ([`crate::Key::fingerprint`]).
        fingerprint: String,
    },
    /// The serf layer was shut down.
    #[error("the serf layer is shut down")]
    Stopped,
}
