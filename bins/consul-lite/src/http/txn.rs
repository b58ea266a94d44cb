//! `/v1/txn`: KV operations applied all or none (Consul's `txn_endpoint.go`). Node, service
//! and check operations are not supported yet (400).

use hyper::StatusCode;
use serde_json::{json, Value};
use service_registry::{Command, Error as RegistryError, Outcome, TxnOp, MAX_VALUE_SIZE};

use super::json::{self, Fields};
use super::{Api, ApiError, ApiMetrics, ApiRequest, ApiResult, Reply};
use crate::store::StoreError;

/// Consul's `txn_max_req_len` default is 512 KiB; a value of 512 KiB encodes to about
/// 683 KiB of base64, so the body may be a little larger here.
const MAX_BODY: usize = 1024 * 1024;
/// Consul's limit on operations in one transaction.
const MAX_OPS: usize = 128;

pub(super) async fn endpoint(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.body(MAX_BODY).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("Failed to parse body: {error}")))?;
    let Value::Array(items) = value else {
        return Err(ApiError::bad_request("Failed to parse body: expected a JSON list of operations"));
    };
    if items.len() > MAX_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Transaction contains too many operations ({} > {MAX_OPS})", items.len()),
        ));
    }
    let mut ops = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match op(item)? {
            Ok(op) => ops.push(op),
            Err(what) => errors.push(json!({ "OpIndex": index, "What": what })),
        }
    }
    if !errors.is_empty() {
        return Ok(conflict(errors));
    }
    match api.store.write(Command::Txn(ops)).await {
        Ok(applied) => {
            let results: Vec<Value> = match &applied.outcome {
                Outcome::Txn(entries) => entries.iter().map(|entry| json!({ "KV": json::kv_entry(entry) })).collect(),
                _ => Vec::new(),
            };
            Ok(Reply::json(&json!({ "Results": results, "Errors": null })).meta(api, applied.index))
        }
        Err(StoreError::Refused(RegistryError::TxnFailed { errors })) => {
            Ok(conflict(errors.iter().map(|error| json!({ "OpIndex": error.op_index, "What": error.what })).collect()))
        }
        Err(StoreError::LockDelay { key, op_index, .. }) => {
            ApiMetrics::count(&api.metrics.lock_delay_refusals);
            Ok(conflict(vec![json!({
                "OpIndex": op_index.unwrap_or(0),
                "What": format!("failed to lock key {key:?} due to lock delay"),
            })]))
        }
        Err(error) => Err(error.into()),
    }
}

/// 409 with Consul's `{"Results": null, "Errors": [...]}`: nothing was applied.
fn conflict(errors: Vec<Value>) -> Reply {
    Reply::json(&json!({ "Results": null, "Errors": errors })).status(StatusCode::CONFLICT)
}

/// One operation: `Ok(Err(what))` for an operation Consul reports in `Errors` (an unknown
/// verb), `Err` for a request that cannot be read at all.
fn op(item: &Value) -> Result<Result<TxnOp, String>, ApiError> {
    let fields = Fields::of(item, "operation")?;
    let Some(kv) = fields.get("KV") else {
        let kind = match item {
            Value::Object(map) => map.keys().cloned().collect::<Vec<_>>().join(", "),
            _ => String::new(),
        };
        return Err(ApiError::bad_request(format!(
            "Failed to parse body: unsupported operation {kind:?}: only KV operations are implemented"
        )));
    };
    let kv = Fields::of(kv, "KV")?;
    let verb = kv.string("Verb")?.unwrap_or_default();
    let key = kv.string("Key")?.unwrap_or_default().to_owned();
    let value = kv.base64("Value")?.unwrap_or_default();
    if value.len() > MAX_VALUE_SIZE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Value for key {key:?} is too large ({} > {MAX_VALUE_SIZE} bytes)", value.len()),
        ));
    }
    let flags = kv.uint("Flags")?.unwrap_or(0);
    let index = kv.uint("Index")?.unwrap_or(0);
    let session = kv.string("Session")?.unwrap_or_default().to_owned();
    Ok(Ok(match verb {
        "set" => TxnOp::Set { key, value, flags },
        "cas" => TxnOp::Cas { key, value, flags, index },
        "lock" => TxnOp::Lock { key, value, flags, session },
        "unlock" => TxnOp::Unlock { key, value, flags, session },
        "get" => TxnOp::Get { key },
        "get-tree" => TxnOp::GetTree { prefix: key },
        "check-index" => TxnOp::CheckIndex { key, index },
        "check-session" => TxnOp::CheckSession { key, session },
        "check-not-exists" => TxnOp::CheckNotExists { key },
        "delete" => TxnOp::Delete { key },
        "delete-tree" => TxnOp::DeleteTree { prefix: key },
        "delete-cas" => TxnOp::DeleteCas { key, index },
        other => return Ok(Err(format!("unknown KV verb {other:?}"))),
    }))
}
