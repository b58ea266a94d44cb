//! Transactions, as Consul's `state/txn.go` runs them: every operation runs (later ones see
//! earlier ones' writes), every failure is reported with its position, and if any failed
//! the whole transaction is rolled back.

use super::kv::without_value;
use super::{Registry, Tx};
use crate::command::{Outcome, TxnOp};
use crate::error::{Error, TxnError};
use crate::types::KvEntry;

impl Registry {
    pub(super) fn txn(&mut self, tx: &mut Tx, ops: Vec<TxnOp>) -> Result<Outcome, Error> {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.into_iter().enumerate() {
            match self.txn_op(tx, op) {
                Ok(entries) => results.extend(entries),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        if errors.is_empty() {
            Ok(Outcome::Txn(results))
        } else {
            Err(Error::TxnFailed { errors })
        }
    }

    /// One operation: the entries it reports (values blanked except for gets), or Consul's
    /// message for its failure.
    fn txn_op(&mut self, tx: &mut Tx, op: TxnOp) -> Result<Vec<KvEntry>, String> {
        let entry = match op {
            TxnOp::Set { key, value, flags } => self.kv_set(tx, key, value, flags).map_err(|e| e.to_string())?,
            TxnOp::Cas { key, value, flags, index } => {
                let quoted = format!("{key:?}");
                self.kv_cas(tx, key, value, flags, index)
                    .map_err(|e| e.to_string())?
                    .map_err(|_| format!("failed to set key {quoted}, index is stale"))?
            }
            TxnOp::Get { key } => match self.kv.get(&key) {
                Some(entry) => entry.clone(),
                None => return Err(format!("key {key:?} doesn't exist")),
            },
            TxnOp::GetTree { prefix } => {
                return Ok(self
                    .kv
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(_, entry)| entry.clone())
                    .collect())
            }
            TxnOp::CheckIndex { key, index } => match self.kv.get(&key) {
                None => return Err(format!("failed to check index, key {key:?} doesn't exist")),
                Some(entry) if entry.modify_index != index => {
                    return Err(format!(
                        "failed index check for key {key:?}, current modify index {} != {index}",
                        entry.modify_index
                    ))
                }
                Some(entry) => without_value(entry),
            },
            TxnOp::CheckSession { key, session } => match self.kv.get(&key) {
                None => return Err(format!("failed to check session, key {key:?} doesn't exist")),
                Some(entry) => {
                    let holder = entry.session.as_deref().unwrap_or("");
                    if holder != session {
                        return Err(format!(
                            "failed session check for key {key:?}, current session {holder:?} != {session:?}"
                        ));
                    }
                    without_value(entry)
                }
            },
            TxnOp::CheckNotExists { key } => {
                if self.kv.contains_key(&key) {
                    return Err(format!("key {key:?} exists"));
                }
                return Ok(Vec::new());
            }
            TxnOp::Delete { key } => {
                self.kv_delete(tx, &key);
                return Ok(Vec::new());
            }
            TxnOp::DeleteTree { prefix } => {
                self.kv_delete_tree(tx, &prefix);
                return Ok(Vec::new());
            }
            TxnOp::DeleteCas { key, index } => {
                self.kv_delete_cas(tx, &key, index)
                    .map_err(|_| format!("failed to delete key {key:?}, index is stale"))?;
                return Ok(Vec::new());
            }
            TxnOp::Lock { key, value, flags, session } => {
                let quoted = format!("{key:?}");
                self.kv_acquire(tx, key, value, flags, session)
                    .map_err(|e| e.to_string())?
                    .map_err(|_| format!("failed to lock key {quoted}, lock is already held"))?
            }
            TxnOp::Unlock { key, value, flags, session } => {
                let quoted = format!("{key:?}");
                self.kv_release(tx, key, value, flags, session).map_err(|e| e.to_string())?.map_err(|_| {
                    format!("failed to unlock key {quoted}, lock isn't held, or is held by another session")
                })?
            }
        };
        Ok(vec![entry])
    }
}
