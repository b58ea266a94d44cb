//! `PUT /v1/catalog/register` and `PUT /v1/catalog/deregister` (Consul's
//! `agent/catalog_endpoint.go` and the server's `Catalog.Register` / `Catalog.Deregister`
//! checks), and the request parsing the agent endpoints share: services, checks, string maps
//! and statuses, with JSON keys in any letter case (and Consul's snake_case aliases).
//!
//! Every check happens before the write: a bad request is a 400 naming the field and nothing
//! is written.

use std::collections::BTreeMap;

use serde_json::Value;
use service_registry::{CheckRegistration, Command, HealthStatus, Registration, ServiceRegistration, Weights};

use super::json::Fields;
use super::{Api, ApiError, ApiRequest, ApiResult, Reply};

/// The field `name`, or its snake_case alias (`tagged_addresses`), in any letter case.
pub(super) fn field<'a>(fields: &Fields<'a>, name: &str, alias: &str) -> Option<&'a Value> {
    fields.get(name).or_else(|| fields.get(alias))
}

/// A JSON object of strings (`Meta`, `NodeMeta`, `TaggedAddresses`).
pub(super) fn string_map(value: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(ApiError::bad_request(format!("Request decode failed: {what}.{key}: expected a string"))),
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!("Request decode failed: {what}: expected an object of strings"))),
    }
}

/// A port: an integer from 0 to 65535 (Go decodes a string or a negative number as an error).
pub(super) fn port(fields: &Fields<'_>, what: &str) -> Result<u16, ApiError> {
    match fields.get("Port") {
        None => Ok(0),
        Some(value) => value
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| ApiError::bad_request(format!("Invalid {what}.Port: {value}: expected an integer 0-65535"))),
    }
}

/// A check status as Consul spells it; empty or absent means `default`.
pub(super) fn status(text: Option<&str>, default: HealthStatus, what: &str) -> Result<HealthStatus, ApiError> {
    match text.unwrap_or("") {
        "" => Ok(default),
        "passing" => Ok(HealthStatus::Passing),
        "warning" => Ok(HealthStatus::Warning),
        "critical" => Ok(HealthStatus::Critical),
        "maintenance" => Ok(HealthStatus::Maintenance),
        other => Err(ApiError::bad_request(format!("Invalid {what}.Status {other:?}: Bad check status"))),
    }
}

fn string(fields: &Fields<'_>, name: &str) -> Result<String, ApiError> {
    Ok(fields.string(name)?.unwrap_or("").to_owned())
}

/// What a catalog registration's `Service` and an agent service registration share: tags, address,
/// port, meta, tag override and weights, around the `id` and `service` name each resolves its own
/// way. Errors name nested fields with `prefix` (`Service.Meta`) and the port with `port_what`.
pub(super) fn service_registration(
    fields: &Fields<'_>,
    id: String,
    service: String,
    prefix: &str,
    port_what: &str,
) -> Result<ServiceRegistration, ApiError> {
    let weights = match fields.get("Weights") {
        None => None,
        Some(value) => {
            let context = format!("{prefix}Weights");
            let weights = Fields::of(value, &context)?;
            let weight = |name| -> Result<u32, ApiError> {
                Ok(weights.uint(name)?.map_or(1, |w| u32::try_from(w).unwrap_or(u32::MAX)))
            };
            Some(Weights { passing: weight("Passing")?, warning: weight("Warning")? })
        }
    };
    Ok(ServiceRegistration {
        id,
        service,
        tags: fields.strings("Tags")?.unwrap_or_default(),
        address: string(fields, "Address")?,
        port: port(fields, port_what)?,
        meta: string_map(fields.get("Meta"), &format!("{prefix}Meta"))?,
        enable_tag_override: matches!(
            field(fields, "EnableTagOverride", "enable_tag_override"),
            Some(Value::Bool(true))
        ),
        weights,
    })
}

/// A catalog service (`Service` of a register request).
fn service(value: &Value) -> Result<ServiceRegistration, ApiError> {
    let fields = Fields::of(value, "Service")?;
    let service =
        service_registration(&fields, string(&fields, "ID")?, string(&fields, "Service")?, "Service.", "Service")?;
    if service.service.is_empty() {
        return Err(ApiError::bad_request(
            "Missing Service.Service: Must provide service name (Service.Service) when service ID is provided",
        ));
    }
    if matches!(service.address.parse::<std::net::IpAddr>(), Ok(ip) if ip.is_unspecified()) {
        return Err(ApiError::bad_request(format!(
            "Invalid Service.Address {:?}: Invalid service address",
            service.address
        )));
    }
    Ok(service)
}

/// A catalog check (`Check` or an element of `Checks`) on `node`.
fn check(value: &Value, node: &str, what: &str) -> Result<CheckRegistration, ApiError> {
    let fields = Fields::of(value, what)?;
    if let Some(other) = fields.string("Node")?.filter(|other| !other.is_empty() && !other.eq_ignore_ascii_case(node)) {
        return Err(ApiError::bad_request(format!(
            "Invalid {what}.Node: Node '{other}' for check doesn't match register request node '{node}'"
        )));
    }
    let check = CheckRegistration {
        check_id: fields.string("CheckID")?.or(fields.string("ID")?).unwrap_or("").to_owned(),
        name: string(&fields, "Name")?,
        status: status(fields.string("Status")?, HealthStatus::Critical, what)?,
        notes: string(&fields, "Notes")?,
        output: string(&fields, "Output")?,
        service_id: match field(&fields, "ServiceID", "service_id") {
            None => String::new(),
            Some(Value::String(id)) => id.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "Request decode failed: {what}.ServiceID: expected a string"
                )))
            }
        },
        check_type: string(&fields, "Type")?,
    };
    if check.check_id.is_empty() && check.name.is_empty() {
        return Err(ApiError::bad_request(format!("Missing {what}.CheckID: a check needs a CheckID or a Name")));
    }
    Ok(check)
}

