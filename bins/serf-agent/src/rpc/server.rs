//! The RPC server: HTTP/1.1 on the RPC address, served by the project's one HTTP layer
//! ([`http_serve`]: connection limits, idle eviction, header and write-stall timeouts). This file
//! is what the RPC adds: token auth, body limits, JSON errors, streaming bodies. What each route
//! does is in [`super::routes`], behind the [`Routes`] trait so that the transport is tested alone.
//!
//! ```text
//!  http_serve::serve (idle connections hold no slot; at the limit the longest idle is closed)
//!      request head ── auth (Bearer / X-Serf-Token), before any body ── body ≤ MAX_BODY in BODY_TIMEOUT
//!      ──► Routes::handle
//!      Reply::Json | Reply::Text ─► one body      Reply::Stream ─► NDJSON lines from a channel
//!  shutdown: stop accepting, let connections finish (streams end), cut them after a grace
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent_support::ChannelBody;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use http_serve::{BodyError, ServeConfig, ServeStats};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::api::ErrorBody;

/// Largest request body accepted; larger ones get 413.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// A request's body must arrive within this time once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, connections get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Content type of streamed responses: one JSON document per line.
pub(crate) const NDJSON: &str = "application/x-ndjson";
/// The header carrying the token, besides `Authorization: Bearer`.
pub(crate) const TOKEN_HEADER: &str = "x-serf-token";

/// The body of every response.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// A request, parsed: method, path, decoded query parameters (in order, repeats kept), body.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl ApiRequest {
    /// The first value of a query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every value of a query parameter.
    pub(crate) fn params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The body as JSON of type `T` (an empty body is `{}`); 400 naming the problem otherwise.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &self.body };
        serde_json::from_slice(body).map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }
}

/// What a route answers.
pub(crate) enum Reply {
    /// A JSON document.
    Json(StatusCode, Bytes),
    /// Text with a content type.
    Text(&'static str, String),
    /// NDJSON lines, sent as they come, until the channel closes.
    Stream(mpsc::Receiver<Bytes>),
}

impl Reply {
    /// 200 and `value` as JSON.
    pub(crate) fn json(value: &impl Serialize) -> Self {
        Self::Json(StatusCode::OK, Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
    }
}

/// An error answer: the status and `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    pub(crate) fn method_not_allowed(method: &Method, path: &str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} not allowed on {path}"))
    }
}

/// What the server serves.
pub(crate) trait Routes: Send + Sync + 'static {
    /// Answer one authenticated request.
    fn handle(&self, request: ApiRequest) -> impl Future<Output = Result<Reply, ApiError>> + Send;
}

/// Requests answered, by status code, and the connection counters (for the metrics).
#[derive(Debug, Default)]
pub(crate) struct RpcStats {
    by_status: Mutex<BTreeMap<u16, u64>>,
    /// The serving layer's counters: connections open, evicted, timed out.
    pub(crate) connections: Arc<ServeStats>,
}

impl RpcStats {
    fn count(&self, status: StatusCode) {
        *self.by_status.lock().unwrap_or_else(PoisonError::into_inner).entry(status.as_u16()).or_default() += 1;
    }

    /// Requests by status code.
    pub(crate) fn by_status(&self) -> BTreeMap<u16, u64> {
        self.by_status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Everything a connection needs.
struct Shared<R> {
    routes: Arc<R>,
    token: Option<String>,
    stats: Arc<RpcStats>,
}

/// Serve `routes` on `listener` until `shutdown` turns true. With `token`, every route but
/// `/v1/health` needs it.
pub(crate) async fn serve<R: Routes>(
    listener: TcpListener,
    routes: Arc<R>,
    token: Option<String>,
    stats: Arc<RpcStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::clone(&stats.connections);
    let shared = Arc::new(Shared { routes, token, stats });
    let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
        let shared = Arc::clone(&shared);
        async move { answer(&shared, request).await }
    });
    let config = ServeConfig { shutdown_grace: SHUTDOWN_GRACE, ..ServeConfig::default() };
    let stopped = async move { crate::agent::stopped(&mut shutdown).await };
    http_serve::serve(listener, app, config, connections, stopped).await;
}

/// One request to its response; never fails (errors are JSON responses).
async fn answer<R: Routes>(shared: &Shared<R>, request: Request<axum::body::Body>) -> Response<ResponseBody> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = match parse(shared, request).await {
        Ok(request) => match shared.routes.handle(request).await {
            Ok(reply) => into_response(reply),
            Err(error) => error_response(&error),
        },
        Err(error) => error_response(&error),
    };
    shared.stats.count(response.status());
    tracing::debug!(%method, %path, status = response.status().as_u16(), "rpc request");
    response
}

/// Authenticate, then read the body within the limit and decode the query string.
async fn parse<R>(shared: &Shared<R>, request: Request<axum::body::Body>) -> Result<ApiRequest, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if path != "/v1/health" {
        if let Some(expected) = &shared.token {
            check_token(&parts.headers, expected)?;
        }
    }
    let body = http_serve::read_body(body, MAX_BODY, BODY_TIMEOUT).await.map_err(|error| match error {
        BodyError::TooLarge { .. } => too_large(),
        BodyError::TimedOut { .. } => ApiError::new(StatusCode::REQUEST_TIMEOUT, error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    })?;
    let query = parts.uri.query().map(parse_query).unwrap_or_default();
    Ok(ApiRequest { method: parts.method, path, query, body })
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_BODY} bytes"))
}

