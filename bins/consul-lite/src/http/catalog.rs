//! `/v1/catalog/*` and `/v1/health/*` reads, in Consul's shapes, as far as the registry
//! holds the data.

use serde_json::{json, Map, Value};
use service_registry::{Check, HealthStatus, Node, Service, ServiceInstance, Topic, WatchTarget};

use super::query::ReadOptions;
use super::{Api, ApiError, ApiRequest, ApiResult, Reply};

fn node_row(node: &Node) -> Value {
    json!({
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": node.tagged_addresses,
        "Meta": node.meta,
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    })
}

fn weights(service: &Service) -> Value {
    let (passing, warning) = service.weights.map_or((1, 1), |w| (w.passing, w.warning));
    json!({ "Passing": passing, "Warning": warning })
}

fn service_row(service: &Service) -> Value {
    json!({
        "ID": service.id,
        "Service": service.service,
        "Tags": service.tags,
        "Address": service.address,
        "Meta": service.meta,
        "Port": service.port,
        "Weights": weights(service),
        "EnableTagOverride": service.enable_tag_override,
        "CreateIndex": service.create_index,
        "ModifyIndex": service.modify_index,
    })
}

fn check_row(check: &Check) -> Value {
    json!({
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status.as_str(),
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": check.service_tags,
        "Type": check.check_type,
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    })
}

/// Reads `target` after the blocking wait, answering `rows(registry)` with the index.
async fn read(
    api: &Api,
    request: &ApiRequest,
    target: WatchTarget,
    rows: impl Fn(&service_registry::Registry) -> Value,
) -> ApiResult {
    ReadOptions::parse_and_block(api, &request.query, &target).await?;
    let registry = api.store.read();
    Ok(Reply::json(&rows(&registry)).meta(api, registry.index(&target)))
}

fn required<'a>(name: &'a str, what: &str) -> Result<&'a str, ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request(format!("Missing {what} name")));
    }
    Ok(name)
}

pub(super) async fn nodes(api: &Api, request: &ApiRequest) -> ApiResult {
    read(api, request, WatchTarget::Topic(Topic::Nodes), |registry| registry.nodes().map(node_row).collect()).await
}

pub(super) async fn services(api: &Api, request: &ApiRequest) -> ApiResult {
    read(api, request, WatchTarget::Topic(Topic::Services), |registry| {
        let map: Map<String, Value> =
            registry.services().into_iter().map(|(name, tags)| (name.to_owned(), json!(tags))).collect();
        Value::Object(map)
    })
    .await
}

pub(super) async fn node(api: &Api, request: &ApiRequest, name: &str) -> ApiResult {
    let name = required(name, "node")?;
    read(api, request, WatchTarget::Topic(Topic::Node(name.to_owned())), |registry| match registry.node(name) {
        None => Value::Null,
        Some(node) => {
            let services: Map<String, Value> =
                registry.node_services(name).map(|s| (s.id.clone(), service_row(s))).collect();
            json!({ "Node": node_row(node), "Services": services })
        }
    })
    .await
}

fn tag_filter<'a>(request: &'a ApiRequest) -> impl Fn(&ServiceInstance<'_>) -> bool + 'a {
    move |instance| request.query.get("tag").is_none_or(|tag| instance.service.tags.iter().any(|t| t == tag))
}

pub(super) async fn service(api: &Api, request: &ApiRequest, name: &str) -> ApiResult {
    let name = required(name, "service")?;
    let keep = tag_filter(request);
    read(api, request, WatchTarget::Topic(Topic::Service(name.to_owned())), |registry| {
        registry
            .service_instances(name)
            .iter()
            .filter(|instance| keep(instance))
            .map(|instance| {
                let (node, service) = (instance.node, instance.service);
                json!({
                    "ID": node.id,
                    "Node": node.name,
                    "Address": node.address,
                    "Datacenter": node.datacenter,
                    "TaggedAddresses": node.tagged_addresses,
                    "NodeMeta": node.meta,
                    "ServiceKind": "",
                    "ServiceID": service.id,
                    "ServiceName": service.service,
                    "ServiceTags": service.tags,
                    "ServiceAddress": service.address,
                    "ServiceWeights": weights(service),
                    "ServiceMeta": service.meta,
                    "ServicePort": service.port,
                    "ServiceEnableTagOverride": service.enable_tag_override,
                    "CreateIndex": service.create_index,
                    "ModifyIndex": service.modify_index,
                })
            })
            .collect()
    })
    .await
}

pub(super) async fn health_service(api: &Api, request: &ApiRequest, name: &str) -> ApiResult {
    let name = required(name, "service")?;
    let passing = request.query.flag_bool("passing")?;
    let keep = tag_filter(request);
    read(api, request, WatchTarget::Topic(Topic::Service(name.to_owned())), |registry| {
        registry
            .service_instances(name)
            .iter()
            .filter(|instance| keep(instance))
            .filter(|instance| !passing || instance.checks.iter().all(|c| c.status == HealthStatus::Passing))
            .map(|instance| {
                json!({
                    "Node": node_row(instance.node),
                    "Service": service_row(instance.service),
                    "Checks": instance.checks.iter().map(|c| check_row(c)).collect::<Vec<_>>(),
                })
            })
            .collect()
    })
    .await
}

pub(super) async fn health_checks(api: &Api, request: &ApiRequest, name: &str) -> ApiResult {
    let name = required(name, "service")?;
    read(api, request, WatchTarget::Topic(Topic::Service(name.to_owned())), |registry| {
        registry
            .service_instances(name)
            .iter()
            .flat_map(|instance| instance.checks.iter().filter(|c| c.service_id == instance.service.id))
            .map(|c| check_row(c))
            .collect()
    })
    .await
}

pub(super) async fn health_node(api: &Api, request: &ApiRequest, name: &str) -> ApiResult {
    let name = required(name, "node")?;
    read(api, request, WatchTarget::Topic(Topic::Node(name.to_owned())), |registry| {
        registry.node_checks(name).map(check_row).collect()
    })
    .await
}

pub(super) async fn health_state(api: &Api, request: &ApiRequest, state: &str) -> ApiResult {
    let status = match state {
        "any" => None,
        "passing" => Some(HealthStatus::Passing),
        "warning" => Some(HealthStatus::Warning),
        "critical" => Some(HealthStatus::Critical),
        "maintenance" => Some(HealthStatus::Maintenance),
        other => return Err(ApiError::bad_request(format!("Invalid check state {other:?}"))),
    };
    let topic = status.map_or(Topic::AllChecks, Topic::ChecksInState);
    read(api, request, WatchTarget::Topic(topic), |registry| registry.checks_in_state(status).map(check_row).collect())
        .await
}
