//! The JSON documents of the RPC API, shared by the server and the client commands. Every field
//! is documented in `docs/rpc.md`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
}

/// A member as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MemberInfo {
    pub(crate) name: String,
    /// `ip:port` of its gossip.
    pub(crate) addr: String,
    /// `alive`, `suspect`, `failed` or `left`.
    pub(crate) status: String,
    pub(crate) tags: BTreeMap<String, String>,
    /// `generation.incarnation`.
    pub(crate) incarnation: String,
    pub(crate) protocol: ProtocolInfo,
}

/// Protocol versions of a member.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ProtocolInfo {
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) cur: u32,
}

impl MemberInfo {
    pub(crate) fn from_member(member: &gossip_core::Member) -> Self {
        Self {
            name: member.name.to_string(),
            addr: member.addr.to_string(),
            status: status_name(member.state).to_owned(),
            tags: member.tags.as_map().clone(),
            incarnation: member.incarnation.to_string(),
            protocol: ProtocolInfo { min: member.protocol.min, max: member.protocol.max, cur: member.protocol.cur },
        }
    }
}

/// Serf's names for member states (`dead` is shown as `failed`, as Serf does).
pub(crate) const fn status_name(state: gossip_core::State) -> &'static str {
    match state {
        gossip_core::State::Alive => "alive",
        gossip_core::State::Suspect => "suspect",
        gossip_core::State::Dead => "failed",
        gossip_core::State::Left => "left",
    }
}

/// `GET /v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MembersResponse {
    pub(crate) members: Vec<MemberInfo>,
    /// The tag the primary election uses (`role` by default; its claim tags are
    /// `{role_tag}_since` and `{role_tag}_pref`), when the election runs on this agent: the CLI
    /// shows the role from it and hides the claim tags unless asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) role_tag: Option<String>,
}

/// `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinRequest {
    pub(crate) addrs: Vec<String>,
    #[serde(default)]
    pub(crate) replay: bool,
}

/// Answer to `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct JoinResponse {
    /// How many of the addresses answered.
    pub(crate) joined: usize,
}

/// `POST /v1/force-leave`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForceLeaveRequest {
    pub(crate) node: String,
    #[serde(default)]
    pub(crate) prune: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/event`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventRequest {
    pub(crate) name: String,
    /// UTF-8 payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload: Option<String>,
    /// Binary payload, base64 (instead of `payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_base64: Option<String>,
    /// Coalesce with other events of the same name (Serf's default: true).
    #[serde(default = "yes")]
    pub(crate) coalesce: bool,
}

/// `POST /v1/query`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryRequest {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_base64: Option<String>,
    /// Only these nodes answer (empty: all).
    #[serde(default)]
    pub(crate) filter_nodes: Vec<String>,
    /// Only nodes whose tag matches the regexp (whole value) answer.
    #[serde(default)]
    pub(crate) filter_tags: BTreeMap<String, String>,
    /// Ask every node for an acknowledgement (default true).
    #[serde(default = "yes")]
    pub(crate) request_ack: bool,
    /// Each response is also relayed through this many other members.
    #[serde(default)]
    pub(crate) relay_factor: u8,
    /// How long to collect answers, e.g. `5s` (default: the cluster-size-scaled default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<String>,
}

/// One line of the `POST /v1/query` stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum QueryStreamItem {
    /// The query went out.
    Started {
        id: u32,
        timeout_ms: u64,
    },
    Ack {
        from: String,
    },
    Response {
        from: String,
        #[serde(flatten)]
        payload: Payload,
    },
    /// The deadline passed; the stream ends.
    Done {
        acks: usize,
        responses: usize,
    },
}

/// A payload in JSON: `payload` as text when it is UTF-8, else `payload_base64`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub(crate) struct Payload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_base64: Option<String>,
}

impl Payload {
    pub(crate) fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self { payload: Some(text.to_owned()), payload_base64: None },
            Err(_) => Self { payload: None, payload_base64: Some(BASE64.encode(bytes)) },
        }
    }

    /// The bytes; a bad base64 gives an error naming the field.
    pub(crate) fn to_bytes(&self) -> Result<Bytes, String> {
        match (&self.payload, &self.payload_base64) {
            (Some(_), Some(_)) => Err("give either payload or payload_base64, not both".to_owned()),
            (Some(text), None) => Ok(Bytes::from(text.clone())),
            (None, Some(encoded)) => {
                BASE64.decode(encoded).map(Bytes::from).map_err(|error| format!("payload_base64: {error}"))
            }
            (None, None) => Ok(Bytes::new()),
        }
    }

    /// The payload for a terminal: text as is, binary as base64.
    pub(crate) fn display(&self) -> String {
        self.payload.clone().or_else(|| self.payload_base64.clone()).unwrap_or_default()
    }
}

