//! The storage seam between the HTTP API and where the registry lives.
//!
//! [`Store`] is what every endpoint uses: propose a [`Command`] and wait for it to be applied
//! ([`Store::write`]), read the [`Registry`] ([`Store::read`]), wait for a blocking query's
//! data to change ([`Store::wait`]), renew a session's TTL, and the leader facts the
//! `X-Consul-*` headers carry. Two implementations fit it:
//!
//! - [`DevStore`] (`-dev`, here): one in-memory [`Registry`] behind a lock, the index counting
//!   up by one per applied command; this process is the leader.
//! - [`RaftStore`] (`-server`, [`raft`] over [`replicated`]): `write` proposes through Raft
//!   (a follower forwards to the leader) and resolves once the entry is applied here, or
//!   fails with [`StoreError::NoLeader`]; `read` reads the local state machine;
//!   [`Store::consistent`] is the read barrier of `?consistent`; the session TTL timers run
//!   only while this server leads.
//! - [`RemoteStore`] (a client agent, [`remote`] over [`feed`]): no Raft state; `read` reads
//!   a replica fed by one server's subscription (a snapshot, then every applied entry),
//!   `write` and `renew_session` go to a server, `consistent` is a server's read barrier and
//!   a wait for the replica to catch up. Blocking queries wait at the client.
//!
//! The leader-side rules live in [`leader`]: lock-delay ([`LockDelays`], by wall clock,
//! checked on request before a command is proposed, as Consul's leader does) and session
//! TTL timers ([`SessionTimers`], invalidating a session through a write after 2 × TTL).
//! Blocking queries wait in a [`WatchHub`]: woken exactly when a command changes their
//! data ([`service_registry::Watches`]), never by polling.

mod dev;
pub(crate) mod feed;
pub(crate) mod leader;
pub(crate) mod raft;
pub(crate) mod remote;
pub(crate) mod replicated;
mod watch;

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::time::Duration;

use service_registry::{Applied, Command, Registry, Session, WatchTarget};

pub(crate) use dev::DevStore;
pub(crate) use leader::{LockDelays, SessionTimers};
pub(crate) use raft::RaftStore;
pub(crate) use remote::RemoteStore;
pub(crate) use watch::WatchHub;

/// A boxed future, so that [`Store`] can be used as `dyn Store`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A read view of the registry. Hold it only briefly, and never across an `.await`: writes
/// wait for it.
pub(crate) type RegistryRead<'a> = Box<dyn Deref<Target = Registry> + 'a>;

/// Why a write was not applied. In every case but [`StoreError::Failed`] nothing was
/// written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// There is no leader to take the write (a Raft store during an election). Consul
    /// answers 500 "No cluster leader".
    #[error("No cluster leader")]
    NoLeader,
    /// An acquire (or a transaction's lock) of a key inside its lock-delay window: Consul's
    /// leader refuses it before it reaches the log. Nothing was written.
    #[error("failed to lock key {key:?} due to lock delay ({remaining:?} left)")]
    LockDelay {
        /// The key.
        key: String,
        /// How long the window still lasts.
        remaining: Duration,
        /// For a transaction, the position of the lock operation.
        op_index: Option<usize>,
    },
    /// The registry refused the command (see [`service_registry::Error`]).
    #[error(transparent)]
    Refused(#[from] service_registry::Error),
    /// The store is shutting down. Nothing was written.
    #[error("the agent is shutting down")]
    Stopped,
    /// Raft failed with the write under way (the leader was lost mid-write, or did not
    /// answer): the message says whether it may have been applied. Consul answers 500.
    #[error("{reason}")]
    Failed {
        /// What happened, naming the server and whether the write may have been applied.
        reason: String,
    },
}

/// Where the registry lives: in memory (`-dev`) or replicated through Raft (`-server`).
pub(crate) trait Store: Send + Sync + 'static {
    /// Proposes `command` and resolves once it is applied here (so that a read after it sees
    /// it), with what applying it did. Leader-side checks run first: an acquire inside a
    /// lock-delay window fails with [`StoreError::LockDelay`] and is never proposed.
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Applied, StoreError>>;

    /// The registry as applied here.
    fn read(&self) -> RegistryRead<'_>;

    /// Resolves when `Registry::index(target)` is above `above`, or after `timeout`;
    /// returns the index then. Woken by exactly the writes that change the target's data.
    fn wait(&self, target: WatchTarget, above: u64, timeout: Duration) -> BoxFuture<'_, u64>;

    /// Restarts a session's TTL timer (Consul's renew); the session as it is, or `None` if
    /// it does not exist.
    fn renew_session(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>>;

    /// The leader's server address (`/v1/status/leader`), if one is known.
    fn leader(&self) -> Option<String>;

    /// The server addresses of the voters (`/v1/status/peers`).
    fn peers(&self) -> Vec<String>;

    /// Time since this server last heard from the leader (0 on the leader):
    /// `X-Consul-LastContact`.
    fn last_contact(&self) -> Duration;

    /// Blocking queries waiting now.
    fn waiting(&self) -> usize;

    /// Consul's `?consistent`: resolves once this server's registry holds every write
    /// committed before the call, the leader having confirmed its leadership with a quorum.
    /// The `-dev` store is its only server: always current.
    fn consistent(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// The Raft store, for `operator raft` (`None` in `-dev`).
    fn raft(&self) -> Option<&RaftStore> {
        None
    }

    /// A client agent's store, for its feed's state (`None` on servers and in `-dev`).
    fn remote(&self) -> Option<&RemoteStore> {
        None
    }
}
