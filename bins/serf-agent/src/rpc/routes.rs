//! What each RPC route does, on the [`AgentContext`]. The table of routes is
//! [`AgentContext::handle`]; each route is a small function below it, in the table's order.

use std::time::{Duration, UNIX_EPOCH};

use gossip_core::{Key, QueryParams, QueryReply, SerfError};
use hyper::{Method, StatusCode};
use regex::Regex;
use tokio::sync::mpsc;

use super::api::{
    CoordinateInfo, EventRequest, ForceLeaveRequest, InfoResponse, JoinRequest, JoinResponse, KeyRequest, KeysResponse,
    MemberInfo, MembersResponse, Payload, PrimaryResponse, QueryRequest, QueryStreamItem, ReachabilityResponse,
    RttResponse, TagsRequest, TagsResponse,
};
use super::server::{ndjson_line, ApiError, ApiRequest, Reply, Routes};
use crate::agent::AgentContext;
use crate::handlers::EventFilter;
use crate::tags::TagError;

/// Lines buffered per streaming response before the producer waits for the client.
const STREAM_BUFFER: usize = 256;
/// Name of the internal query that checks reachability (answered by the serf layer itself).
const PING_QUERY: &str = "_serf_ping";

/// Every path with the methods it accepts: a known path with another method is a 405.
const ROUTES: &[(&str, &[Method])] = &[
    ("/v1/health", &[Method::GET]),
    ("/v1/members", &[Method::GET]),
    ("/v1/join", &[Method::POST]),
    ("/v1/leave", &[Method::POST]),
    ("/v1/force-leave", &[Method::POST]),
    ("/v1/event", &[Method::POST]),
    ("/v1/query", &[Method::POST]),
    ("/v1/monitor", &[Method::GET]),
    ("/v1/stream", &[Method::GET]),
    ("/v1/tags", &[Method::GET, Method::POST]),
    ("/v1/info", &[Method::GET]),
    ("/v1/stats", &[Method::GET]),
    ("/v1/keys", &[Method::GET]),
    ("/v1/keys/install", &[Method::POST]),
    ("/v1/keys/use", &[Method::POST]),
    ("/v1/keys/remove", &[Method::POST]),
    ("/v1/coordinate", &[Method::GET]),
    ("/v1/rtt", &[Method::GET]),
    ("/v1/reachability", &[Method::POST]),
    ("/v1/primary", &[Method::GET]),
    ("/metrics", &[Method::GET]),
];

impl Routes for AgentContext {
    async fn handle(&self, request: ApiRequest) -> Result<Reply, ApiError> {
        let path = request.path.trim_end_matches('/').to_owned();
        let path = if path.is_empty() { "/".to_owned() } else { path };
        match (&request.method, path.as_str()) {
            (&Method::GET, "/v1/health") => Ok(Reply::json(&serde_json::json!({ "status": "ok" }))),
            (&Method::GET, "/v1/members") => members(self, &request),
            (&Method::POST, "/v1/join") => join(self, &request).await,
            (&Method::POST, "/v1/leave") => leave(self).await,
            (&Method::POST, "/v1/force-leave") => force_leave(self, &request).await,
            (&Method::POST, "/v1/event") => event(self, &request).await,
            (&Method::POST, "/v1/query") => query(self, &request).await,
            (&Method::GET, "/v1/monitor") => monitor(self, &request),
            (&Method::GET, "/v1/stream") => stream(self, &request),
            (&Method::GET, "/v1/tags") => Ok(Reply::json(&TagsResponse { tags: self.tags.composed().await })),
            (&Method::POST, "/v1/tags") => tags(self, &request).await,
            (&Method::GET, "/v1/info" | "/v1/stats") => info(self).await,
            (&Method::GET, "/v1/keys") => keys(self, "list", None).await,
            (&Method::POST, "/v1/keys/install") => keys(self, "install", Some(&request)).await,
            (&Method::POST, "/v1/keys/use") => keys(self, "use", Some(&request)).await,
            (&Method::POST, "/v1/keys/remove") => keys(self, "remove", Some(&request)).await,
            (&Method::GET, "/v1/coordinate") => coordinate(self, &request),
            (&Method::GET, "/v1/rtt") => rtt(self, &request),
            (&Method::POST, "/v1/reachability") => reachability(self).await,
            (&Method::GET, "/v1/primary") => Ok(Reply::json(&primary_view(self))),
            (&Method::GET, "/metrics") => metrics(self).await,
            (method, path) if ROUTES.iter().any(|(known, _)| *known == path) => {
                Err(ApiError::method_not_allowed(method, path))
            }
            (_, path) => Err(ApiError::not_found(format!("no such route: {path} (routes are listed in docs/rpc.md)"))),
        }
    }
}

