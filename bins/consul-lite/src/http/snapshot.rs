//! `/v1/snapshot`: Consul's snapshot endpoint. `GET` answers the whole registry as an
//! archive (with `X-Consul-Index`, the index it was taken at), `PUT` replaces the registry
//! with an archive's, through the Raft log.
//!
//! - **Save** (`GET`): by default after the `?consistent` read barrier, so the archive holds
//!   every write acknowledged before the request (Consul serves it from the leader);
//!   `?stale`: this server's registry as it is.
//! - **Restore** (`PUT`, `-server` only): the archive is checked whole (magic, format,
//!   length, CRC32, decoding) before anything is proposed, then applied as one Raft entry, so
//!   every server swaps its registry at the same index, all or nothing; a bad archive is a
//!   400 and changes nothing. Every index a read answers afterwards is at least the restore's
//!   (blocking queries wake, and never see an index go back). Sessions come back with their
//!   TTL timers restarted at full TTL, as after a leader change.
//!
//! The archive is consul-lite's own, not Consul's (a gzipped tar of Raft's snapshot and
//! metadata): neither reads the other's. Layout, all integers big-endian:
//!
//! ```text
//! "consul-lite snapshot\n"  format (1 byte)  index (u64)  length (u64)  CRC32 (u32)  payload
//! payload: the registry (service_registry::Snapshot) in postcard
//! ```

use hyper::{Method, StatusCode};
use service_registry::Snapshot;

use super::{Api, ApiError, ApiRequest, ApiResult, Reply};

/// The first bytes of an archive.
const MAGIC: &[u8] = b"consul-lite snapshot\n";
/// The layout after the magic; bump it when it or [`Snapshot`] changes shape.
const FORMAT: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 8 + 8 + 4;
/// The largest archive `PUT` takes: it travels as one Raft entry, within the server RPC's
/// frame limit (64 MiB) with room to spare.
pub(crate) const MAX_ARCHIVE: usize = 32 << 20;

/// The registry as an archive.
pub(crate) fn encode(snapshot: &Snapshot) -> Vec<u8> {
    // Plain structs of strings, integers and collections always encode with postcard.
    let payload = postcard::to_allocvec(snapshot).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&snapshot.last_index.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ArchiveError {
    #[error("not a consul-lite snapshot (Consul's own snapshots are not readable by consul-lite)")]
    Magic,
    #[error("snapshot format {0}, this version reads format {FORMAT}")]
    Format(u8),
    #[error("the snapshot is truncated or has trailing bytes: the header says {said} bytes of data, {found} follow")]
    Length { said: u64, found: usize },
    #[error("the snapshot is damaged: its checksum does not match")]
    Checksum,
    #[error("the snapshot's data does not decode: {0}")]
    Decode(String),
}

/// Checks an archive whole and decodes it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, ArchiveError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(ArchiveError::Magic)?;
    let (&format, rest) = rest.split_first().ok_or(ArchiveError::Magic)?;
    if format != FORMAT {
        return Err(ArchiveError::Format(format));
    }
    if rest.len() < 20 {
        return Err(ArchiveError::Length { said: 0, found: 0 });
    }
    let (index, rest) = rest.split_at(8);
    let (length, rest) = rest.split_at(8);
    let (crc, payload) = rest.split_at(4);
    let said = u64::from_be_bytes(length.try_into().unwrap_or_default());
    if said != payload.len() as u64 {
        return Err(ArchiveError::Length { said, found: payload.len() });
    }
    if crc32fast::hash(payload).to_be_bytes() != crc {
        return Err(ArchiveError::Checksum);
    }
    let snapshot: Snapshot = postcard::from_bytes(payload).map_err(|e| ArchiveError::Decode(e.to_string()))?;
    if snapshot.last_index.to_be_bytes() != index {
        return Err(ArchiveError::Decode("the index in the header differs from the data's".into()));
    }
    Ok(snapshot)
}

/// `GET` and `PUT /v1/snapshot`.
pub(super) async fn endpoint(api: &Api, request: &mut ApiRequest) -> ApiResult {
    match request.method {
        Method::GET => save(api, request).await,
        Method::PUT => restore(api, request).await,
        ref other => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {other} not allowed (allowed: GET, PUT)"),
        )),
    }
}

async fn save(api: &Api, request: &ApiRequest) -> ApiResult {
    if !request.query.has("stale") {
        api.store.consistent().await?;
    }
    let snapshot = api.store.read().snapshot();
    let index = snapshot.last_index;
    Ok(Reply::raw("application/octet-stream", encode(&snapshot)).meta(api, index))
}

async fn restore(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let Some(raft) = api.store.raft() else {
        return Err(ApiError::bad_request("snapshot restore needs a -server agent (a -dev agent keeps no Raft log)"));
    };
    let body = request.body(MAX_ARCHIVE).await?;
    let snapshot = decode(&body).map_err(|e| ApiError::bad_request(format!("cannot restore: {e}")))?;
    raft.restore(snapshot).await?;
    Ok(Reply::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_registry::{Command, KvOp, Registry};

    fn registry() -> Registry {
        let mut registry = Registry::new();
        let set = |key: &str| Command::Kv(KvOp::Set { key: key.into(), value: b"v".to_vec(), flags: 0 });
        let _ = registry.apply(3, set("a")).unwrap();
        let _ = registry.apply(5, set("b/c")).unwrap();
        registry
    }

    #[test]
    fn an_archive_round_trips() {
        let snapshot = registry().snapshot();
        assert_eq!(decode(&encode(&snapshot)).unwrap(), snapshot);
    }

    #[test]
    fn damaged_archives_are_refused_with_the_reason() {
        let archive = encode(&registry().snapshot());
        assert_eq!(decode(b"PK\x03\x04 a zip"), Err(ArchiveError::Magic));
        let mut other_format = archive.clone();
        other_format[MAGIC.len()] = 9;
        assert_eq!(decode(&other_format), Err(ArchiveError::Format(9)));
        let truncated = &archive[..archive.len() - 3];
        assert!(matches!(decode(truncated), Err(ArchiveError::Length { .. })), "{:?}", decode(truncated));
        let mut flipped = archive.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert_eq!(decode(&flipped), Err(ArchiveError::Checksum));
        assert!(decode(&archive[..10]).is_err());
        assert!(decode(&[]).is_err());
    }
}
