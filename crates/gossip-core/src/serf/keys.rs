//! Cluster-wide key rotation, as `serf keys`: the internal queries `_serf_install-key`,
//! `_serf_use-key`, `_serf_remove-key` and `_serf_list-keys`, each node's answer, the
//! [`KeyResponse`] the originator gathers, and the keyring file.
//!
//! The originator refuses key operations when it has no keyring itself ([`SerfError::NoEncryption`]):
//! the key would otherwise travel in clear text. A node that receives one without a keyring
//! answers an error, as Serf's "No keyring to modify (encryption not enabled)".

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message as _;

use super::messages::wire;
use super::query::{Query, QueryReply, QueryResponse};
use super::SerfError;
use crate::{Key, Keyring, KeyringOp, NodeError, NodeHandle};

/// Prefix of the queries the layer answers itself; they never surface as events.
pub(crate) const INTERNAL_PREFIX: &str = "_serf_";
/// Reachability: acked (when the sender asks for acks), never answered.
pub(crate) const PING: &str = "_serf_ping";
pub(crate) const INSTALL_KEY: &str = "_serf_install-key";
pub(crate) const USE_KEY: &str = "_serf_use-key";
pub(crate) const REMOVE_KEY: &str = "_serf_remove-key";
pub(crate) const LIST_KEYS: &str = "_serf_list-keys";

/// What the nodes answered to a key operation (Serf's `KeyResponse`).
///
/// [`super::SerfHandle::install_key`] and the others return it whenever the query went out;
/// check [`KeyResponse::is_success`] (Serf's CLI fails unless every live node answered without
/// error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyResponse {
    /// Live members when the query was sent (this node included).
    pub num_nodes: usize,
    /// Nodes that answered before the deadline.
    pub num_resp: usize,
    /// Nodes that answered with an error.
    pub num_err: usize,
    /// Per node: why it failed (or a warning).
    pub messages: BTreeMap<String, String>,
    /// For list: each installed key (base64) and how many nodes hold it.
    pub keys: BTreeMap<String, usize>,
    /// For list: each primary key (base64) and how many nodes use it.
    pub primary_keys: BTreeMap<String, usize>,
}

impl KeyResponse {
    /// Every live node answered, none with an error.
    pub fn is_success(&self) -> bool {
        self.num_err == 0 && self.num_resp >= self.num_nodes
    }

    /// Gather the answers until `expected` nodes answered or the deadline.
    pub(crate) async fn collect(mut response: QueryResponse, expected: usize) -> Self {
        let mut out = Self { num_nodes: response.num_nodes(), ..Self::default() };
        while out.num_resp < expected {
            let Some(reply) = response.next().await else { break };
            let QueryReply::Response { from, payload } = reply else { continue };
            match wire::KeyResponse::decode(payload) {
                Ok(answer) => out.add(from, answer),
                Err(error) => {
                    out.num_resp += 1;
                    out.num_err += 1;
                    out.messages.insert(from, format!("invalid key response: {error}"));
                }
            }
        }
        out
    }

    /// Count one node's answer.
    pub(crate) fn add(&mut self, from: String, answer: wire::KeyResponse) {
        self.num_resp += 1;
        if !answer.result {
            self.num_err += 1;
        }
        if !answer.message.is_empty() {
            self.messages.insert(from, answer.message);
        }
        for key in answer.keys {
            *self.keys.entry(key).or_default() += 1;
        }
        if !answer.primary_key.is_empty() {
            *self.primary_keys.entry(answer.primary_key).or_default() += 1;
        }
    }
}

/// The payload of a key query.
pub(crate) fn request(key: Option<&Key>) -> Bytes {
    let request = wire::KeyRequest { key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())).unwrap_or_default() };
    Bytes::from(request.encode_to_vec())
}

/// Answer an internal key query on this node: apply it to the keyring, rewrite the keyring file
/// when it changed, respond.
pub(crate) async fn answer(query: Query, node: NodeHandle, keyring_file: Option<PathBuf>) {
    tracing::info!(query = %query.name, from = %query.from, "key query");
    let mut answer = apply(&query.name, &query.payload, &node, keyring_file.as_deref()).await;
    // A long key list may not fit one response: drop keys until it does, and say so.
    let total = answer.keys.len();
    loop {
        let payload = Bytes::from(answer.encode_to_vec());
        match query.respond(payload).await {
            Err(SerfError::ResponseTooLarge { .. }) if !answer.keys.is_empty() => {
                answer.keys.pop();
                answer.message = format!("response too large: {} of {total} keys listed", answer.keys.len());
            }
            Err(error) => {
                tracing::warn!(query = %query.name, %error, "could not answer a key query");
                return;
            }
            Ok(()) => return,
        }
    }
}

