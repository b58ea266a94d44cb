//! The state machine trait that the replicated log drives.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A deterministic state machine, replicated by Raft: every server applies the same commands in
/// the same order and so holds the same state.
///
/// consul-lite plugs its service registry in here; the tests use a small key/value map.
///
/// Rules an implementation keeps:
/// - `apply` is deterministic: it reads no clock, no randomness, no environment; anything of the
///   kind comes inside the command, decided by the proposer.
/// - `apply` does not fail: a command that is invalid for the current state answers with an
///   error *value* in `Response` and leaves the state unchanged, the same on every server.
/// - `restore(snapshot())` gives back the same state.
pub trait StateMachine: Send + Sync + 'static {
    /// A write, as proposed by a client and stored in the log (encoded with postcard).
    type Command: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What applying a command answers to the client that wrote it.
    type Response: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Why a snapshot could not be restored.
    type RestoreError: std::error::Error + Send + Sync + 'static;

    /// Applies the command stored at log `index` (indexes grow by one per log entry, with gaps
    /// where Raft stored entries of its own, such as membership changes).
    fn apply(&mut self, index: u64, command: Self::Command) -> Self::Response;

    /// The whole state as bytes, for a snapshot on disk and for servers that lag behind.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with one taken by [`snapshot`](Self::snapshot), possibly on
    /// another server. On error the state must be left as it was.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), Self::RestoreError>;
}
