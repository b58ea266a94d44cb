//! The Raft log, the vote and the committed index in one redb database (`raft.redb`).
//!
//! Every append, vote and purge is one redb write transaction committed with
//! `Durability::Immediate` (fsync) before openraft is told it is done, so an acknowledged write
//! is on disk on a quorum. The committed index is saved without fsync: it only spares re-applying
//! entries after a restart, and is checked against the log when opening.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::codec;
use super::StoreError;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The log store; clones share the database (openraft's log reader is a clone).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

/// What the log holds, read when opening (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogSummary {
    pub(crate) entries: u64,
    pub(crate) last_index: Option<u64>,
}

impl LogStore {
    /// Opens (or creates) the database and checks every entry and saved value: checksums, that
    /// each entry is stored under its own index, that indexes follow each other from the purge
    /// point, and that the committed index is in the log. Blocking: call off the runtime.
    pub(crate) fn open(path: &Path) -> Result<(Self, LogSummary), StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open { path: path.to_owned(), reason: e.to_string() };
        let db = Database::create(path).map_err(|e| open_err(&e))?;
        let store = Self { db: Arc::new(db), path: Arc::new(path.to_owned()) };
        // Make sure both tables exist so that readers never see "table does not exist".
        let txn = store.db.begin_write().map_err(|e| open_err(&e))?;
        txn.open_table(LOG).map_err(|e| open_err(&e))?;
        txn.open_table(META).map_err(|e| open_err(&e))?;
        txn.commit().map_err(|e| open_err(&e))?;
        let summary = store.check().map_err(|what| StoreError::Corrupt { path: path.to_owned(), what })?;
        store.check_vote_copy()?;
        Ok((store, summary))
    }

    /// The copy of the vote kept beside the database.
    fn vote_copy_path(&self) -> PathBuf {
        self.path.with_extension("vote")
    }

    /// A database that lost data to damage can open as if it were new or older: the copy of
    /// the vote, written after the database's, catches that (a term can only grow).
    fn check_vote_copy(&self) -> Result<(), StoreError> {
        let copy_path = self.vote_copy_path();
        let copy = match std::fs::read(&copy_path) {
            Ok(bytes) => {
                codec::open::<Vote>(&bytes).map_err(|what| StoreError::Corrupt { path: copy_path.clone(), what })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Io { path: copy_path, source }),
        };
        let saved: Option<Vote> = self
            .decode_meta(VOTE)
            .map_err(|e| StoreError::Corrupt { path: self.path.to_path_buf(), what: e.to_string() })?;
        let saved_term = saved.map(|v| v.leader_id().term);
        if saved_term.is_none_or(|term| term < copy.leader_id().term) {
            return Err(StoreError::Corrupt {
                path: self.path.to_path_buf(),
                what: format!(
                    "it holds {} but {} says the vote was at term {}: the database lost \
                     committed transactions",
                    saved_term.map_or("no vote".to_string(), |t| format!("a vote at term {t}")),
                    copy_path.display(),
                    copy.leader_id().term
                ),
            });
        }
        Ok(())
    }

    /// Writes the copy of the vote durably (temporary file, fsync, rename, fsync of the dir).
    fn write_vote_copy(&self, sealed: &[u8]) -> std::io::Result<()> {
        let path = self.vote_copy_path();
        let tmp = path.with_extension("vote.tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, sealed)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn check(&self) -> Result<LogSummary, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let read_meta = |key: &str| -> Result<Option<Option<LogId>>, String> {
            match meta.get(key).map_err(|e| e.to_string())? {
                None => Ok(None),
                Some(v) => codec::open::<Option<LogId>>(v.value()).map(Some).map_err(|e| format!("saved {key}: {e}")),
            }
        };
        if let Some(v) = meta.get(VOTE).map_err(|e| e.to_string())? {
            codec::open::<Vote>(v.value()).map_err(|e| format!("saved vote: {e}"))?;
        }
        let purged = read_meta(PURGED)?.flatten();
        let committed = read_meta(COMMITTED)?.flatten();
        let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
        let mut expected = purged.map(|p| p.index + 1);
        let mut entries = 0;
        let mut last_index = purged.map(|p| p.index);
        for item in log.iter().map_err(|e| e.to_string())? {
            let (key, value) = item.map_err(|e| e.to_string())?;
            let index = key.value();
            let entry: Entry = codec::open(value.value()).map_err(|e| format!("entry {index}: {e}"))?;
            if entry.log_id.index != index {
                return Err(format!("entry stored at {index} says it is entry {}", entry.log_id.index));
            }
            if let Some(want) = expected {
                if index != want {
                    return Err(format!("entry {index} follows a gap: expected entry {want}"));
                }
            }
            expected = Some(index + 1);
            entries += 1;
            last_index = Some(index);
        }
        if let Some(c) = committed {
            if last_index.is_none_or(|last| last < c.index) {
                return Err(format!(
                    "committed index {} is beyond the last entry ({last_index:?}): entries \
                     that were acknowledged are missing",
                    c.index
                ));
            }
        }
        Ok(LogSummary { entries, last_index })
    }

    fn read_err(&self, e: impl std::fmt::Display) -> StorageError {
        StorageIOError::read_logs(AnyError::error(format!("{}: {e}", self.path.display()))).into()
    }

    fn write_err(&self, e: impl std::fmt::Display) -> StorageError {
        StorageIOError::write_logs(AnyError::error(format!("{}: {e}", self.path.display()))).into()
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || work(&this)).await {
            Ok(result) => result,
            Err(e) => Err(self.write_err(format!("storage task failed: {e}"))),
        }
    }

    fn meta_value(&self, key: &'static str) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| self.read_err(e))?;
        let meta = txn.open_table(META).map_err(|e| self.read_err(e))?;
        let value = meta.get(key).map_err(|e| self.read_err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, key: &'static str, bytes: &[u8], durability: Durability) -> Result<(), StorageError> {
        let mut txn = self.db.begin_write().map_err(|e| self.write_err(e))?;
        txn.set_durability(durability);
        {
            let mut meta = txn.open_table(META).map_err(|e| self.write_err(e))?;
            meta.insert(key, bytes).map_err(|e| self.write_err(e))?;
        }
        txn.commit().map_err(|e| self.write_err(e))
    }

    fn decode_meta<T: serde::de::DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StorageError> {
        match self.meta_value(key)? {
            None => Ok(None),
            Some(bytes) => codec::open(&bytes).map(Some).map_err(|e| self.read_err(format!("saved {key}: {e}"))),
        }
    }

    fn entries(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| self.read_err(e))?;
        let log = txn.open_table(LOG).map_err(|e| self.read_err(e))?;
        let mut out = Vec::new();
        for item in log.range::<u64>((start, end)).map_err(|e| self.read_err(e))? {
            let (key, value) = item.map_err(|e| self.read_err(e))?;
            let entry: Entry =
                codec::open(value.value()).map_err(|e| self.read_err(format!("entry {}: {e}", key.value())))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.blocking(move |s| s.entries(start, end)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|s| {
            let purged: Option<LogId> = s.decode_meta::<Option<LogId>>(PURGED)?.flatten();
            let txn = s.db.begin_read().map_err(|e| s.read_err(e))?;
            let log = txn.open_table(LOG).map_err(|e| s.read_err(e))?;
            let last = match log.last().map_err(|e| s.read_err(e))? {
                Some((key, value)) => {
                    let entry: Entry =
                        codec::open(value.value()).map_err(|e| s.read_err(format!("entry {}: {e}", key.value())))?;
                    Some(entry.log_id)
                }
                None => purged,
            };
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::seal(vote).map_err(|e| self.write_err(e))?;
        self.blocking(move |s| {
            s.put_meta(VOTE, &bytes, Durability::Immediate)?;
            // After the database's, so the copy is never ahead of a vote that was not saved.
            s.write_vote_copy(&bytes).map_err(|e| {
                StorageIOError::write_vote(AnyError::error(format!("{}: {e}", s.vote_copy_path().display()))).into()
            })
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|s| s.decode_meta(VOTE)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = codec::seal(&committed).map_err(|e| self.write_err(e))?;
        // No fsync: losing it only means re-applying after the leader commits again.
        self.blocking(move |s| s.put_meta(COMMITTED, &bytes, Durability::Eventual)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|s| Ok(s.decode_meta::<Option<LogId>>(COMMITTED)?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut sealed = Vec::new();
        for entry in entries {
            let bytes = codec::seal(&entry).map_err(|e| self.write_err(e))?;
            sealed.push((entry.log_id.index, bytes));
        }
        let result = self
            .blocking(move |s| {
                let txn = s.db.begin_write().map_err(|e| s.write_err(e))?;
                {
                    let mut log = txn.open_table(LOG).map_err(|e| s.write_err(e))?;
                    for (index, bytes) in &sealed {
                        log.insert(*index, bytes.as_slice()).map_err(|e| s.write_err(e))?;
                    }
                }
                // Durability::Immediate (the default): fsync before commit returns.
                txn.commit().map_err(|e| s.write_err(e))
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |s| {
            let txn = s.db.begin_write().map_err(|e| s.write_err(e))?;
            {
                let mut log = txn.open_table(LOG).map_err(|e| s.write_err(e))?;
                log.retain_in(log_id.index.., |_, _| false).map_err(|e| s.write_err(e))?;
            }
            txn.commit().map_err(|e| s.write_err(e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = codec::seal(&Some(log_id)).map_err(|e| self.write_err(e))?;
        self.blocking(move |s| {
            let txn = s.db.begin_write().map_err(|e| s.write_err(e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| s.write_err(e))?;
                meta.insert(PURGED, bytes.as_slice()).map_err(|e| s.write_err(e))?;
                let mut log = txn.open_table(LOG).map_err(|e| s.write_err(e))?;
                log.retain_in(..=log_id.index, |_, _| false).map_err(|e| s.write_err(e))?;
            }
            txn.commit().map_err(|e| s.write_err(e))
        })
        .await
    }
}
