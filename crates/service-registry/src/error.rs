//! Why a command was refused. On every error, nothing changed: not the tables, not the
//! last applied index.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why [`Registry::apply`](crate::Registry::apply) refused a command. The registry is left
/// exactly as it was, whatever the variant: commands are all-or-nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The index is not greater than the last applied one. State unchanged.
    #[error("index {index} is not greater than the last applied index {last}")]
    StaleIndex {
        /// The index given.
        index: u64,
        /// The last applied index.
        last: u64,
    },
    /// A value is over [`MAX_VALUE_SIZE`](crate::MAX_VALUE_SIZE). State unchanged.
    #[error("value for key {key:?} is too large: {size} bytes, the limit is {limit}")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A required name or ID is empty. State unchanged.
    #[error("missing {what}")]
    Missing {
        /// What is missing (`node name`, `service name`, `check ID`, `session ID`,
        /// `session` for an acquire or release).
        what: &'static str,
    },
    /// An acquire named a session that does not exist. State unchanged.
    #[error("invalid session {session:?}")]
    SessionNotFound {
        /// The session ID.
        session: String,
    },
    /// A session with this ID already exists. State unchanged.
    #[error("session {session:?} already exists")]
    SessionExists {
        /// The session ID.
        session: String,
    },
    /// A session or check names a node that is not registered. State unchanged.
    #[error("node {node:?} is not registered")]
    NodeNotFound {
        /// The node's name.
        node: String,
    },
    /// A check names a service instance not registered on its node. State unchanged.
    #[error("service {service_id:?} is not registered on node {node:?}")]
    ServiceNotFound {
        /// The node's name.
        node: String,
        /// The instance ID.
        service_id: String,
    },
    /// A session names a check that is not registered on its node (Consul: "Missing check
    /// registration"). State unchanged.
    #[error("missing check {check_id:?} registration on node {node:?}")]
    CheckNotFound {
        /// The node's name.
        node: String,
        /// The check ID.
        check_id: String,
    },
    /// A session names a check that is critical. State unchanged.
    #[error("check {check_id:?} on node {node:?} is in critical state")]
    CheckCritical {
        /// The node's name.
        node: String,
        /// The check ID.
        check_id: String,
    },
    /// A transaction had failing operations; none of its operations took effect. State
    /// unchanged.
    #[error("transaction rolled back: {}", TxnErrors(.errors))]
    TxnFailed {
        /// Every failing operation, in order (Consul reports them all, not just the first).
        errors: Vec<TxnError>,
    },
}

/// One failing operation of a transaction, as Consul reports it in `Errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// The position of the operation in the transaction.
    pub op_index: usize,
    /// Consul's message for it, e.g. `failed to lock key "a", lock is already held`.
    pub what: String,
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op {}: {}", self.op_index, self.what)
    }
}

struct TxnErrors<'a>(&'a [TxnError]);

impl fmt::Display for TxnErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
