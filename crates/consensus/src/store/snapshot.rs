//! The state machine's snapshot on disk (`snapshot.bin`): written to a temporary file, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves either the old
//! snapshot or the new one, never a mix.
//!
//! Layout: the magic `CLSNAP` and a format byte, then a CRC32 (little-endian) and the postcard of
//! the snapshot's metadata and bytes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::codec;
use super::StoreError;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 7] = b"CLSNAP\x01";

/// A snapshot as stored: where it stands in the log, and the state machine's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

/// The snapshot file, one writer at a time.
#[derive(Debug)]
pub(crate) struct SnapshotFile {
    path: PathBuf,
    /// The metadata of the snapshot on disk, if any; held while writing.
    current: Mutex<Option<SnapshotMeta>>,
}

impl SnapshotFile {
    /// Reads the snapshot in `dir`, if there is one, checking its magic and checksum.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Option<StoredSnapshot>), StoreError> {
        let path = dir.join("snapshot.bin");
        let stored = match fs::read(&path) {
            Ok(bytes) => Some(decode(&bytes).map_err(|what| StoreError::Corrupt { path: path.clone(), what })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        // A temporary file left by a crash mid-write is garbage.
        let _ = fs::remove_file(path.with_extension("bin.tmp"));
        let current = Mutex::new(stored.as_ref().map(|s| s.meta.clone()));
        Ok((Self { path, current }, stored))
    }

    /// Replaces the snapshot on disk, durably, unless the one there is newer. Blocking.
    pub(crate) fn write(&self, snapshot: &StoredSnapshot) -> std::io::Result<()> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = current.as_ref() {
            if existing.last_log_id > snapshot.meta.last_log_id {
                return Ok(());
            }
        }
        let body = codec::seal(snapshot).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("bin.tmp");
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&body)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        *current = Some(snapshot.meta.clone());
        Ok(())
    }

    /// Reads the snapshot on disk back. Blocking.
    pub(crate) fn read(&self) -> Result<Option<StoredSnapshot>, String> {
        let _current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match fs::read(&self.path) {
            Ok(bytes) => decode(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<StoredSnapshot, String> {
    match bytes.strip_prefix(MAGIC.as_slice()) {
        Some(body) => codec::open(body),
        None => Err("not a snapshot file (bad magic)".into()),
    }
}