/// Map a serf-layer error to a status: bad input is 4xx, the rest 500.
fn serf_error(error: SerfError) -> ApiError {
    let status = match &error {
        SerfError::EventTooLarge { .. } | SerfError::QueryTooLarge { .. } | SerfError::ResponseTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        SerfError::InvalidFilter { .. } | SerfError::NoEncryption | SerfError::Config { .. } => StatusCode::BAD_REQUEST,
        SerfError::Join(_) => StatusCode::BAD_GATEWAY,
        SerfError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, error.to_string())
}

/// `^(?:expr)$`, or 400 naming the parameter.
fn anchored(param: &str, expr: &str) -> Result<Regex, ApiError> {
    Regex::new(&format!("^(?:{expr})$"))
        .map_err(|error| ApiError::bad_request(format!("{param}: {expr:?} is not a valid regular expression: {error}")))
}

fn members(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let status = request.param("status").map(|expr| anchored("status", expr)).transpose()?;
    let name = request.param("name").map(|expr| anchored("name", expr)).transpose()?;
    let tags = request
        .params("tag")
        .map(|filter| {
            let (key, expr) = filter
                .split_once('=')
                .ok_or_else(|| ApiError::bad_request(format!("tag: {filter:?} is not KEY=REGEXP")))?;
            Ok((key.to_owned(), anchored("tag", expr)?))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let members = context
        .serf
        .members()
        .iter()
        .map(MemberInfo::from_member)
        .filter(|member| status.as_ref().is_none_or(|re| re.is_match(&member.status)))
        .filter(|member| name.as_ref().is_none_or(|re| re.is_match(&member.name)))
        .filter(|member| tags.iter().all(|(key, re)| member.tags.get(key).is_some_and(|value| re.is_match(value))))
        .collect();
    let role_tag = context.election_enabled.then(|| context.settings.primary.tag.clone());
    Ok(Reply::json(&MembersResponse { members, role_tag }))
}

async fn join(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let body: JoinRequest = request.json()?;
    if body.addrs.is_empty() {
        return Err(ApiError::bad_request("addrs: give at least one address to join"));
    }
    let mut resolved = Vec::new();
    for addr in &body.addrs {
        crate::config::check_host_port(addr).map_err(|reason| ApiError::bad_request(format!("{addr:?}: {reason}")))?;
        resolved.extend(crate::config::resolve_join_addr(addr).await.map_err(ApiError::bad_request)?);
    }
    let joined = context.serf.join(&resolved, body.replay).await.map_err(serf_error)?;
    Ok(Reply::json(&JoinResponse { joined }))
}

async fn leave(context: &AgentContext) -> Result<Reply, ApiError> {
    context.leave().await.map_err(ApiError::internal)?;
    context.request_exit().await;
    Ok(Reply::json(&serde_json::json!({ "left": true })))
}

async fn force_leave(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let body: ForceLeaveRequest = request.json()?;
    if body.node.is_empty() {
        return Err(ApiError::bad_request("node: give the name of the member to remove"));
    }
    if !context.serf.members().iter().any(|member| member.name == body.node) {
        return Err(ApiError::not_found(format!("no member named {:?}", body.node)));
    }
    context.serf.force_leave(&body.node, body.prune).await.map_err(serf_error)?;
    Ok(Reply::json(&serde_json::json!({ "node": body.node, "pruned": body.prune })))
}

async fn event(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let body: EventRequest = request.json()?;
    if body.name.is_empty() {
        return Err(ApiError::bad_request("name: an event needs a name"));
    }
    let payload = Payload { payload: body.payload, payload_base64: body.payload_base64 }
        .to_bytes()
        .map_err(ApiError::bad_request)?;
    context.serf.user_event(&body.name, payload, body.coalesce).await.map_err(serf_error)?;
    Ok(Reply::json(&serde_json::json!({ "name": body.name, "coalesce": body.coalesce })))
}

async fn query(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let body: QueryRequest = request.json()?;
    if body.name.is_empty() {
        return Err(ApiError::bad_request("name: a query needs a name"));
    }
    if body.name.starts_with("_serf_") {
        return Err(ApiError::bad_request(format!("name: {:?}: names starting with _serf_ are internal", body.name)));
    }
    let payload = Payload { payload: body.payload, payload_base64: body.payload_base64 }
        .to_bytes()
        .map_err(ApiError::bad_request)?;
    let timeout = body
        .timeout
        .as_deref()
        .map(|text| {
            crate::duration::parse_duration(text).map_err(|error| ApiError::bad_request(format!("timeout: {error}")))
        })
        .transpose()?;
    let params = QueryParams {
        filter_nodes: body.filter_nodes,
        filter_tags: body.filter_tags.into_iter().collect(),
        request_ack: body.request_ack,
        relay_factor: body.relay_factor,
        timeout,
    };
    let mut response = context.serf.query(&body.name, payload, params).await.map_err(serf_error)?;
    let (lines, receiver) = mpsc::channel(STREAM_BUFFER);
    let timeout_ms = response.deadline().saturating_duration_since(std::time::Instant::now()).as_millis() as u64;
    let _ = lines.try_send(ndjson_line(&QueryStreamItem::Started { id: response.id(), timeout_ms }));
    let mut stopping = context.shutdown.clone();
    tokio::spawn(async move {
        let (mut acks, mut responses) = (0, 0);
        loop {
            let reply = tokio::select! {
                reply = response.next() => reply,
                () = lines.closed() => return,
                () = crate::agent::stopped(&mut stopping) => None,
            };
            let item = match reply {
                Some(QueryReply::Ack { from }) => {
                    acks += 1;
                    QueryStreamItem::Ack { from }
                }
                Some(QueryReply::Response { from, payload }) => {
                    responses += 1;
                    QueryStreamItem::Response { from, payload: Payload::from_bytes(&payload) }
                }
                None => break,
            };
            if lines.send(ndjson_line(&item)).await.is_err() {
                return;
            }
        }
        let _ = lines.send(ndjson_line(&QueryStreamItem::Done { acks, responses })).await;
    });
    Ok(Reply::Stream(receiver))
}

fn monitor(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let level_text = request.param("level").or_else(|| request.param("log_level")).unwrap_or("info");
    let level = agent_support::logging::parse_level(level_text).ok_or_else(|| {
        ApiError::bad_request(format!("level: {level_text:?} is not a log level (trace, debug, info, warn, error)"))
    })?;
    let mut subscription = context.logs.subscribe(level);
    let (lines, receiver) = mpsc::channel(STREAM_BUFFER);
    let mut stopping = context.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                record = subscription.recv() => match record {
                    Ok(record) => ndjson_line(&*record),
                    Err(skipped) => ndjson_line(&serde_json::json!({
                        "time": agent_support::logging::rfc3339(std::time::SystemTime::now()),
                        "level": "WARN",
                        "target": "serf_agent::monitor",
                        "message": format!("monitor fell behind: {skipped} log lines skipped"),
                    })),
                },
                () = lines.closed() => return,
                () = crate::agent::stopped(&mut stopping) => return,
            };
            if lines.send(line).await.is_err() {
                return;
            }
        }
    });
    Ok(Reply::Stream(receiver))
}

