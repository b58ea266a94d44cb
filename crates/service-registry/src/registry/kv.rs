//! Key/value operations, as Consul's `state/kvs.go` does them.

use super::{Registry, Tx};
use crate::command::{Declined, KvOp, Outcome};
use crate::error::Error;
use crate::types::{KvEntry, MAX_VALUE_SIZE};

/// A conditional write's result: the stored entry (value left out), or why nothing was
/// written.
pub(super) type Conditional<T> = Result<T, Declined>;

impl Registry {
    pub(super) fn kv_op(&mut self, tx: &mut Tx, op: KvOp) -> Result<Outcome, Error> {
        let result = match op {
            KvOp::Set { key, value, flags } => self.kv_set(tx, key, value, flags).map(|_| Ok(())),
            KvOp::Cas { key, value, flags, index } => self.kv_cas(tx, key, value, flags, index).map(|r| r.map(drop)),
            KvOp::Delete { key } => {
                self.kv_delete(tx, &key);
                Ok(Ok(()))
            }
            KvOp::DeleteTree { prefix } => {
                self.kv_delete_tree(tx, &prefix);
                Ok(Ok(()))
            }
            KvOp::DeleteCas { key, index } => Ok(self.kv_delete_cas(tx, &key, index)),
            KvOp::Acquire { key, value, flags, session } => {
                self.kv_acquire(tx, key, value, flags, session).map(|r| r.map(drop))
            }
            KvOp::Release { key, value, flags, session } => {
                self.kv_release(tx, key, value, flags, session).map(|r| r.map(drop))
            }
        };
        Ok(match result? {
            Ok(()) => Outcome::Done,
            Err(declined) => Outcome::Declined(declined),
        })
    }

    /// Consul's `kvsSetTxn` without a session update: the holder is kept, `lock_index` is
    /// the request's (0 for a plain set).
    pub(super) fn kv_set(&mut self, tx: &mut Tx, key: String, value: Vec<u8>, flags: u64) -> Result<KvEntry, Error> {
        check_write(&key, &value)?;
        let session = self.kv.get(&key).and_then(|e| e.session.clone());
        Ok(self.write_entry(tx, key, value, flags, session, 0))
    }

    /// Consul's `kvsSetCASTxn`: `index == 0` writes only a missing key; otherwise the key
    /// must exist with that `modify_index`.
    pub(super) fn kv_cas(
        &mut self,
        tx: &mut Tx,
        key: String,
        value: Vec<u8>,
        flags: u64,
        index: u64,
    ) -> Result<Conditional<KvEntry>, Error> {
        check_write(&key, &value)?;
        let matches = match self.kv.get(&key) {
            None => index == 0,
            Some(existing) => index != 0 && existing.modify_index == index,
        };
        if !matches {
            return Ok(Err(Declined::IndexMismatch));
        }
        self.kv_set(tx, key, value, flags).map(Ok)
    }

    /// Consul's `kvsDeleteTxn`: a missing key is a no-op; otherwise a tombstone records the
    /// delete's index.
    pub(super) fn kv_delete(&mut self, tx: &mut Tx, key: &str) {
        if self.kv.contains_key(key) {
            self.put_tombstone(tx, key);
            self.put_kv(tx, key, None);
        }
    }

    /// Deletes every key under `prefix`. Unlike Consul (one tombstone at the prefix), each
    /// deleted key gets its own tombstone, so that the index of any narrower prefix moves
    /// too.
    pub(super) fn kv_delete_tree(&mut self, tx: &mut Tx, prefix: &str) {
        let keys: Vec<String> = self
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.kv_delete(tx, &key);
        }
    }

    /// Consul's `kvsDeleteCASTxn`: a missing key counts as deleted (success); a present
    /// one is deleted only if its `modify_index` equals `index`.
    pub(super) fn kv_delete_cas(&mut self, tx: &mut Tx, key: &str, index: u64) -> Conditional<()> {
        match self.kv.get(key) {
            None => Ok(()),
            Some(existing) if existing.modify_index != index => Err(Declined::IndexMismatch),
            Some(_) => {
                self.kv_delete(tx, key);
                Ok(())
            }
        }
    }

    /// Consul's `kvsLockTxn`.
    pub(super) fn kv_acquire(
        &mut self,
        tx: &mut Tx,
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    ) -> Result<Conditional<KvEntry>, Error> {
        check_write(&key, &value)?;
        if session.is_empty() {
            return Err(Error::Missing { what: "session" });
        }
        if !self.sessions.contains_key(&session) {
            return Err(Error::SessionNotFound { session });
        }
        let lock_index = match self.kv.get(&key) {
            None => 1,
            Some(existing) => match &existing.session {
                Some(holder) if *holder == session => existing.lock_index,
                Some(_) => return Ok(Err(Declined::LockHeld)),
                None => existing.lock_index + 1,
            },
        };
        Ok(Ok(self.write_entry(tx, key, value, flags, Some(session), lock_index)))
    }

    /// Consul's `kvsUnlockTxn`: only the holder releases; the value and flags are written,
    /// `lock_index` kept.
    pub(super) fn kv_release(
        &mut self,
        tx: &mut Tx,
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    ) -> Result<Conditional<KvEntry>, Error> {
        check_write(&key, &value)?;
        if session.is_empty() {
            return Err(Error::Missing { what: "session" });
        }
        let lock_index = match self.kv.get(&key) {
            Some(existing) if existing.session.as_ref() == Some(&session) => existing.lock_index,
            _ => return Ok(Err(Declined::NotLockHolder)),
        };
        Ok(Ok(self.write_entry(tx, key, value, flags, None, lock_index)))
    }

    /// Writes an entry unless it equals the stored one in value, flags, session and lock
    /// index (Consul's `DirEntry.Equal`), in which case nothing changes, not even
    /// `modify_index`. Returns the entry as stored but with an empty value (what a
    /// transaction reports), so that a write copies its value only into the table.
    fn write_entry(
        &mut self,
        tx: &mut Tx,
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: Option<String>,
        lock_index: u64,
    ) -> KvEntry {
        let existing = self.kv.get(&key);
        if let Some(existing) = existing {
            if existing.value == value
                && existing.flags == flags
                && existing.session == session
                && existing.lock_index == lock_index
            {
                return without_value(existing);
            }
        }
        let entry = KvEntry {
            create_index: existing.map_or(tx.index, |e| e.create_index),
            modify_index: tx.index,
            key,
            value,
            flags,
            session,
            lock_index,
        };
        let reported = without_value(&entry);
        self.put_kv(tx, &reported.key, Some(entry));
        reported
    }
}

/// A copy of the entry's metadata, with an empty value.
pub(super) fn without_value(entry: &KvEntry) -> KvEntry {
    KvEntry {
        key: entry.key.clone(),
        value: Vec::new(),
        flags: entry.flags,
        session: entry.session.clone(),
        lock_index: entry.lock_index,
        create_index: entry.create_index,
        modify_index: entry.modify_index,
    }
}

/// Refuses an empty key or an oversize value.
pub(super) fn check_write(key: &str, value: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::Missing { what: "key" });
    }
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::ValueTooLarge { key: key.to_owned(), size: value.len(), limit: MAX_VALUE_SIZE });
    }
    Ok(())
}