/// The registration in a `/v1/catalog/register` body, checked whole.
fn registration(api: &Api, body: Option<&Value>) -> Result<Registration, ApiError> {
    let body = body.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let fields = Fields::of(body, "register")?;
    let node = string(&fields, "Node")?;
    if node.is_empty() {
        return Err(ApiError::bad_request("Missing Node: must provide node"));
    }
    let node_id = string(&fields, "ID")?;
    if !node_id.is_empty() && !is_uuid(&node_id) {
        return Err(ApiError::bad_request(format!("Invalid ID {node_id:?}: Bad node ID: not a UUID")));
    }
    let skip_node_update = matches!(field(&fields, "SkipNodeUpdate", "skip_node_update"), Some(Value::Bool(true)));
    let address = string(&fields, "Address")?;
    if address.is_empty() && !skip_node_update {
        return Err(ApiError::bad_request("Missing Address: Must provide address if SkipNodeUpdate is not set"));
    }
    let datacenter = string(&fields, "Datacenter")?;
    if !datacenter.is_empty() && datacenter != api.info.datacenter {
        return Err(ApiError::bad_request(format!("Invalid Datacenter {datacenter:?}: no path to datacenter")));
    }
    let service = fields.get("Service").map(service).transpose()?;
    let mut checks = Vec::new();
    if let Some(value) = fields.get("Check") {
        checks.push(check(value, &node, "Check")?);
    }
    match fields.get("Checks") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                checks.push(check(item, &node, &format!("Checks[{i}]"))?);
            }
        }
        Some(_) => return Err(ApiError::bad_request("Request decode failed: Checks: expected a list")),
    }
    // A service check must name a service registered on the node, or the one registered now.
    for (i, check) in checks.iter().enumerate() {
        if check.service_id.is_empty() {
            continue;
        }
        let in_request =
            service.as_ref().is_some_and(|s| (if s.id.is_empty() { &s.service } else { &s.id }) == &check.service_id);
        if !in_request && api.store.read().node_services(&node).all(|s| s.id != check.service_id) {
            return Err(ApiError::bad_request(format!(
                "Invalid ServiceID of check {i}: Unknown service ID '{}' for check ID '{}'",
                check.service_id,
                if check.check_id.is_empty() { &check.name } else { &check.check_id }
            )));
        }
    }
    let tagged_addresses = string_map(field(&fields, "TaggedAddresses", "tagged_addresses"), "TaggedAddresses")?;
    let node_meta = string_map(field(&fields, "NodeMeta", "node_meta"), "NodeMeta")?;
    if skip_node_update {
        // The node record as it is (a registration replaces it).
        let registry = api.store.read();
        let existing = registry
            .node(&node)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid SkipNodeUpdate: node {node:?} is not registered")))?;
        return Ok(Registration {
            node,
            id: existing.id.clone(),
            address: existing.address.clone(),
            datacenter: existing.datacenter.clone(),
            tagged_addresses: existing.tagged_addresses.clone(),
            node_meta: existing.meta.clone(),
            service,
            checks,
        });
    }
    Ok(Registration {
        node,
        id: node_id,
        address,
        datacenter: api.info.datacenter.clone(),
        tagged_addresses,
        node_meta,
        service,
        checks,
    })
}

/// `8-4-4-4-12` hexadecimal digits (Go's `uuid.ParseUUID`).
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `PUT /v1/catalog/register`: `true` once applied.
pub(super) async fn register(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?;
    let registration = registration(api, body.as_ref())?;
    let _applied = api.store.write(Command::Register(registration)).await?;
    Ok(Reply::json(&true))
}

/// `PUT /v1/catalog/deregister`, in Consul's precedence (`applyDeregister`): a service
/// (`ServiceID`, with its checks), else a check (`CheckID`), else the node (with its services,
/// checks and sessions). `true` once applied; removing what does not exist is not an error.
pub(super) async fn deregister(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?;
    let body = body.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let fields = Fields::of(&body, "deregister")?;
    let node = string(&fields, "Node")?;
    if node.is_empty() {
        return Err(ApiError::bad_request("Missing Node: must provide node"));
    }
    let datacenter = string(&fields, "Datacenter")?;
    if !datacenter.is_empty() && datacenter != api.info.datacenter {
        return Err(ApiError::bad_request(format!("Invalid Datacenter {datacenter:?}: no path to datacenter")));
    }
    let service_id = string(&fields, "ServiceID")?;
    let check_id = string(&fields, "CheckID")?;
    let command = if !service_id.is_empty() {
        Command::DeregisterService { node, service_id }
    } else if !check_id.is_empty() {
        Command::DeregisterCheck { node, check_id }
    } else {
        Command::DeregisterNode { node }
    };
    let _applied = api.store.write(command).await?;
    Ok(Reply::json(&true))
}