fn stream(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let filter_text = request.param("type").or_else(|| request.param("filter")).unwrap_or("");
    let filter = EventFilter::parse(filter_text).map_err(|error| ApiError::bad_request(format!("type: {error}")))?;
    let mut events = context.events.subscribe();
    let (lines, receiver) = mpsc::channel(STREAM_BUFFER);
    let mut stopping = context.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let record = tokio::select! {
                record = events.recv() => match record {
                    Ok(record) => record,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "event stream client fell behind");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = lines.closed() => return,
                () = crate::agent::stopped(&mut stopping) => return,
            };
            let kind = crate::handlers::EventKind::parse(&record.event);
            if kind.is_some_and(|kind| filter.matches(kind, record.name.as_deref()))
                && lines.send(ndjson_line(&*record)).await.is_err()
            {
                return;
            }
        }
    });
    Ok(Reply::Stream(receiver))
}

async fn tags(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let body: TagsRequest = request.json()?;
    let tags = context.tags.update_user(body.set, body.delete).await.map_err(|error| match error {
        TagError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
        TagError::Publish(_) => ApiError::internal(error.to_string()),
        TagError::Reserved(_) | TagError::EmptyName => ApiError::bad_request(error.to_string()),
    })?;
    Ok(Reply::json(&TagsResponse { tags }))
}

