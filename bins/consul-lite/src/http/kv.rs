//! `/v1/kv/<key>`: Consul's `KVSEndpoint` (GET with `recurse`, `keys`, `separator`, `raw`;
//! PUT with `cas`, `flags`, `acquire`, `release`; DELETE with `recurse`, `cas`).

use hyper::{Method, StatusCode};
use serde_json::Value;
use service_registry::{Command, KvOp, Outcome, WatchTarget, MAX_VALUE_SIZE};

use super::query::ReadOptions;
use super::{json, Api, ApiError, ApiMetrics, ApiRequest, ApiResult, Reply};
use crate::store::StoreError;

pub(super) async fn endpoint(api: &Api, request: &mut ApiRequest, key: &str) -> ApiResult {
    match request.method {
        Method::GET if request.query.has("keys") => keys(api, request, key).await,
        Method::GET => get(api, request, key).await,
        Method::PUT => put(api, request, key).await,
        Method::DELETE => delete(api, request, key).await,
        ref other => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {other} not allowed (allowed: GET, PUT, DELETE)"),
        )),
    }
}

async fn get(api: &Api, request: &ApiRequest, key: &str) -> ApiResult {
    let recurse = request.query.has("recurse");
    if !recurse && key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let target = if recurse { WatchTarget::Prefix(key.to_owned()) } else { WatchTarget::Key(key.to_owned()) };
    ReadOptions::parse_and_block(api, &request.query, &target).await?;
    let (index, rows, raw) = {
        let registry = api.store.read();
        let index = registry.index(&target);
        if recurse {
            let rows: Vec<Value> = registry.kv_list(key).map(json::kv_entry).collect();
            (index, rows, None)
        } else {
            let entry = registry.kv_get(key);
            (index, entry.map(json::kv_entry).into_iter().collect(), entry.map(|e| e.value.clone()))
        }
    };
    if rows.is_empty() {
        return Ok(Reply::not_found(api, index));
    }
    if let (Some(value), true) = (raw, request.query.has("raw")) {
        return Ok(Reply::raw("text/plain", value)
            .header("x-content-type-options", "nosniff")
            .header("content-security-policy", "sandbox")
            .meta(api, index));
    }
    Ok(Reply::json(&rows).meta(api, index))
}

async fn keys(api: &Api, request: &ApiRequest, prefix: &str) -> ApiResult {
    // Consul reads both spellings, the historic one first.
    let separator = request.query.get("separator").or_else(|| request.query.get("seperator")).unwrap_or("");
    let target = WatchTarget::Prefix(prefix.to_owned());
    ReadOptions::parse_and_block(api, &request.query, &target).await?;
    let (index, keys) = {
        let registry = api.store.read();
        (registry.index(&target), registry.kv_keys(prefix, separator))
    };
    if keys.is_empty() && !prefix.is_empty() {
        return Ok(Reply::not_found(api, index));
    }
    Ok(Reply::json(&keys).meta(api, index))
}

/// Consul's "Conflicting flags" check: at most one of `flags` may be present.
fn conflicting(request: &ApiRequest, flags: &[&str]) -> Result<(), ApiError> {
    if flags.iter().filter(|flag| request.query.has(flag)).count() > 1 {
        return Err(ApiError::bad_request(format!("Conflicting flags: {}", request.query.encode())));
    }
    Ok(())
}

async fn put(api: &Api, request: &mut ApiRequest, key: &str) -> ApiResult {
    if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    conflicting(request, &["cas", "acquire", "release"])?;
    let flags = request.query.uint("flags")?.unwrap_or(0);
    let cas = request.query.uint("cas")?;
    let acquire = request.query.get("acquire").map(str::to_owned);
    let release = request.query.get("release").map(str::to_owned);
    let value = request.body(MAX_VALUE_SIZE).await.map_err(|error| {
        if error.status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large, max size: {MAX_VALUE_SIZE} bytes (the value of key {key:?})"),
            )
        } else {
            error
        }
    })?;
    let key = key.to_owned();
    let value = value.to_vec();
    let (op, plain_set) = match (cas, acquire, release) {
        (Some(index), _, _) => (KvOp::Cas { key, value, flags, index }, false),
        (_, Some(session), _) => (KvOp::Acquire { key, value, flags, session: non_empty(session, "acquire")? }, false),
        (_, _, Some(session)) => (KvOp::Release { key, value, flags, session: non_empty(session, "release")? }, false),
        _ => (KvOp::Set { key, value, flags }, true),
    };
    match api.store.write(Command::Kv(op)).await {
        Ok(applied) => Ok(Reply::json(&(plain_set || applied.outcome.is_done()))),
        // Consul's leader answers false to an acquire inside the lock-delay window.
        Err(StoreError::LockDelay { key, remaining, .. }) => {
            ApiMetrics::count(&api.metrics.lock_delay_refusals);
            tracing::info!(%key, ?remaining, "refusing an acquire inside the key's lock-delay");
            Ok(Reply::json(&false))
        }
        Err(error) => Err(error.into()),
    }
}

fn non_empty(session: String, parameter: &str) -> Result<String, ApiError> {
    if session.is_empty() {
        return Err(ApiError::bad_request(format!("Missing session in ?{parameter}")));
    }
    Ok(session)
}

async fn delete(api: &Api, request: &ApiRequest, key: &str) -> ApiResult {
    conflicting(request, &["recurse", "cas"])?;
    let recurse = request.query.has("recurse");
    if !recurse && key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let cas = request.query.uint("cas")?;
    let key = key.to_owned();
    let op = match cas {
        Some(index) => KvOp::DeleteCas { key, index },
        None if recurse => KvOp::DeleteTree { prefix: key },
        None => KvOp::Delete { key },
    };
    let applied = api.store.write(Command::Kv(op)).await?;
    Ok(Reply::json(&!matches!(applied.outcome, Outcome::Declined(_))))
}
