//! `/v1/agent/service*` and `/v1/agent/check*`: this agent's own services and checks
//! ([`crate::local::LocalAgent`]), in Consul's shapes (`agent/agent_endpoint.go`). Only TTL
//! checks are implemented: another kind is a 400 `not implemented yet: <kind> checks`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use service_registry::{CheckRegistration, HealthStatus, ServiceRegistration};

use super::json::Fields;
use super::register::{field, service_registration, status};
use super::{Api, ApiError, ApiRequest, ApiResult, Reply};
use crate::local::LocalCheck;

/// Consul keeps at most this much of a check's output (`DefaultBufSize`).
const MAX_OUTPUT: usize = 4 * 1024;

/// Check kinds Consul has and this version does not run, by the field that selects them.
const OTHER_KINDS: &[(&str, &str)] = &[
    ("HTTP", "http"),
    ("TCP", "tcp"),
    ("UDP", "udp"),
    ("Args", "script"),
    ("ScriptArgs", "script"),
    ("Script", "script"),
    ("GRPC", "grpc"),
    ("H2PING", "h2ping"),
    ("DockerContainerID", "docker"),
    ("AliasService", "alias"),
    ("AliasNode", "alias"),
    ("OSService", "os_service"),
];

fn string(fields: &Fields<'_>, name: &str) -> Result<String, ApiError> {
    Ok(fields.string(name)?.unwrap_or("").to_owned())
}

/// A check definition (Consul's `CheckType` / `CheckDefinition`): a TTL check, or a 400.
/// `default_id` and `default_name` apply when the definition has none.
fn check(
    value: &Value,
    what: &str,
    default_id: Option<String>,
    default_name: Option<String>,
) -> Result<LocalCheck, ApiError> {
    let fields = Fields::of(value, what)?;
    for (name, kind) in OTHER_KINDS {
        if fields.get(name).is_some_and(|v| v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(ApiError::bad_request(format!("Invalid {what}.{name}: not implemented yet: {kind} checks")));
        }
    }
    let ttl = match fields.string("TTL")? {
        None | Some("") => {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}: a TTL is required (TTL checks are the only kind implemented)"
            )))
        }
        Some(text) => crate::duration::parse(text).ok().filter(|ttl| !ttl.is_zero()).ok_or_else(|| {
            ApiError::bad_request(format!("Invalid {what}.TTL {text:?}: expected a duration above 0"))
        })?,
    };
    let id = fields.string("CheckID")?.or(fields.string("ID")?).filter(|id| !id.is_empty()).map(str::to_owned);
    let name = fields.string("Name")?.filter(|name| !name.is_empty()).map(str::to_owned);
    let name = name
        .or(default_name)
        .ok_or_else(|| ApiError::bad_request(format!("Missing {what}.Name: missing check name")))?;
    let check = CheckRegistration {
        check_id: id.or(default_id).unwrap_or_else(|| name.clone()),
        name,
        status: status(fields.string("Status")?, HealthStatus::Critical, what)?,
        notes: string(&fields, "Notes")?,
        output: String::new(),
        service_id: match field(&fields, "ServiceID", "service_id") {
            None => String::new(),
            Some(Value::String(id)) => id.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "Request decode failed: {what}.ServiceID: expected a string"
                )))
            }
        },
        check_type: "ttl".into(),
    };
    Ok(LocalCheck::new(check, ttl))
}

fn service_json(api: &Api, service: &ServiceRegistration) -> Value {
    let (passing, warning) = service.weights.map_or((1, 1), |w| (w.passing, w.warning));
    json!({
        "ID": service.id,
        "Service": service.service,
        "Tags": service.tags,
        "Meta": service.meta,
        "Port": service.port,
        "Address": service.address,
        "Weights": { "Passing": passing, "Warning": warning },
        "EnableTagOverride": service.enable_tag_override,
        "Datacenter": api.info.datacenter,
    })
}

fn check_json(api: &Api, services: &BTreeMap<String, ServiceRegistration>, local: &LocalCheck) -> Value {
    let check = &local.check;
    let service = services.get(&check.service_id);
    json!({
        "Node": api.info.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status.as_str(),
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": service.map(|s| s.service.as_str()).unwrap_or(""),
        "ServiceTags": service.map(|s| s.tags.clone()).unwrap_or_default(),
        "Type": "ttl",
        "Definition": { "TTL": crate::duration::format(local.ttl) },
        "CreateIndex": 0,
        "ModifyIndex": 0,
    })
}

