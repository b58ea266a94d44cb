//! `/v1/session/*`: create, destroy, renew, info, node, list (Consul's `session_endpoint.go`).

use std::time::Duration;

use serde_json::{json, Value};
use service_registry::{Command, SessionBehavior, SessionSpec, Topic, WatchTarget, MAX_LOCK_DELAY, SERF_HEALTH_CHECK};

use super::json::Fields;
use super::query::ReadOptions;
use super::{json, Api, ApiError, ApiRequest, ApiResult, Reply};

/// Consul's bounds on a session TTL.
const MIN_TTL: Duration = Duration::from_secs(10);
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// A numeric `LockDelay` below this is in seconds, else in nanoseconds (Consul's
/// `lockDelayMinThreshold`).
const LOCK_DELAY_SECONDS_BELOW: f64 = 1000.0;

pub(super) async fn create(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?;
    let spec = spec(api, body.as_ref())?;
    let id = spec.id.clone();
    let _applied = api.store.write(Command::SessionCreate(spec)).await?;
    Ok(Reply::json(&json!({ "ID": id })))
}

/// The session to create from the request body, with Consul's defaults: this node, lock-delay
/// 15 s, behavior release, no TTL, node checks `["serfHealth"]`.
fn spec(api: &Api, body: Option<&Value>) -> Result<SessionSpec, ApiError> {
    let mut spec = SessionSpec::new(crate::agent::uuid(), api.info.node.clone());
    let Some(body) = body else { return Ok(spec) };
    let fields = Fields::of(body, "session")?;
    if let Some(name) = fields.string("Name")? {
        spec.name = name.to_owned();
    }
    if let Some(node) = fields.string("Node")?.filter(|node| !node.is_empty()) {
        spec.node = node.to_owned();
    }
    if let Some(delay) = fields.get("LockDelay") {
        spec.lock_delay = lock_delay(delay)?.min(MAX_LOCK_DELAY);
    }
    if let Some(behavior) = fields.string("Behavior")? {
        spec.behavior = match behavior {
            "" | "release" => SessionBehavior::Release,
            "delete" => SessionBehavior::Delete,
            other => return Err(ApiError::bad_request(format!("Invalid Behavior setting '{other}'"))),
        };
    }
    if let Some(ttl) = fields.string("TTL")? {
        spec.ttl = parse_ttl(ttl)?;
    }
    // NodeChecks wins; the older Checks stands for node checks when NodeChecks is absent;
    // with neither (nor ServiceChecks), the session depends on serfHealth.
    let node_checks = fields.strings("NodeChecks")?;
    let checks = fields.strings("Checks")?;
    let service_checks = fields.ids("ServiceChecks")?;
    match (node_checks, checks) {
        (Some(node_checks), _) | (None, Some(node_checks)) => spec.node_checks = node_checks,
        (None, None) if service_checks.is_some() => spec.node_checks = Vec::new(),
        (None, None) => spec.node_checks = vec![SERF_HEALTH_CHECK.to_owned()],
    }
    spec.service_checks = service_checks.unwrap_or_default();
    Ok(spec)
}

/// `LockDelay` as Consul reads it: a Go duration string, or a number (seconds below 1000,
/// nanoseconds from there).
fn lock_delay(value: &Value) -> Result<Duration, ApiError> {
    let invalid = |why: String| ApiError::bad_request(format!("Request decode failed: session.LockDelay: {why}"));
    match value {
        Value::String(text) => crate::duration::parse(text).map_err(invalid),
        Value::Number(number) => {
            let number =
                number.as_f64().filter(|n| *n >= 0.0).ok_or_else(|| invalid(format!("{number} is negative")))?;
            Ok(if number < LOCK_DELAY_SECONDS_BELOW {
                Duration::from_secs_f64(number)
            } else {
                Duration::from_nanos(number as u64)
            })
        }
        other => Err(invalid(format!("expected a duration, got {other}"))),
    }
}

