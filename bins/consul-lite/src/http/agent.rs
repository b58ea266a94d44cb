//! `/v1/agent/*`: this agent (`self`), the gossip pool (`members`, `join`, `leave`,
//! `force-leave`) and `metrics`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gossip_core::{Member, State};
use serde_json::{json, Value};
use service_registry::{Topic, WatchTarget};

use super::{Api, ApiError, ApiRequest, ApiResult, Reply};

/// Serf's member status codes, as Consul answers them.
pub(crate) fn status_code(state: State) -> u8 {
    match state {
        State::Alive | State::Suspect => 1,
        State::Left => 3,
        State::Dead => 4,
    }
}

fn member_row(member: &Member) -> Value {
    json!({
        "Name": member.name.to_string(),
        "Addr": member.addr.ip().to_string(),
        "Port": member.addr.port(),
        "Tags": member.tags.as_map(),
        "Status": status_code(member.state),
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

pub(super) fn members(api: &Api) -> Reply {
    let rows: Vec<Value> = api.serf.members().iter().map(member_row).collect();
    Reply::json(&rows)
}

pub(super) fn this(api: &Api) -> Reply {
    let info = &api.info;
    let member = member_row(&api.serf.local_member());
    let registry = api.store.read();
    Reply::json(&json!({
        "Config": {
            "Datacenter": info.datacenter,
            "NodeName": info.node,
            "NodeID": info.node_id,
            "AdvertiseAddr": info.advertise,
            "Server": info.server,
            "Revision": "",
            "Version": env!("CARGO_PKG_VERSION"),
            "Dev": info.dev,
        },
        "Member": member,
        "Meta": {},
        "Stats": {
            "agent": { "server": info.server.to_string() },
            "consul": {
                "leader": (api.store.leader().as_deref() == Some(info.server_addr.as_str())).to_string(),
                "known_servers": api.store.peers().len().to_string(),
                "server": info.server.to_string(),
            },
            "raft": raft_stats(api, registry.last_index()),
            "serf_lan": {
                "members": api.serf.members().len().to_string(),
            },
            "dns": api.dns_stats.as_deref().map(crate::dns::DnsStats::to_json),
            "client": api.store.remote().map(crate::store::RemoteStore::stats_json),
        },
    }))
}

pub(super) async fn join(api: &Api, addr: &str) -> ApiResult {
    if addr.is_empty() {
        return Err(ApiError::bad_request("Missing address to join"));
    }
    let with_port =
        if addr.parse::<SocketAddr>().is_ok() || addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            addr.to_owned()
        } else {
            format!("{addr}:{}", crate::config::DEFAULT_SERF_LAN_PORT)
        };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|error| ApiError::internal(format!("cannot resolve {addr:?}: {error}")))?
        .collect();
    api.serf
        .join(&addrs, false)
        .await
        .map_err(|error| ApiError::internal(format!("failed to join {addr}: {error}")))?;
    Ok(Reply::empty())
}

pub(super) async fn leave(api: &Api) -> ApiResult {
    // The primary lock is released first, so that the next node takes it without the lock-delay.
    if let Some(primary) = &api.primary {
        primary.resign().await;
    }
    api.serf.leave().await.map_err(|error| ApiError::internal(format!("leave failed: {error}")))?;
    let _ = api.stop.send(true);
    Ok(Reply::empty())
}

pub(super) async fn force_leave(api: &Api, request: &ApiRequest, node: &str) -> ApiResult {
    if node.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    let prune = request.query.has("prune");
    if !api.serf.members().iter().any(|m| m.name == node) {
        return Err(ApiError::not_found(format!("Unknown node: {node}")));
    }
    api.serf.force_leave(node, prune).await.map_err(|error| ApiError::internal(error.to_string()))?;
    Ok(Reply::empty())
}

/// `/v1/agent/metrics`: Prometheus text with `?format=prometheus`, else Consul's JSON
/// summary (gauges and counters).
pub(super) fn metrics(api: &Api, request: &ApiRequest) -> Reply {
    let samples = samples(api);
    if request.query.get("format") == Some("prometheus") {
        let mut text = String::new();
        for (name, kind, help, value) in &samples {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        return Reply::raw("text/plain; version=0.0.4; charset=utf-8", text);
    }
    let pick = |wanted: &str| -> Vec<Value> {
        samples
            .iter()
            .filter(|(_, kind, _, _)| *kind == wanted)
            .map(|(name, _, _, value)| json!({ "Name": name, "Value": value, "Labels": {} }))
            .collect()
    };
    Reply::json(&json!({ "Gauges": pick("gauge"), "Counters": pick("counter"), "Samples": [] }))
}

type Sample = (&'static str, &'static str, &'static str, u64);

fn samples(api: &Api) -> Vec<Sample> {
    let m = &api.metrics;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let http = api.serve_stats.snapshot();
    let members = api.serf.members();
    let count = |wanted: u8| members.iter().filter(|member| status_code(member.state) == wanted).count() as u64;
    let (index, keys, sessions, nodes, services_index) = {
        let registry = api.store.read();
        (
            registry.last_index(),
            registry.kv_list("").count() as u64,
            registry.sessions().count() as u64,
            registry.nodes().count() as u64,
            registry.index(&WatchTarget::Topic(Topic::Services)),
        )
    };
    let mut samples = vec![
        ("consul_kvs_get_total", "counter", "KV reads (GET /v1/kv)", load(&m.kv_get)),
        ("consul_kvs_put_total", "counter", "KV writes (PUT /v1/kv)", load(&m.kv_put)),
        ("consul_kvs_delete_total", "counter", "KV deletes (DELETE /v1/kv)", load(&m.kv_delete)),
        ("consul_txn_total", "counter", "transactions (/v1/txn)", load(&m.txn)),
        ("consul_session_requests_total", "counter", "session requests (/v1/session)", load(&m.session_ops)),
        (
            "consul_lock_delay_refusals_total",
            "counter",
            "acquires refused inside a lock-delay window",
            load(&m.lock_delay_refusals),
        ),
        ("consul_blocking_queries_total", "counter", "blocking queries started (?index)", load(&m.blocking_queries)),
        ("consul_blocking_queries_waiting", "gauge", "blocking queries waiting now", api.store.waiting() as u64),
        ("consul_http_requests_total", "counter", "HTTP requests", load(&m.requests)),
        ("consul_http_client_errors_total", "counter", "HTTP answers 4xx", load(&m.client_errors)),
        ("consul_http_server_errors_total", "counter", "HTTP answers 5xx", load(&m.server_errors)),
        ("consul_http_forbidden_total", "counter", "requests refused for a missing or wrong token", load(&m.forbidden)),
        ("consul_http_connections_accepted_total", "counter", "HTTP connections accepted", http.accepted),
        ("consul_http_connections_open", "gauge", "HTTP connections open", http.open),
        (
            "consul_http_connections_evicted_total",
            "counter",
            "idle connections closed to make room at the limit",
            http.evicted,
        ),
        (
            "consul_http_connections_idle_timeouts_total",
            "counter",
            "connections closed for no request head in time",
            http.idle_timeouts,
        ),
        (
            "consul_http_connections_write_stalls_total",
            "counter",
            "connections closed for a stalled response write",
            http.write_stalls,
        ),
        ("consul_http_accept_errors_total", "counter", "failed accepts", http.accept_errors),
        ("consul_raft_applied_index", "gauge", "index of the last applied command", index),
        ("consul_kvs_entries", "gauge", "keys stored", keys),
        ("consul_session_count", "gauge", "sessions", sessions),
        ("consul_catalog_nodes", "gauge", "nodes in the catalog", nodes),
        ("consul_catalog_services_index", "gauge", "index of the service list", services_index),
        ("consul_serf_lan_members", "gauge", "gossip members alive", count(1)),
        ("consul_serf_lan_members_left", "gauge", "gossip members left", count(3)),
        ("consul_serf_lan_members_failed", "gauge", "gossip members failed", count(4)),
    ];
    if let Some(raft) = api.store.raft() {
        let stats = raft.stats();
        let m = &stats.metrics;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        samples.extend([
            ("consul_raft_term", "gauge", "the current Raft term", m.term),
            ("consul_raft_leader", "gauge", "1 if this server leads", u64::from(m.role == consensus::Role::Leader)),
            (
                "consul_raft_last_log_index",
                "gauge",
                "index of the last entry in the log",
                m.last_log_index.unwrap_or(0),
            ),
            (
                "consul_raft_last_applied_index",
                "gauge",
                "index of the last log entry applied",
                m.applied_index.unwrap_or(0),
            ),
            ("consul_raft_snapshot_index", "gauge", "index the latest snapshot covers", m.snapshot_index.unwrap_or(0)),
            ("consul_raft_peers", "gauge", "servers in the Raft configuration", m.peers.len() as u64),
            (
                "consul_raft_last_contact_milliseconds",
                "gauge",
                "time since the leader was last heard from (the leader: since a quorum acknowledged it)",
                m.last_contact.map_or(u64::MAX, millis),
            ),
            ("consul_raft_leader_changes_total", "counter", "new leaders this server saw", stats.leader_changes),
            ("consul_raft_apply_total", "counter", "writes through this server applied", stats.writes),
            (
                "consul_raft_apply_milliseconds_total",
                "counter",
                "their total time from proposal to applied on this server (divide by consul_raft_apply_total)",
                millis(stats.write_time),
            ),
            ("consul_raft_snapshots_built_total", "counter", "snapshots this server built", m.snapshots_built),
            (
                "consul_raft_snapshots_installed_total",
                "counter",
                "snapshots installed from a leader",
                m.snapshots_installed,
            ),
        ]);
    }
    samples
}

/// `/v1/agent/self`'s `Stats.raft`.
fn raft_stats(api: &Api, registry_index: u64) -> Value {
    let Some(raft) = api.store.raft() else {
        return json!({ "applied_index": registry_index.to_string(), "state": "Leader", "num_peers": "0" });
    };
    let m = raft.metrics();
    let state = match m.role {
        consensus::Role::Leader => "Leader",
        consensus::Role::Candidate => "Candidate",
        consensus::Role::Learner => "Learner",
        consensus::Role::Shutdown => "Shutdown",
        _ => "Follower",
    };
    json!({
        "applied_index": m.applied_index.unwrap_or(0).to_string(),
        "commit_index": m.applied_index.unwrap_or(0).to_string(),
        "last_log_index": m.last_log_index.unwrap_or(0).to_string(),
        "last_snapshot_index": m.snapshot_index.unwrap_or(0).to_string(),
        "term": m.term.to_string(),
        "state": state,
        "num_peers": m.peers.len().saturating_sub(1).to_string(),
        "last_contact": m.last_contact.map_or_else(|| "never".to_owned(), |d| format!("{d:?}")),
    })
}
