//! Consul's `/v1` HTTP API on the shared hardened layer ([`http_serve::serve`]).
//!
//! One axum fallback handler ([`handle`]) authenticates the request (before any body is
//! read), then dispatches on the method and path, as Consul's mux does; each endpoint family
//! is a module. Every answer is either a [`Reply`] (JSON, `true`/`false`, or raw bytes, with
//! the `X-Consul-*` headers of a read) or an [`ApiError`]: a plain-text body with Consul's
//! status code.
//!
//! ```text
//!  request ─► token check (403) ─► route ─► query options (400) ─► blocking wait (Store::wait)
//!                                         └► body (413 / 400) ─► Store::write ─► true/false/JSON
//! ```

mod agent;
mod catalog;
mod json;
mod kv;
pub(crate) mod local;
mod monitor;
mod operator;
mod query;
mod register;
mod session;
pub(crate) mod snapshot;
mod txn;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::Router;
use bytes::Bytes;
use gossip_core::SerfHandle;
use http_serve::ServeStats;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::watch;

use crate::store::{Store, StoreError};
pub(crate) use query::QueryString;

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest JSON body accepted by endpoints other than KV and txn.
const JSON_BODY_LIMIT: usize = 64 * 1024;

/// What the agent reports about itself (`/v1/agent/self`, tags, the catalog).
#[derive(Debug, Clone)]
pub(crate) struct AgentInfo {
    /// The node's name.
    pub(crate) node: String,
    /// The node's UUID.
    pub(crate) node_id: String,
    /// The datacenter.
    pub(crate) datacenter: String,
    /// The server RPC address (`/v1/status/leader` answers it).
    pub(crate) server_addr: String,
    /// The address this agent advertises.
    pub(crate) advertise: String,
    /// Whether this agent is a server.
    pub(crate) server: bool,
    /// Whether it runs in `-dev` mode.
    pub(crate) dev: bool,
}

/// Counters of the API, for `/v1/agent/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ApiMetrics {
    pub(crate) kv_get: AtomicU64,
    pub(crate) kv_put: AtomicU64,
    pub(crate) kv_delete: AtomicU64,
    pub(crate) txn: AtomicU64,
    pub(crate) session_ops: AtomicU64,
    pub(crate) blocking_queries: AtomicU64,
    pub(crate) lock_delay_refusals: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) client_errors: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) forbidden: AtomicU64,
}

impl ApiMetrics {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the endpoints share.
pub(crate) struct Api {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) serf: SerfHandle,
    pub(crate) info: AgentInfo,
    /// `-acl-master-token`: when set, every request must carry it.
    pub(crate) acl_token: Option<String>,
    pub(crate) metrics: ApiMetrics,
    pub(crate) serve_stats: Arc<ServeStats>,
    /// The DNS server's counters (`None` with DNS off): `Stats.dns` of `/v1/agent/self`.
    pub(crate) dns_stats: Option<Arc<crate::dns::DnsStats>>,
    /// This agent's own services and checks (`/v1/agent/service*`, `/v1/agent/check*`).
    pub(crate) local: Arc<crate::local::LocalAgent>,
    /// Set to true to stop the agent (`/v1/agent/leave`).
    pub(crate) stop: watch::Sender<bool>,
    /// The lock-held primary, released before a graceful leave (`-primary-*`).
    pub(crate) primary: Option<crate::primary::PrimaryHandle>,
    /// The agent's log records, for `/v1/agent/monitor`.
    pub(crate) logs: agent_support::logging::LogHub,
}

/// The router to serve: every path goes to [`handle`].
pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new().fallback(handle).with_state(api)
}

/// A request as the endpoints see it: method, decoded path, query, headers, and the body not
/// yet read.
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: QueryString,
    /// In a mutex only so that `&ApiRequest` is `Send` (axum's body is not `Sync`).
    body: std::sync::Mutex<Option<Body>>,
}