/// Apply the key query `name` with `payload` to this node's keyring; the answer to send.
pub(crate) async fn apply(
    name: &str,
    payload: &Bytes,
    node: &NodeHandle,
    keyring_file: Option<&Path>,
) -> wire::KeyResponse {
    let failure = |message: String| wire::KeyResponse { result: false, message, ..Default::default() };
    let key = || -> Result<Key, String> {
        let request = wire::KeyRequest::decode(payload.clone()).map_err(|e| format!("invalid key request: {e}"))?;
        Key::from_bytes(&request.key).map_err(|e| format!("invalid key: {e}"))
    };
    let op = match name {
        INSTALL_KEY => key().map(KeyringOp::Install),
        USE_KEY => key().map(KeyringOp::Use),
        REMOVE_KEY => key().map(KeyringOp::Remove),
        LIST_KEYS => Ok(KeyringOp::List),
        other => Err(format!("unknown key query {other:?}")),
    };
    let op = match op {
        Ok(op) => op,
        Err(message) => return failure(message),
    };
    let changes = op != KeyringOp::List;
    let keys = match node.keyring(op).await {
        Ok(keys) => keys,
        Err(NodeError::NoKeyring) => return failure("No keyring to modify (encryption not enabled)".to_owned()),
        Err(error) => return failure(error.to_string()),
    };
    if changes {
        if let Some(path) = keyring_file {
            if let Err(error) = write_keyring_file(path, &keys).await {
                return failure(error.to_string());
            }
        }
    }
    if name == LIST_KEYS {
        wire::KeyResponse {
            result: true,
            message: String::new(),
            primary_key: keys.first().map(Key::to_base64).unwrap_or_default(),
            keys: keys.iter().map(Key::to_base64).collect(),
        }
    } else {
        wire::KeyResponse { result: true, ..Default::default() }
    }
}

/// The keyring in `path` (a JSON list of base64 keys, primary first), or `None` when the file
/// does not exist.
pub(crate) fn load_keyring_file(path: &Path) -> Result<Option<Keyring>, SerfError> {
    let failed = |reason: String| SerfError::KeyringFile { path: path.to_owned(), reason };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(failed(error.to_string())),
    };
    let encoded: Vec<String> =
        serde_json::from_str(&text).map_err(|e| failed(format!("not a JSON list of keys: {e}")))?;
    let mut keys = encoded.iter().map(|k| Key::from_base64(k).map_err(|e| failed(format!("key {k:?}: {e}"))));
    let Some(primary) = keys.next() else { return Err(failed("no key in the list".to_owned())) };
    let mut keyring = Keyring::new(primary?);
    for key in keys {
        keyring.install(key?);
    }
    Ok(Some(keyring))
}

/// Replace the keyring file with `keys` (primary first): written aside, then renamed over; mode
/// 0600 on Unix.
pub(crate) async fn write_keyring_file(path: &Path, keys: &[Key]) -> Result<(), SerfError> {
    let failed = |reason: String| SerfError::KeyringFile { path: path.to_owned(), reason };
    let encoded: Vec<String> = keys.iter().map(Key::to_base64).collect();
    let text = serde_json::to_string_pretty(&encoded).map_err(|e| failed(e.to_string()))?;
    let path_owned = path.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut aside = path_owned.clone().into_os_string();
        aside.push(".tmp");
        let aside = PathBuf::from(aside);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&aside)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&aside, &path_owned)
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).unwrap()
    }

    #[tokio::test]
    async fn keyring_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("gossip-core-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring.json");
        assert!(load_keyring_file(&path).unwrap().is_none());
        write_keyring_file(&path, &[key(2), key(1)]).await.unwrap();
        let keyring = load_keyring_file(&path).unwrap().unwrap();
        assert_eq!(keyring.primary(), &key(2));
        assert_eq!(keyring.len(), 2);
        std::fs::write(&path, "[]").unwrap();
        assert!(load_keyring_file(&path).unwrap_err().to_string().contains("no key"));
        std::fs::write(&path, "[\"nope\"]").unwrap();
        assert!(load_keyring_file(&path).unwrap_err().to_string().contains("\"nope\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn success_needs_every_node_without_error() {
        let mut response = KeyResponse { num_nodes: 3, num_resp: 3, ..KeyResponse::default() };
        assert!(response.is_success());
        response.num_err = 1;
        assert!(!response.is_success());
        let response = KeyResponse { num_nodes: 3, num_resp: 2, ..KeyResponse::default() };
        assert!(!response.is_success());
    }
}
