//! The state machine as openraft sees it: applies entries to the user's [`StateMachine`],
//! builds and installs snapshots through the snapshot file.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};

use super::snapshot::{SnapshotFile, StoredSnapshot};
use super::StoreError;
use crate::state_machine::StateMachine;
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The user's state machine and how far in the log it stands, behind one lock so a snapshot sees
/// both together.
pub(crate) struct AppliedState<S> {
    pub(crate) machine: S,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// Snapshot counters, for metrics.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCounters {
    pub(crate) built: AtomicU64,
    pub(crate) installed: AtomicU64,
}

/// openraft's state machine storage; clones share everything (the snapshot builder is a clone).
pub(crate) struct StateStore<S> {
    pub(crate) state: Arc<RwLock<AppliedState<S>>>,
    file: Arc<SnapshotFile>,
    pub(crate) counters: Arc<SnapshotCounters>,
    next_snapshot: Arc<AtomicU64>,
}

impl<S> Clone for StateStore<S> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            file: Arc::clone(&self.file),
            counters: Arc::clone(&self.counters),
            next_snapshot: Arc::clone(&self.next_snapshot),
        }
    }
}

impl<S: StateMachine> StateStore<S> {
    /// Restores `machine` from the snapshot in `dir`, if any. Blocking.
    pub(crate) fn open(mut machine: S, dir: &Path) -> Result<Self, StoreError> {
        let (file, stored) = SnapshotFile::open(dir)?;
        let (last_applied, membership) = match stored {
            Some(stored) => {
                machine
                    .restore(&stored.data)
                    .map_err(|e| StoreError::Restore { path: dir.join("snapshot.bin"), reason: e.to_string() })?;
                (stored.meta.last_log_id, stored.meta.last_membership)
            }
            None => (None, StoredMembership::default()),
        };
        Ok(Self {
            state: Arc::new(RwLock::new(AppliedState { machine, last_applied, membership })),
            file: Arc::new(file),
            counters: Arc::default(),
            next_snapshot: Arc::default(),
        })
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, AppliedState<S>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, AppliedState<S>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist(&self, stored: StoredSnapshot) -> Result<(), StorageError> {
        let file = Arc::clone(&self.file);
        let signature = stored.meta.signature();
        let result = tokio::task::spawn_blocking(move || file.write(&stored))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        result.map_err(|e| StorageIOError::write_snapshot(Some(signature), AnyError::new(&e)).into())
    }
}

fn apply_error(log_id: LogId, what: String) -> StorageError {
    StorageIOError::apply(log_id, AnyError::error(what)).into()
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateStore<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.read_state();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.write_state();
        let mut responses = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Blank => responses.push(Vec::new()),
                EntryPayload::Normal(bytes) => {
                    // A command that does not decode cannot be applied the same everywhere:
                    // stop (openraft shuts the node down) rather than diverge.
                    let command: S::Command = postcard::from_bytes(&bytes).map_err(|e| {
                        apply_error(log_id, format!("entry {}: the command does not decode: {e}", log_id.index))
                    })?;
                    let response = state.machine.apply(log_id.index, command);
                    let encoded = postcard::to_allocvec(&response).map_err(|e| {
                        apply_error(log_id, format!("entry {}: the response does not encode: {e}", log_id.index))
                    })?;
                    responses.push(encoded);
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(log_id), membership);
                    responses.push(Vec::new());
                }
            }
            state.last_applied = Some(log_id);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        {
            let mut state = self.write_state();
            state.machine.restore(&data).map_err(|e| {
                StorageError::from(StorageIOError::read_snapshot(
                    Some(meta.signature()),
                    AnyError::error(format!("snapshot {}: the state machine refused it: {e}", meta.snapshot_id)),
                ))
            })?;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
        }
        self.persist(StoredSnapshot { meta: meta.clone(), data }).await?;
        self.counters.installed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let file = Arc::clone(&self.file);
        let read = tokio::task::spawn_blocking(move || file.read()).await.map_err(|e| e.to_string()).and_then(|r| r);
        match read {
            Ok(stored) => Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) })),
            Err(e) => Err(StorageIOError::read_snapshot(None, AnyError::error(e)).into()),
        }
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for StateStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (data, last_applied, membership) = {
            let state = self.read_state();
            (state.machine.snapshot(), state.last_applied, state.membership.clone())
        };
        let serial = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{serial}", id.leader_id, id.index),
            None => format!("none-{serial}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        self.persist(StoredSnapshot { meta: meta.clone(), data: data.clone() }).await?;
        self.counters.built.fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