async fn info(context: &AgentContext) -> Result<Reply, ApiError> {
    let stats = context.serf.stats().await.map_err(serf_error)?;
    let local = context.serf.local_member();
    let view = primary_view(context);
    let mut info = InfoResponse::new();
    let mut section = |name: &str, values: Vec<(&str, serde_json::Value)>| {
        info.insert(name.to_owned(), values.into_iter().map(|(key, value)| (key.to_owned(), value)).collect());
    };
    section(
        "agent",
        vec![
            ("name", context.name.clone().into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
            ("rpc_addr", context.rpc_addr.to_string().into()),
            ("gossip_addr", context.serf.local_addr().to_string().into()),
            ("advertise_addr", context.serf.advertise_addr().to_string().into()),
            ("profile", context.settings.profile.clone().into()),
            ("snapshot", context.settings.snapshot_path.as_ref().map(|p| p.display().to_string()).into()),
            ("encrypted", context.settings.keyring.is_some().into()),
            ("event_handlers", context.handlers.specs().len().into()),
        ],
    );
    section(
        "runtime",
        vec![
            ("os", std::env::consts::OS.into()),
            ("arch", std::env::consts::ARCH.into()),
            ("pid", std::process::id().into()),
            ("uptime_s", context.started.elapsed().as_secs().into()),
        ],
    );
    section("serf", crate::metrics::stats_section(&stats));
    section("tags", local.tags.iter().map(|(key, value)| (key, value.into())).collect());
    section(
        "primary",
        vec![
            ("role", view.role.clone().into()),
            ("primary", view.primary.clone().into()),
            ("since", view.since.clone().into()),
            ("eligible", view.eligible.join(",").into()),
        ],
    );
    Ok(Reply::json(&info))
}

async fn keys(context: &AgentContext, action: &str, request: Option<&ApiRequest>) -> Result<Reply, ApiError> {
    let key = match request {
        Some(request) => {
            let body: KeyRequest = request.json()?;
            Some(Key::from_base64(&body.key).map_err(|error| {
                ApiError::bad_request(format!(
                    "key: not a valid key ({error}); it must be base64 of 16, 24 or 32 bytes"
                ))
            })?)
        }
        None => None,
    };
    let serf = &context.serf;
    let response = match (action, key) {
        ("install", Some(key)) => serf.install_key(key).await,
        ("use", Some(key)) => serf.use_key(key).await,
        ("remove", Some(key)) => serf.remove_key(key).await,
        _ => serf.list_keys().await,
    }
    .map_err(serf_error)?;
    Ok(Reply::json(&KeysResponse {
        num_nodes: response.num_nodes,
        num_resp: response.num_resp,
        num_err: response.num_err,
        messages: response.messages,
        keys: response.keys,
    }))
}

fn coordinate_of(context: &AgentContext, node: &str) -> Result<gossip_core::Coordinate, ApiError> {
    let coordinate =
        if node == context.name { context.serf.coordinate() } else { context.serf.member_coordinate(node) };
    coordinate.ok_or_else(|| {
        if context.settings.disable_coordinates {
            ApiError::not_found("coordinates are disabled on this agent (disable_coordinates)")
        } else if context.serf.members().iter().any(|member| member.name == node) {
            ApiError::not_found(format!("no coordinate for {node:?} yet"))
        } else {
            ApiError::not_found(format!("no member named {node:?}"))
        }
    })
}

fn coordinate(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let node = request.param("node").unwrap_or(&context.name).to_owned();
    let coordinate = coordinate_of(context, &node)?;
    Ok(Reply::json(&CoordinateInfo {
        node,
        vec: coordinate.vec.clone(),
        error: coordinate.error,
        adjustment: coordinate.adjustment,
        height: coordinate.height,
    }))
}

fn rtt(context: &AgentContext, request: &ApiRequest) -> Result<Reply, ApiError> {
    let nodes: Vec<&str> = request.params("node").collect();
    let (from, to) = match nodes.as_slice() {
        [to] => (context.name.as_str(), *to),
        [from, to] => (*from, *to),
        _ => return Err(ApiError::bad_request("node: give one node (rtt from this agent) or two")),
    };
    let rtt: Duration = coordinate_of(context, from)?.distance_to(&coordinate_of(context, to)?);
    Ok(Reply::json(&RttResponse { from: from.to_owned(), to: to.to_owned(), rtt_ms: rtt.as_secs_f64() * 1000.0 }))
}

async fn reachability(context: &AgentContext) -> Result<Reply, ApiError> {
    let params = QueryParams { request_ack: true, ..QueryParams::default() };
    let mut response = context.serf.query(PING_QUERY, bytes::Bytes::new(), params).await.map_err(serf_error)?;
    let timeout_ms = response.deadline().saturating_duration_since(std::time::Instant::now()).as_millis() as u64;
    let mut acks = Vec::new();
    while let Some(reply) = response.next().await {
        if let QueryReply::Ack { from } = reply {
            acks.push(from);
        }
    }
    acks.sort();
    acks.dedup();
    let live: Vec<String> =
        context.serf.members().into_iter().filter(|member| member.is_live()).map(|member| member.name.into()).collect();
    let missing = live.iter().filter(|name| !acks.contains(name)).cloned().collect();
    let unknown = acks.iter().filter(|name| !live.contains(name)).cloned().collect();
    Ok(Reply::json(&ReachabilityResponse { members: live.len(), acks, missing, unknown, timeout_ms }))
}

pub(crate) fn primary_view(context: &AgentContext) -> PrimaryResponse {
    let view = context.primary.borrow().clone();
    let since_ms = view
        .since
        .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    PrimaryResponse {
        node: context.name.clone(),
        enabled: context.election_enabled,
        role: view.local_role.as_str().to_owned(),
        primary: view.primary.clone(),
        since: view.since.map(agent_support::logging::rfc3339),
        since_ms,
        eligible: view.eligible,
    }
}

async fn metrics(context: &AgentContext) -> Result<Reply, ApiError> {
    let stats = context.serf.stats().await.map_err(serf_error)?;
    let text = crate::metrics::render(context, &stats);
    Ok(Reply::Text(crate::metrics::CONTENT_TYPE, text))
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext").field("name", &self.name).finish_non_exhaustive()
    }
}