/// `PUT /v1/agent/service/register`: the service and its checks (`Check`, `Checks`);
/// an empty 200 once written to the catalog.
pub(super) async fn register_service(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let fields = Fields::of(&body, "service")?;
    let name = string(&fields, "Name")?;
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let id = fields.string("ID")?.filter(|id| !id.is_empty()).unwrap_or(&name).to_owned();
    let service = service_registration(&fields, id.clone(), name.clone(), "", "service")?;
    if matches!(service.address.parse::<std::net::IpAddr>(), Ok(ip) if ip.is_unspecified()) {
        return Err(ApiError::bad_request("Invalid service address"));
    }
    let mut definitions = Vec::new();
    if let Some(value) = fields.get("Check") {
        definitions.push(("Check".to_owned(), value));
    }
    match fields.get("Checks") {
        None => {}
        Some(Value::Array(items)) => {
            definitions.extend(items.iter().enumerate().map(|(i, v)| (format!("Checks[{i}]"), v)))
        }
        Some(_) => return Err(ApiError::bad_request("Request decode failed: Checks: expected a list")),
    }
    let many = definitions.len() > 1;
    let mut checks = Vec::new();
    for (i, (what, value)) in definitions.into_iter().enumerate() {
        let default_id = if many { format!("service:{id}:{}", i + 1) } else { format!("service:{id}") };
        let mut local = check(value, &what, Some(default_id), Some(format!("Service '{name}' check")))?;
        local.check.service_id.clone_from(&id);
        checks.push(local);
    }
    api.local.register_service(service, checks).await?;
    Ok(Reply::empty())
}

/// `PUT /v1/agent/service/deregister/:id`: 404 for a service this agent does not have.
pub(super) async fn deregister_service(api: &Api, id: &str) -> ApiResult {
    if api.local.deregister_service(id).await? {
        Ok(Reply::empty())
    } else {
        Err(ApiError::not_found(format!("Unknown service {id:?}")))
    }
}

/// `GET /v1/agent/services`: this agent's services by ID.
pub(super) async fn services(api: &Api) -> ApiResult {
    let services = api.local.services().await;
    let map: Map<String, Value> = services.iter().map(|(id, s)| (id.clone(), service_json(api, s))).collect();
    Ok(Reply::json(&map))
}

/// `GET /v1/agent/service/:id`: 404 for a service this agent does not have.
pub(super) async fn service(api: &Api, id: &str) -> ApiResult {
    let services = api.local.services().await;
    let service = services.get(id).ok_or_else(|| ApiError::not_found(format!("unknown service ID: {id}")))?;
    Ok(Reply::json(&service_json(api, service)))
}

/// `GET /v1/agent/checks`: this agent's checks by ID.
pub(super) async fn checks(api: &Api) -> ApiResult {
    let services = api.local.services().await;
    let checks = api.local.checks().await;
    let map: Map<String, Value> = checks.iter().map(|(id, c)| (id.clone(), check_json(api, &services, c))).collect();
    Ok(Reply::json(&map))
}

/// `PUT /v1/agent/check/register`: a TTL check, on this node or on one of this agent's
/// services (`ServiceID`).
pub(super) async fn register_check(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let local = check(&body, "check", None, None)?;
    if !local.check.service_id.is_empty() && !api.local.has_service(&local.check.service_id).await {
        return Err(ApiError::bad_request(format!(
            "Invalid ServiceID {:?}: no such service on this agent",
            local.check.service_id
        )));
    }
    api.local.register_check(local).await?;
    Ok(Reply::empty())
}

/// Consul's output buffer: at most [`MAX_OUTPUT`] bytes, cut at a character boundary.
fn truncate(output: &str) -> String {
    if output.len() <= MAX_OUTPUT {
        return output.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... (captured {} of {} bytes)", &output[..end], end, output.len())
}

async fn update(api: &Api, id: &str, status: HealthStatus, output: &str) -> ApiResult {
    if api.local.update_check(id, status, &truncate(output)).await? {
        Ok(Reply::empty())
    } else {
        Err(ApiError::not_found(format!("Unknown check {id:?}")))
    }
}

/// `PUT /v1/agent/check/pass|warn|fail/:id?note=`: the status, the note as output.
pub(super) async fn set(api: &Api, request: &ApiRequest, verb: &str, id: &str) -> ApiResult {
    let status = match verb {
        "pass" => HealthStatus::Passing,
        "warn" => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    };
    update(api, id, status, request.query.get("note").unwrap_or("")).await
}

/// `PUT /v1/agent/check/update/:id` with `{"Status", "Output"}`.
pub(super) async fn update_check(api: &Api, request: &mut ApiRequest, id: &str) -> ApiResult {
    let body = request.json_body().await?.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let fields = Fields::of(&body, "update")?;
    let status = match fields.string("Status")?.unwrap_or("") {
        "passing" => HealthStatus::Passing,
        "warning" => HealthStatus::Warning,
        "critical" => HealthStatus::Critical,
        other => return Err(ApiError::bad_request(format!("Invalid check status: '{other}'"))),
    };
    update(api, id, status, fields.string("Output")?.unwrap_or("")).await
}

/// `PUT /v1/agent/check/deregister/:id`: 404 for a check this agent does not have.
pub(super) async fn deregister_check(api: &Api, id: &str) -> ApiResult {
    if api.local.deregister_check(id).await? {
        Ok(Reply::empty())
    } else {
        Err(ApiError::not_found(format!("Unknown check {id:?}")))
    }
}
