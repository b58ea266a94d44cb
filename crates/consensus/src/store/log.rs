//! The Raft log, the vote and the committed index in one redb database (`raft.redb`).
//!
//! Every append, vote and purge is committed in a redb write transaction with
//! `Durability::Immediate` (fsync) before openraft is told it is done, so an acknowledged write
//! is on disk on a quorum. The committed index is saved without fsync: it only spares re-applying
//! entries after a restart, and is checked against the log when opening.
//!
//! **Group commit.** All writes go through one writer thread, in the order openraft asked for
//! them. `append` hands its entries to the writer and returns at once (openraft's
//! `LogFlushed` callback says when they are on disk, as its API intends); meanwhile the entries
//! are readable from memory. The writer takes every append queued behind the first into the
//! same transaction, so under concurrent writes one fsync covers many entries instead of one
//! each (openraft 0.9 appends each client write on its own). Truncate, purge, vote and
//! committed index wait for the appends queued before them, so the order on disk is openraft's.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

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

/// redb's page cache for the log. Its default (1 GiB) fills with the pages every commit writes:
/// a server's resident memory grew past 100 MiB over a minute of writes in `cluster-bench kv`.
/// The log's working set is its last entries (replicated, then applied, soon after they are
/// written), so a few MiB keep the reads in memory.
const CACHE_BYTES: usize = 8 << 20;

/// The log store; clones share the database and the writer (openraft's log reader is a
/// clone).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    /// Entries handed to the writer and not yet committed, readable meanwhile.
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    writer: Arc<Writer>,
}

/// A write other than an append, run on the writer thread.
type Work = Box<dyn FnOnce(&Database, &Path) -> Result<(), StorageError> + Send>;

/// Work for the writer thread, done in the order queued.
enum Job {
    /// Entries to append (sealed, with their index), and openraft's callback.
    Append { entries: Vec<(u64, Vec<u8>)>, callback: LogFlushed<TypeConfig> },
    /// Any other write, once every append queued before it is done.
    Run { work: Work, done: tokio::sync::oneshot::Sender<Result<(), StorageError>> },
}

/// The writer thread; stopped (after finishing its queue) when the last store clone drops,
/// so that the database is closed when the store is.
struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread's loop: a batch is the first job and every append queued behind it.
fn write_loop(db: &Database, path: &Path, pending: &Mutex<BTreeMap<u64, Entry>>, jobs: &mpsc::Receiver<Job>) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            Job::Run { work, done } => {
                let _ = done.send(work(db, path));
            }
            Job::Append { entries, callback } => {
                let mut batch = vec![(entries, callback)];
                while let Ok(job) = jobs.try_recv() {
                    match job {
                        Job::Append { entries, callback } => batch.push((entries, callback)),
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                let result = commit_entries(db, batch.iter().flat_map(|(entries, _)| entries.iter()));
                if result.is_ok() {
                    let mut pending = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (index, _) in batch.iter().flat_map(|(entries, _)| entries.iter()) {
                        pending.remove(index);
                    }
                }
                for (_, callback) in batch {
                    callback.log_io_completed(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
                    );
                }
            }
        }
    }
}

