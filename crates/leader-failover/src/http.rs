//! The primary's web service: a health check that says whether this node is primary.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::http::{Method, Uri};
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{PrimaryView, Role};

/// Limits of [`serve_primary_http_with`]: the project's one HTTP serving layer
/// ([`http_serve::ServeConfig`]). The defaults: 4096 connections at once, idle ones closed to make
/// room for a new client at the limit; request head within 10 s; a client that stops reading cut
/// after 30 s; 5 s of shutdown grace.
pub type PrimaryHttpConfig = http_serve::ServeConfig;

/// Serves the primary web service on `listener` until `shutdown` completes, with the default
/// [`PrimaryHttpConfig`].
///
/// - `GET /` → `200 primary: NODE` while this node is primary, `503 not primary; primary: X`
///   (or `503 no primary`) otherwise: point a load balancer's health check here. When the view
///   has a [`fencing_token`](PrimaryView::fencing_token), the 200 carries it in the
///   `X-Fencing-Token` header; past the view's [`valid_until`](PrimaryView::valid_until) the
///   answer is 503 even if the view still says primary (the driver has not confirmed the role in
///   time).
/// - `GET /primary` → `200` and the view as JSON:
///   `{"node":"node2","primary":"node1","since":1763750000000,"eligible":["node1","node2"],"local_role":"standby"}`
///   (`since`: the claim time in unix milliseconds, or `null`; `fencing_token` added when the
///   view has one).
/// - other paths → `404 {"error":"not found","path":"/x"}`; other methods on these paths → `405`.
///
/// `view` is read on every request; `local` is this node's name. Clients that connect and send
/// nothing cannot lock the service out: they hold a file descriptor each, not a serving slot, and
/// are closed to make room at the connection limit (see [`http_serve`]). On shutdown the
/// listener is closed, open connections finish their current request (up to
/// [`shutdown_grace`](PrimaryHttpConfig::shutdown_grace)) and the function returns.
pub async fn serve_primary_http(
    listener: TcpListener,
    view: watch::Receiver<PrimaryView>,
    local: String,
    shutdown: impl Future<Output = ()>,
) {
    serve_primary_http_with(listener, view, local, shutdown, PrimaryHttpConfig::default()).await;
}

/// As [`serve_primary_http`], with explicit limits.
pub async fn serve_primary_http_with(
    listener: TcpListener,
    view: watch::Receiver<PrimaryView>,
    local: String,
    shutdown: impl Future<Output = ()>,
    config: PrimaryHttpConfig,
) {
    let local: Arc<str> = local.into();
    let app = Router::new().fallback(move |method: Method, uri: Uri| {
        let response = respond(&method, uri.path(), &view.borrow(), &local, Instant::now());
        async move { response }
    });
    http_serve::serve(listener, app, config, Arc::default(), shutdown).await;
}

#[derive(Serialize)]
struct PrimaryJson<'a> {
    node: &'a str,
    primary: Option<&'a str>,
    since: Option<u64>,
    eligible: &'a [String],
    local_role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<u64>,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    path: &'a str,
}

/// The header carrying the primary's fencing token on `GET /`.
pub const FENCING_TOKEN_HEADER: &str = "x-fencing-token";

fn respond(method: &Method, path: &str, view: &PrimaryView, local: &str, now: Instant) -> Response<Full<Bytes>> {
    if !matches!(path, "/" | "/primary") {
        return json(StatusCode::NOT_FOUND, &ErrorJson { error: "not found", path });
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = json(StatusCode::METHOD_NOT_ALLOWED, &ErrorJson { error: "method not allowed", path });
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/primary" {
        let since = view.since.and_then(|since| since.duration_since(UNIX_EPOCH).ok()).map(unix_ms);
        let body = PrimaryJson {
            node: local,
            primary: view.primary.as_deref(),
            since,
            eligible: &view.eligible,
            local_role: view.local_role.as_str(),
            fencing_token: view.fencing_token,
        };
        return json(StatusCode::OK, &body);
    }
    let expired = view.valid_until.is_some_and(|until| now >= until);
    match (view.local_role, view.primary.as_deref()) {
        (Role::Primary, _) if expired => {
            text(StatusCode::SERVICE_UNAVAILABLE, "primary role not confirmed in time\n".to_owned())
        }
        (Role::Primary, _) => {
            let mut response = text(StatusCode::OK, format!("primary: {local}\n"));
            if let Some(token) = view.fencing_token {
                response.headers_mut().insert(FENCING_TOKEN_HEADER, HeaderValue::from(token));
            }
            response
        }
        (_, Some(primary)) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not primary; primary: {primary}\n")),
        (_, None) => text(StatusCode::SERVICE_UNAVAILABLE, "no primary\n".to_owned()),
    }
}

fn unix_ms(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", Bytes::from(body))
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            response(status, "application/json", Bytes::from(bytes))
        }
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the response: {error}\n")),
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A health check must never be answered from a cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(primary: Option<&str>, local_role: Role) -> PrimaryView {
        PrimaryView {
            primary: primary.map(str::to_owned),
            since: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            eligible: vec!["node1".into(), "node2".into()],
            local_role,
            fencing_token: Some(42),
            valid_until: None,
        }
    }

    fn body(response: &Response<Full<Bytes>>) -> String {
        format!("{:?}", response.body())
    }

    #[test]
    fn status_page_follows_the_local_role() {
        let r = respond(&Method::GET, "/", &view(Some("node1"), Role::Primary), "node1", Instant::now());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[FENCING_TOKEN_HEADER], "42");
        let r = respond(&Method::GET, "/", &view(Some("node1"), Role::Standby), "node2", Instant::now());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = respond(&Method::GET, "/", &view(None, Role::Ineligible), "node3", Instant::now());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn an_unconfirmed_primary_answers_503() {
        let now = Instant::now();
        let mut primary = view(Some("node1"), Role::Primary);
        primary.valid_until = Some(now + Duration::from_millis(1));
        assert_eq!(respond(&Method::GET, "/", &primary, "node1", now).status(), StatusCode::OK);
        let later = now + Duration::from_millis(1);
        assert_eq!(respond(&Method::GET, "/", &primary, "node1", later).status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn wrong_method_and_path() {
        let r = respond(&Method::POST, "/", &view(None, Role::Standby), "n", Instant::now());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        let r = respond(&Method::GET, "/nope", &view(None, Role::Standby), "n", Instant::now());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(body(&r).contains("not found"));
    }
}