/// 401 without a token, 403 with a wrong one.
fn check_token(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim);
    let header = headers.get(TOKEN_HEADER).and_then(|value| value.to_str().ok()).map(str::trim);
    match bearer.or(header) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this agent requires a token: send Authorization: Bearer TOKEN or X-Serf-Token (client: -rpc-auth or SERF_RPC_AUTH)",
        )),
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "invalid token")),
    }
}

/// Compare without leaking, through timing, how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (index, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(index % b.len().max(1)).copied().unwrap_or(0));
    }
    difference == 0
}

/// `a=1&b=x%20y&flag` → pairs, percent-decoded, `+` as space.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a query value (the client uses it).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn into_response(reply: Reply) -> Response<ResponseBody> {
    let (status, content_type, body) = match reply {
        Reply::Json(status, bytes) => (status, "application/json", Full::new(bytes).boxed()),
        Reply::Text(content_type, text) => (StatusCode::OK, content_type, Full::new(Bytes::from(text)).boxed()),
        Reply::Stream(lines) => (StatusCode::OK, NDJSON, ChannelBody::new(lines).boxed()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let body = serde_json::to_vec(&ErrorBody { error: error.message.clone() }).unwrap_or_default();
    let mut response = into_response(Reply::Json(error.status, Bytes::from(body)));
    *response.status_mut() = error.status;
    if error.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    response
}

/// One NDJSON line.
pub(crate) fn ndjson_line(value: &impl Serialize) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fake;

    impl Routes for Fake {
        async fn handle(&self, request: ApiRequest) -> Result<Reply, ApiError> {
            match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/v1/echo") => Ok(Reply::json(&serde_json::json!({"q": request.param("q")}))),
                ("POST", "/v1/len") => Ok(Reply::json(&serde_json::json!({"len": request.body.len()}))),
                ("GET", "/v1/stream") => {
                    let (lines, receiver) = mpsc::channel(4);
                    tokio::spawn(async move {
                        for index in 0..3 {
                            let _ = lines.send(ndjson_line(&serde_json::json!({ "n": index }))).await;
                        }
                    });
                    Ok(Reply::Stream(receiver))
                }
                ("GET", "/v1/health") => Ok(Reply::json(&serde_json::json!({"status": "ok"}))),
                _ => Err(ApiError::not_found(format!("no route {}", request.path))),
            }
        }
    }

    async fn start(token: Option<&str>) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(serve(listener, Arc::new(Fake), token.map(str::to_owned), Arc::default(), stopping));
        (addr, stop)
    }

    /// A raw HTTP/1.1 exchange with `Connection: close`: status and body.
    async fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(request.as_bytes()).await.unwrap();
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn routes_errors_and_streams() {
        let (addr, _stop) = start(None).await;
        let (status, body) = exchange(addr, "GET /v1/echo?q=a%20b+c HTTP/1.1", b"").await;
        assert_eq!((status, body.as_str()), (200, r#"{"q":"a b c"}"#));
        let (status, body) = exchange(addr, "GET /v1/nope HTTP/1.1", b"").await;
        assert_eq!((status, body.as_str()), (404, r#"{"error":"no route /v1/nope"}"#));
        let (status, body) = exchange(addr, "POST /v1/len HTTP/1.1", &vec![b'x'; MAX_BODY + 1]).await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("larger than"), "{body}");
        let (status, body) = exchange(addr, "GET /v1/stream HTTP/1.1", b"").await;
        assert_eq!(status, 200);
        for index in 0..3 {
            assert!(body.contains(&format!("{{\"n\":{index}}}\n")), "{body}");
        }
    }

    #[tokio::test]
    async fn tokens_are_checked() {
        let (addr, _stop) = start(Some("s3cret")).await;
        let (status, body) = exchange(addr, "GET /v1/echo HTTP/1.1", b"").await;
        assert_eq!(status, 401, "{body}");
        assert!(body.starts_with("{\"error\":"), "{body}");
        let (status, _) = exchange(addr, "GET /v1/echo HTTP/1.1\r\nAuthorization: Bearer wrong", b"").await;
        assert_eq!(status, 403);
        let (status, _) = exchange(addr, "GET /v1/echo HTTP/1.1\r\nAuthorization: Bearer s3cret", b"").await;
        assert_eq!(status, 200);
        let (status, _) = exchange(addr, "GET /v1/echo HTTP/1.1\r\nX-Serf-Token: s3cret", b"").await;
        assert_eq!(status, 200);
        let (status, _) = exchange(addr, "GET /v1/health HTTP/1.1", b"").await;
        assert_eq!(status, 200);
    }

    #[test]
    fn query_strings_decode() {
        let pairs = parse_query("tag=role%3Dprimary&tag=dc%3D.*&detailed&bad=%zz&end=%4");
        assert_eq!(pairs[0], ("tag".into(), "role=primary".into()));
        assert_eq!(pairs[1], ("tag".into(), "dc=.*".into()));
        assert_eq!(pairs[2], ("detailed".into(), String::new()));
        assert_eq!(pairs[3], ("bad".into(), "%zz".into()));
        assert_eq!(pairs[4], ("end".into(), "%4".into()));
        assert_eq!(percent_decode(&percent_encode("a b=c/é")), "a b=c/é");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