impl ApiRequest {
    /// Reads the body whole, within `limit` bytes (413 beyond, with Consul's message).
    pub(crate) async fn body(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let body = self.body.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take().unwrap_or_default();
        http_serve::read_body(body, limit, BODY_TIMEOUT).await.map_err(|error| match error {
            http_serve::BodyError::TooLarge { limit } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("Request body too large, max size: {limit} bytes"))
            }
            http_serve::BodyError::TimedOut { after } => {
                ApiError::bad_request(format!("request body not received within {after:?}"))
            }
            other => ApiError::bad_request(other.to_string()),
        })
    }

    /// Reads a JSON body (`None` when it is empty); 400 "Request decode failed" when it is
    /// not JSON.
    pub(crate) async fn json_body(&mut self) -> Result<Option<serde_json::Value>, ApiError> {
        let body = self.body(JSON_BODY_LIMIT).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|error| ApiError::bad_request(format!("Request decode failed: {error}")))
    }
}

/// A successful answer.
pub(crate) struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    /// A streamed body instead of `body` (`/v1/agent/monitor`).
    stream: Option<Body>,
    headers: Vec<(HeaderName, String)>,
}

impl Reply {
    /// A JSON body, 200.
    pub(crate) fn json(value: &impl Serialize) -> Self {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        body.push(b'\n');
        Self {
            status: StatusCode::OK,
            content_type: "application/json",
            body: body.into(),
            stream: None,
            headers: Vec::new(),
        }
    }