/// `TTL`: empty or `"0s"` for none, else between 10 s and 24 h (Consul's rule and message).
fn parse_ttl(text: &str) -> Result<Option<Duration>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    let ttl = crate::duration::parse(text)
        .map_err(|error| ApiError::bad_request(format!("Request decode failed: session.TTL: {error}")))?;
    if ttl.is_zero() {
        return Ok(None);
    }
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "Invalid Session TTL '{text}', must be between [{}={}]",
            crate::duration::format(MIN_TTL),
            crate::duration::format(MAX_TTL)
        )));
    }
    Ok(Some(ttl))
}

fn required<'a>(id: &'a str, what: &str) -> Result<&'a str, ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request(format!("Missing {what}")));
    }
    Ok(id)
}

pub(super) async fn destroy(api: &Api, _request: &ApiRequest, id: &str) -> ApiResult {
    let id = required(id, "session")?;
    let _applied = api.store.write(Command::SessionDestroy { id: id.to_owned() }).await?;
    Ok(Reply::json(&true))
}

pub(super) async fn renew(api: &Api, _request: &ApiRequest, id: &str) -> ApiResult {
    let id = required(id, "session")?;
    match api.store.renew_session(id).await? {
        Some(session) => {
            let index = api.store.read().index(&WatchTarget::Topic(Topic::Session(id.to_owned())));
            Ok(Reply::json(&[json::session(&session)]).meta(api, index))
        }
        None => Err(ApiError::not_found(format!("Session id '{id}' not found"))),
    }
}

pub(super) async fn info(api: &Api, request: &ApiRequest, id: &str) -> ApiResult {
    let id = required(id, "session")?;
    let target = WatchTarget::Topic(Topic::Session(id.to_owned()));
    ReadOptions::parse_and_block(api, &request.query, &target).await?;
    let registry = api.store.read();
    let rows: Vec<Value> = registry.session(id).map(json::session).into_iter().collect();
    Ok(Reply::json(&rows).meta(api, registry.index(&target)))
}

pub(super) async fn node(api: &Api, request: &ApiRequest, node: &str) -> ApiResult {
    let node = required(node, "node name")?;
    let target = WatchTarget::Topic(Topic::NodeSessions(node.to_owned()));
    ReadOptions::parse_and_block(api, &request.query, &target).await?;
    let registry = api.store.read();
    let rows: Vec<Value> = registry.node_sessions(node).map(json::session).collect();
    Ok(Reply::json(&rows).meta(api, registry.index(&target)))
}

pub(super) async fn list(api: &Api, request: &ApiRequest) -> ApiResult {
    let target = WatchTarget::Topic(Topic::Sessions);
    ReadOptions::parse_and_block(api, &request.query, &target).await?;
    let registry = api.store.read();
    let rows: Vec<Value> = registry.sessions().map(json::session).collect();
    Ok(Reply::json(&rows).meta(api, registry.index(&target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_delay_numbers_below_1000_are_seconds() {
        assert_eq!(lock_delay(&json!(15)).unwrap(), Duration::from_secs(15));
        assert_eq!(lock_delay(&json!(15_000_000_000u64)).unwrap(), Duration::from_secs(15));
        assert_eq!(lock_delay(&json!("1m")).unwrap(), Duration::from_secs(60));
        assert!(lock_delay(&json!(true)).is_err());
    }

    #[test]
    fn ttls_follow_consuls_bounds() {
        assert_eq!(parse_ttl("").unwrap(), None);
        assert_eq!(parse_ttl("0s").unwrap(), None);
        assert_eq!(parse_ttl("15s").unwrap(), Some(Duration::from_secs(15)));
        assert_eq!(parse_ttl("5s").unwrap_err().message, "Invalid Session TTL '5s', must be between [10s=24h0m0s]");
        assert!(parse_ttl("25h").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