/// `POST /v1/tags`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct TagsRequest {
    #[serde(default)]
    pub(crate) set: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) delete: Vec<String>,
}

/// `GET /v1/tags` and the answer to `POST /v1/tags`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TagsResponse {
    pub(crate) tags: BTreeMap<String, String>,
}

/// `POST /v1/keys/{install,use,remove}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRequest {
    pub(crate) key: String,
}

/// Result of a key operation across the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct KeysResponse {
    pub(crate) num_nodes: usize,
    pub(crate) num_resp: usize,
    pub(crate) num_err: usize,
    /// Node name → error.
    pub(crate) messages: BTreeMap<String, String>,
    /// Key (base64) → how many nodes hold it (`GET /v1/keys` only).
    pub(crate) keys: BTreeMap<String, usize>,
}

/// A Vivaldi network coordinate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CoordinateInfo {
    pub(crate) node: String,
    pub(crate) vec: Vec<f64>,
    pub(crate) error: f64,
    pub(crate) adjustment: f64,
    pub(crate) height: f64,
}

/// `GET /v1/rtt`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct RttResponse {
    pub(crate) from: String,
    pub(crate) to: String,
    /// Estimated round-trip time in milliseconds.
    pub(crate) rtt_ms: f64,
}

/// `POST /v1/reachability`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ReachabilityResponse {
    /// Live members (alive or suspect) this agent knows.
    pub(crate) members: usize,
    /// Members that acknowledged the ping query.
    pub(crate) acks: Vec<String>,
    /// Live members that did not acknowledge it in time.
    pub(crate) missing: Vec<String>,
    /// Acknowledgements from nodes this agent does not list as live.
    pub(crate) unknown: Vec<String>,
    pub(crate) timeout_ms: u64,
}

/// `GET /v1/primary`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PrimaryResponse {
    /// This node.
    pub(crate) node: String,
    /// Whether this agent takes part in the election (its role tag is eligible).
    pub(crate) enabled: bool,
    /// This node's role: `primary`, `standby` or `ineligible`.
    pub(crate) role: String,
    /// The primary as this node sees it.
    pub(crate) primary: Option<String>,
    /// When it claimed the role (RFC 3339), if known.
    pub(crate) since: Option<String>,
    /// The same in unix milliseconds.
    pub(crate) since_ms: Option<u64>,
    /// Live eligible members in election order.
    pub(crate) eligible: Vec<String>,
}

/// `GET /v1/info`: sections of `key → value`.
pub(crate) type InfoResponse = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// One line of the `GET /v1/stream` stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct EventRecord {
    /// `member-join`, ..., `user`, `query`.
    pub(crate) event: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) members: Vec<MemberInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ltime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) coalesce: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<String>,
    #[serde(flatten)]
    pub(crate) payload: Payload,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_text_or_base64() {
        let text = Payload::from_bytes(b"hello");
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"payload":"hello"}"#);
        let binary = Payload::from_bytes(&[0xff, 0]);
        assert_eq!(serde_json::to_string(&binary).unwrap(), r#"{"payload_base64":"/wA="}"#);
        assert_eq!(&binary.to_bytes().unwrap()[..], &[0xff, 0]);
        let both = Payload { payload: Some("a".into()), payload_base64: Some("YQ==".into()) };
        assert!(both.to_bytes().is_err());
    }

    #[test]
    fn query_stream_lines() {
        let line = QueryStreamItem::Response { from: "n1".into(), payload: Payload::from_bytes(b"up") };
        assert_eq!(serde_json::to_string(&line).unwrap(), r#"{"type":"response","from":"n1","payload":"up"}"#);
        let done: QueryStreamItem = serde_json::from_str(r#"{"type":"done","acks":2,"responses":1}"#).unwrap();
        assert_eq!(done, QueryStreamItem::Done { acks: 2, responses: 1 });
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        assert!(serde_json::from_str::<JoinRequest>(r#"{"addrs":[],"replya":true}"#).is_err());
        let event: EventRequest = serde_json::from_str(r#"{"name":"deploy"}"#).unwrap();
        assert!(event.coalesce);
    }
}