    /// An empty 200 (Consul's answer to join, leave, force-leave).
    pub(crate) fn empty() -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "text/plain",
            body: Bytes::new(),
            stream: None,
            headers: Vec::new(),
        }
    }

    /// A raw body with its content type.
    pub(crate) fn raw(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self { status: StatusCode::OK, content_type, body: body.into(), stream: None, headers: Vec::new() }
    }

    /// A 200 whose body is streamed as it is produced.
    pub(crate) fn stream(content_type: &'static str, body: Body) -> Self {
        Self { status: StatusCode::OK, content_type, body: Bytes::new(), stream: Some(body), headers: Vec::new() }
    }

    /// The same answer with another status.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((HeaderName::from_static(name), value.into()));
        self
    }

    /// Adds the headers of a read: `X-Consul-Index` (never 0), `X-Consul-LastContact` (ms),
    /// `X-Consul-KnownLeader`.
    pub(crate) fn meta(self, api: &Api, index: u64) -> Self {
        let last_contact = api.store.last_contact().as_millis().to_string();
        let known_leader = api.store.leader().is_some().to_string();
        self.header("x-consul-index", index.max(1).to_string())
            .header("x-consul-lastcontact", last_contact)
            .header("x-consul-knownleader", known_leader)
    }

    /// A 404 with the headers of a read and no body (a missing key: a client can block on
    /// the index until it appears).
    pub(crate) fn not_found(api: &Api, index: u64) -> Self {
        Self::raw("text/plain", Bytes::new()).status(StatusCode::NOT_FOUND).meta(api, index)
    }

    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(self.stream.unwrap_or_else(|| Body::from(self.body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// An error answer: Consul's status code and a plain-text message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn method_not_allowed(method: &Method, allowed: &[Method]) -> Self {
        let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed (allowed: {})", allowed.join(", ")),
        )
    }

    fn into_response(self) -> Response<Body> {
        let mut body = self.message;
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

impl From<StoreError> for ApiError {
    /// Consul's answers to a failed write: 500 with the message, except a value over the
    /// limit (413) and a missing name (400).
    fn from(error: StoreError) -> Self {
        use service_registry::Error as E;
        match &error {
            StoreError::Refused(E::ValueTooLarge { .. }) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
            StoreError::Refused(E::Missing { .. }) => Self::bad_request(error.to_string()),
            _ => Self::internal(error.to_string()),
        }
    }
}

/// The endpoints' result.
pub(crate) type ApiResult = Result<Reply, ApiError>;

async fn handle(State(api): State<Arc<Api>>, request: Request<Body>) -> Response<Body> {
    ApiMetrics::count(&api.metrics.requests);
    let (parts, body) = request.into_parts();
    let query = QueryString::parse(parts.uri.query().unwrap_or(""));
    let path = query::percent_decode(parts.uri.path(), false);
    if let Some(expected) = &api.acl_token {
        if !token_matches(&parts.headers, &query, expected) {
            ApiMetrics::count(&api.metrics.forbidden);
            return ApiError::new(StatusCode::FORBIDDEN, "Permission denied").into_response();
        }
    }
    let request = ApiRequest { method: parts.method, path, query, body: std::sync::Mutex::new(Some(body)) };
    let result = route(&api, request).await;
    let response = match result {
        Ok(reply) => reply.into_response(),
        Err(error) => {
            if error.status.is_server_error() {
                tracing::warn!(status = error.status.as_u16(), message = %error.message, "http: request failed");
            }
            error.into_response()
        }
    };
    if response.status().is_client_error() {
        ApiMetrics::count(&api.metrics.client_errors);
    } else if response.status().is_server_error() {
        ApiMetrics::count(&api.metrics.server_errors);
    }
    response
}

/// The request's token (`?token=` first, then `X-Consul-Token`, then `Authorization:
/// Bearer`, as Consul looks for it) compared with the configured one.
fn token_matches(headers: &HeaderMap, query: &QueryString, expected: &str) -> bool {
    let from_header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let token = query
        .get("token")
        .filter(|token| !token.is_empty())
        .or_else(|| from_header("x-consul-token").filter(|token| !token.is_empty()))
        .or_else(|| from_header("authorization").and_then(|value| value.strip_prefix("Bearer ")).map(str::trim));
    token.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The routing table: Consul's paths, each with its methods (another method is a 405).
async fn route(api: &Api, mut request: ApiRequest) -> ApiResult {
    let path = request.path.clone();
    let method = request.method.clone();
    let allow = |allowed: &[Method]| -> Result<(), ApiError> {
        if allowed.contains(&method) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(&method, allowed))
        }
    };
    const GET: &[Method] = &[Method::GET];
    const PUT: &[Method] = &[Method::PUT];
    const PUT_POST: &[Method] = &[Method::PUT, Method::POST];

    if let Some(key) = path.strip_prefix("/v1/kv/") {
        ApiMetrics::count(match method {
            Method::GET => &api.metrics.kv_get,
            Method::PUT => &api.metrics.kv_put,
            _ => &api.metrics.kv_delete,
        });
        return kv::endpoint(api, &mut request, key).await;
    }
    if let Some(rest) = path.strip_prefix("/v1/session/") {
        ApiMetrics::count(&api.metrics.session_ops);
        let (verb, arg) = rest.split_once('/').unwrap_or((rest, ""));
        return match verb {
            "create" => {
                allow(PUT)?;
                session::create(api, &mut request).await
            }
            "destroy" => {
                allow(PUT)?;
                session::destroy(api, &request, arg).await
            }
            "renew" => {
                allow(PUT)?;
                session::renew(api, &request, arg).await
            }
            "info" => {
                allow(GET)?;
                session::info(api, &request, arg).await
            }
            "node" => {
                allow(GET)?;
                session::node(api, &request, arg).await
            }
            "list" => {
                allow(GET)?;
                session::list(api, &request).await
            }
            _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/catalog/") {
        let (verb, arg) = rest.split_once('/').unwrap_or((rest, ""));
        match verb {
            "register" => {
                allow(PUT)?;
                return register::register(api, &mut request).await;
            }
            "deregister" => {
                allow(PUT)?;
                return register::deregister(api, &mut request).await;
            }
            _ => allow(GET)?,
        }
        return match verb {
            "datacenters" => Ok(Reply::json(&[&api.info.datacenter])),
            "nodes" => catalog::nodes(api, &request).await,
            "services" => catalog::services(api, &request).await,
            "node" => catalog::node(api, &request, arg).await,
            "service" => catalog::service(api, &request, arg).await,
            _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/health/") {
        let (verb, arg) = rest.split_once('/').unwrap_or((rest, ""));
        allow(GET)?;
        return match verb {
            "service" => catalog::health_service(api, &request, arg).await,
            "checks" => catalog::health_checks(api, &request, arg).await,
            "node" => catalog::health_node(api, &request, arg).await,
            "state" => catalog::health_state(api, &request, arg).await,
            _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/agent/service/") {
        return match rest.split_once('/').unwrap_or((rest, "")) {
            ("register", "") => {
                allow(PUT)?;
                local::register_service(api, &mut request).await
            }
            ("deregister", id) if !id.is_empty() => {
                allow(PUT)?;
                local::deregister_service(api, id).await
            }
            ("maintenance", id) if !id.is_empty() => {
                allow(PUT)?;
                local::service_maintenance(api, &request, id).await
            }
            _ => {
                allow(GET)?;
                local::service(api, rest).await
            }
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/agent/check/") {
        let (verb, id) = rest.split_once('/').unwrap_or((rest, ""));
        allow(PUT)?;
        return match verb {
            "register" if id.is_empty() => local::register_check(api, &mut request).await,
            "deregister" if !id.is_empty() => local::deregister_check(api, id).await,
            "pass" | "warn" | "fail" if !id.is_empty() => local::set(api, &request, verb, id).await,
            "update" if !id.is_empty() => local::update_check(api, &mut request, id).await,
            _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
        };
    }
    if let Some(arg) = path.strip_prefix("/v1/agent/join/") {
        allow(PUT_POST)?;
        return agent::join(api, arg).await;
    }
    if let Some(arg) = path.strip_prefix("/v1/agent/force-leave/") {
        allow(PUT_POST)?;
        return agent::force_leave(api, &request, arg).await;
    }
    match path.as_str() {
        "/v1/txn" => {
            allow(PUT_POST)?;
            ApiMetrics::count(&api.metrics.txn);
            txn::endpoint(api, &mut request).await
        }
        "/v1/snapshot" => snapshot::endpoint(api, &mut request).await,
        "/v1/status/leader" => {
            allow(GET)?;
            Ok(Reply::json(&api.store.leader().unwrap_or_default()))
        }
        "/v1/status/peers" => {
            allow(GET)?;
            Ok(Reply::json(&api.store.peers()))
        }
        "/v1/operator/raft/configuration" => {
            allow(GET)?;
            operator::configuration(api)
        }
        "/v1/operator/raft/peer" => {
            allow(&[Method::DELETE])?;
            operator::remove_peer(api, &request).await
        }
        "/v1/agent/self" => {
            allow(GET)?;
            Ok(agent::this(api))
        }
        "/v1/agent/services" => {
            allow(GET)?;
            local::services(api).await
        }
        "/v1/agent/checks" => {
            allow(GET)?;
            local::checks(api).await
        }
        "/v1/agent/maintenance" => {
            allow(PUT)?;
            local::node_maintenance(api, &request).await
        }
        "/v1/agent/members" => {
            allow(GET)?;
            Ok(agent::members(api))
        }
        "/v1/agent/leave" => {
            allow(PUT_POST)?;
            agent::leave(api).await
        }
        "/v1/agent/monitor" => {
            allow(GET)?;
            monitor::monitor(api, &request)
        }
        "/v1/agent/metrics" => {
            allow(GET)?;
            Ok(agent::metrics(api, &request))
        }
        "/" => Ok(Reply::raw("text/plain", "Consul Agent (consul-lite)")),
        _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
    }
}
