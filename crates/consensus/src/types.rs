//! The openraft type configuration, private to this crate.
//!
//! Commands and responses travel through openraft as bytes (postcard of the state machine's own
//! `Command` and `Response`), so that the type configuration is one concrete type whatever the
//! state machine is, and forwarding a write to the leader needs no knowledge of it.

use std::io::Cursor;

/// A server's identity in Raft; the binary derives it from the node's name or ID.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration: byte commands and responses, u64 ids, nodes by address.
    pub(crate) TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
