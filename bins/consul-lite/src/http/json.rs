//! JSON in Consul's shapes: request fields matched in any letter case (as Go's decoder does:
//! an exact match first, then a case-insensitive one), and the response rows.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use service_registry::{KvEntry, Session, SessionBehavior};

use super::ApiError;

/// A JSON object of a request, read field by field, case-insensitively.
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    /// Where this object is, for messages (`"KV"`, `"session"`).
    context: &'a str,
}

impl<'a> Fields<'a> {
    /// The object in `value`, or a 400 naming `context`.
    pub(crate) fn of(value: &'a Value, context: &'a str) -> Result<Self, ApiError> {
        match value {
            Value::Object(object) => Ok(Self { object, context }),
            other => Err(ApiError::bad_request(format!(
                "Request decode failed: {context}: expected a JSON object, got {}",
                kind(other)
            ))),
        }
    }

    /// The field `name` (exact case first, then any case); `null` counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.object
            .get(name)
            .or_else(|| self.object.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value))
            .filter(|value| !value.is_null())
    }

    fn invalid(&self, name: &str, expected: &str, got: &Value) -> ApiError {
        ApiError::bad_request(format!(
            "Request decode failed: {}.{name}: expected {expected}, got {}",
            self.context,
            kind(got)
        ))
    }

    /// A string field.
    pub(crate) fn string(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(self.invalid(name, "a string", other)),
        }
    }

    /// An unsigned integer field.
    pub(crate) fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| self.invalid(name, "an unsigned integer", value)),
        }
    }

    /// A list of strings.
    pub(crate) fn strings(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| self.invalid(name, "a list of strings", item))
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(self.invalid(name, "a list of strings", other)),
        }
    }

    /// A list of IDs given as strings or as objects with an `ID` (Consul's `ServiceChecks`).
    pub(crate) fn ids(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(id) => Ok(id.clone()),
                    Value::Object(_) => Fields::of(item, name)?
                        .string("ID")?
                        .map(str::to_owned)
                        .ok_or_else(|| self.invalid(name, "objects with an ID", item)),
                    other => Err(self.invalid(name, "a list of IDs", other)),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(self.invalid(name, "a list", other)),
        }
    }

    /// A base64 value (`[]byte` in Go).
    pub(crate) fn base64(&self, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
        match self.string(name)? {
            None => Ok(None),
            Some(text) => base64::engine::general_purpose::STANDARD.decode(text).map(Some).map_err(|error| {
                ApiError::bad_request(format!("Request decode failed: {}.{name}: not base64: {error}", self.context))
            }),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as Go encodes a `[]byte`: base64, or `null` when empty.
pub(crate) fn bytes(value: &[u8]) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(value))
    }
}

/// A KV row (Consul's `DirEntry`): `Session` only when held.
pub(crate) fn kv_entry(entry: &KvEntry) -> Value {
    let mut row = json!({
        "LockIndex": entry.lock_index,
        "Key": entry.key,
        "Flags": entry.flags,
        "Value": bytes(&entry.value),
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    });
    if let (Some(session), Value::Object(map)) = (&entry.session, &mut row) {
        map.insert("Session".into(), Value::String(session.clone()));
    }
    row
}

/// A session (Consul's `structs.Session`): `LockDelay` in nanoseconds, `TTL` as a Go
/// duration string (`""` for none), `Checks` the union of node and service checks (older
/// clients read it).
pub(crate) fn session(session: &Session) -> Value {
    let service_checks: Value = if session.service_checks.is_empty() {
        Value::Null
    } else {
        session.service_checks.iter().map(|id| json!({ "ID": id, "Namespace": "" })).collect()
    };
    json!({
        "ID": session.id,
        "Name": session.name,
        "Node": session.node,
        "LockDelay": u64::try_from(session.lock_delay.as_nanos()).unwrap_or(u64::MAX),
        "Behavior": match session.behavior {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        },
        "TTL": session.ttl.map(crate::duration::format).unwrap_or_default(),
        "Checks": session.check_ids().collect::<Vec<_>>(),
        "NodeChecks": session.node_checks,
        "ServiceChecks": service_checks,
        "CreateIndex": session.create_index,
        "ModifyIndex": session.modify_index,
    })
}