/// Writes the copy of the vote durably (temporary file, fsync, rename, fsync of the dir).
fn write_vote_copy(path: &Path, sealed: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("vote.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, sealed)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(format!("{}: {e}", path.display()))).into()
}

fn put_meta(db: &Database, path: &Path, key: &str, bytes: &[u8], durability: Durability) -> Result<(), StorageError> {
    let mut txn = db.begin_write().map_err(|e| write_err(path, e))?;
    txn.set_durability(durability);
    {
        let mut meta = txn.open_table(META).map_err(|e| write_err(path, e))?;
        meta.insert(key, bytes).map_err(|e| write_err(path, e))?;
    }
    txn.commit().map_err(|e| write_err(path, e))
}

/// One transaction with every entry, committed with fsync (`Durability::Immediate`, redb's
/// default).
fn commit_entries<'a>(db: &Database, entries: impl Iterator<Item = &'a (u64, Vec<u8>)>) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
        for (index, bytes) in entries {
            log.insert(*index, bytes.as_slice()).map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
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
        let db = Arc::new(redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| open_err(&e))?);
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let (jobs, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn({
                let (db, path, pending) = (Arc::clone(&db), path.to_owned(), Arc::clone(&pending));
                move || write_loop(&db, &path, &pending, &receiver)
            })
            .map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
        let writer = Arc::new(Writer { jobs: Mutex::new(Some(jobs)), thread: Mutex::new(Some(thread)) });
        let store = Self { db, path: Arc::new(path.to_owned()), pending, writer };
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

    fn decode_meta<T: serde::de::DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StorageError> {
        match self.meta_value(key)? {
            None => Ok(None),
            Some(bytes) => codec::open(&bytes).map(Some).map_err(|e| self.read_err(format!("saved {key}: {e}"))),
        }
    }

    fn entries(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StorageError> {
        // Pending entries first: the writer removes them only after committing them, so an
        // entry is in one or the other (or both) whenever it is looked for.
        let pending: BTreeMap<u64, Entry> = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .range((start, end))
            .map(|(index, entry)| (*index, entry.clone()))
            .collect();
        let txn = self.db.begin_read().map_err(|e| self.read_err(e))?;
        let log = txn.open_table(LOG).map_err(|e| self.read_err(e))?;
        let mut out = BTreeMap::new();
        for item in log.range::<u64>((start, end)).map_err(|e| self.read_err(e))? {
            let (key, value) = item.map_err(|e| self.read_err(e))?;
            let entry: Entry =
                codec::open(value.value()).map_err(|e| self.read_err(format!("entry {}: {e}", key.value())))?;
            out.insert(key.value(), entry);
        }
        out.extend(pending);
        Ok(out.into_values().collect())
    }

    /// Queues `work` behind every write queued before it and waits for it.
    async fn run_in_order(
        &self,
        work: impl FnOnce(&Database, &Path) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), StorageError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.send(Job::Run { work: Box::new(work), done })?;
        match result.await {
            Ok(result) => result,
            Err(_) => Err(self.write_err("the log writer stopped")),
        }
    }

    fn send(&self, job: Job) -> Result<(), StorageError> {
        let jobs = self.writer.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.write_err("the log writer stopped")),
        }
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
            let stored = match log.last().map_err(|e| s.read_err(e))? {
                Some((key, value)) => {
                    let entry: Entry =
                        codec::open(value.value()).map_err(|e| s.read_err(format!("entry {}: {e}", key.value())))?;
                    Some(entry.log_id)
                }
                None => purged,
            };
            let pending = s.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = pending.values().next_back().map(|entry| entry.log_id).max(stored);
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::seal(vote).map_err(|e| self.write_err(e))?;
        let copy = self.vote_copy_path();
        self.run_in_order(move |db, path| {
            put_meta(db, path, VOTE, &bytes, Durability::Immediate)?;
            // After the database's, so the copy is never ahead of a vote that was not saved.
            write_vote_copy(&copy, &bytes)
                .map_err(|e| StorageIOError::write_vote(AnyError::error(format!("{}: {e}", copy.display()))).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|s| s.decode_meta(VOTE)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = codec::seal(&committed).map_err(|e| self.write_err(e))?;
        // No fsync: losing it only means re-applying after the leader commits again. In order
        // behind the appends, so it never names an entry not yet written.
        self.run_in_order(move |db, path| put_meta(db, path, COMMITTED, &bytes, Durability::Eventual)).await
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
        let mut kept = Vec::new();
        for entry in entries {
            let bytes = codec::seal(&entry).map_err(|e| self.write_err(e))?;
            sealed.push((entry.log_id.index, bytes));
            kept.push(entry);
        }
        // Readable at once; on disk (and `callback` called) when the writer commits them.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(kept.into_iter().map(|entry| (entry.log_id.index, entry)));
        self.send(Job::Append { entries: sealed, callback })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let pending = Arc::clone(&self.pending);
        self.run_in_order(move |db, path| {
            pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|index, _| *index < log_id.index);
            let txn = db.begin_write().map_err(|e| write_err(path, e))?;
            {
                let mut log = txn.open_table(LOG).map_err(|e| write_err(path, e))?;
                log.retain_in(log_id.index.., |_, _| false).map_err(|e| write_err(path, e))?;
            }
            txn.commit().map_err(|e| write_err(path, e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = codec::seal(&Some(log_id)).map_err(|e| self.write_err(e))?;
        self.run_in_order(move |db, path| {
            let txn = db.begin_write().map_err(|e| write_err(path, e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| write_err(path, e))?;
                meta.insert(PURGED, bytes.as_slice()).map_err(|e| write_err(path, e))?;
                let mut log = txn.open_table(LOG).map_err(|e| write_err(path, e))?;
                log.retain_in(..=log_id.index, |_, _| false).map_err(|e| write_err(path, e))?;
            }
            txn.commit().map_err(|e| write_err(path, e))
        })
        .await
    }
}
