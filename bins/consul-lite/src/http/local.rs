//! `/v1/agent/service*`, `/v1/agent/check*` and `/v1/agent/maintenance`: this agent's own
//! services and checks ([`crate::local::LocalAgent`]), in Consul's shapes
//! (`agent/agent_endpoint.go`), and the parsing of service and check definitions that the config
//! files and the data dir share with the API ([`service_definition`], [`check_definition`]).
//!
//! Keys match in any letter case, and the multi-word ones also in snake_case
//! (`deregister_critical_service_after`, `tls_skip_verify`), as Consul's decoder and config
//! files take them. Check kinds: TTL, HTTP, TCP, script (`Args`); the others Consul has are a 400
//! naming the field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use service_registry::{CheckRegistration, HealthStatus, ServiceRegistration};

use super::json::Fields;
use super::register::{field, service_registration, status};
use super::{Api, ApiError, ApiRequest, ApiResult, Reply};
use crate::checks::{self, CheckKind, CheckSpec, Thresholds};
use crate::local::{LocalCheck, LocalError, Source};

/// Check kinds Consul has and consul-lite does not run, by the field (and its snake_case alias)
/// that selects them.
const OTHER_KINDS: &[(&str, &str, &str)] = &[
    ("UDP", "udp", "UDP"),
    ("GRPC", "grpc", "gRPC"),
    ("H2PING", "h2ping", "H2PING"),
    ("DockerContainerID", "docker_container_id", "Docker"),
    ("AliasService", "alias_service", "alias"),
    ("AliasNode", "alias_node", "alias"),
    ("OSService", "os_service", "OS service"),
];

impl From<LocalError> for ApiError {
    /// A failed catalog write as the store's errors answer; the rest are 500s with Consul's
    /// message, as Consul answers them.
    fn from(error: LocalError) -> Self {
        match error {
            LocalError::Store(error) => error.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

fn string(fields: &Fields<'_>, name: &str) -> Result<String, ApiError> {
    Ok(fields.string(name)?.unwrap_or("").to_owned())
}

/// A field that is present and not empty (`""`, `[]`, `{}` and `false` count as absent).
fn given<'a>(fields: &Fields<'a>, name: &str, alias: &str) -> Option<&'a Value> {
    field(fields, name, alias).filter(|value| match value {
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::Bool(flag) => *flag,
        _ => true,
    })
}

/// A duration field: a Go duration string, or a number of nanoseconds (Go's `time.Duration`).
fn duration(fields: &Fields<'_>, name: &str, alias: &str, what: &str) -> Result<Option<Duration>, ApiError> {
    match given(fields, name, alias) {
        None => Ok(None),
        Some(Value::String(text)) => crate::duration::parse(text)
            .map(Some)
            .map_err(|error| ApiError::bad_request(format!("Invalid {what}.{name} {text:?}: {error}"))),
        Some(Value::Number(n)) => n.as_u64().map(|nanos| Some(Duration::from_nanos(nanos))).ok_or_else(|| {
            ApiError::bad_request(format!("Invalid {what}.{name} {n}: expected a duration like \"10s\""))
        }),
        Some(other) => {
            Err(ApiError::bad_request(format!("Invalid {what}.{name} {other}: expected a duration like \"10s\"")))
        }
    }
}

fn count(fields: &Fields<'_>, name: &str, alias: &str, what: &str) -> Result<Option<u32>, ApiError> {
    match field(fields, name, alias) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid {what}.{name} {value}: expected a whole number"))),
    }
}

/// `Header`: `{"Name": ["value", ...]}` (Go's `map[string][]string`; a single string is taken too).
fn headers(fields: &Fields<'_>, what: &str) -> Result<Vec<(String, String)>, ApiError> {
    let Some(value) = field(fields, "Header", "header") else { return Ok(Vec::new()) };
    let invalid = || ApiError::bad_request(format!("Invalid {what}.Header: expected an object of lists of strings"));
    let map = value.as_object().ok_or_else(invalid)?;
    let mut headers = Vec::new();
    for (name, values) in map {
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ApiError::bad_request(format!("Invalid {what}.Header: {name:?} is not a header name")));
        }
        let values = match values {
            Value::String(text) => vec![text.clone()],
            Value::Array(items) => {
                items.iter().map(|item| item.as_str().map(str::to_owned)).collect::<Option<_>>().ok_or_else(invalid)?
            }
            _ => return Err(invalid()),
        };
        for value in values {
            if hyper::header::HeaderValue::from_str(&value).is_err() {
                return Err(ApiError::bad_request(format!("Invalid {what}.Header.{name}: not a header value")));
            }
            headers.push((name.clone(), value));
        }
    }
    Ok(headers)
}

/// What a check runs, from the field that selects its kind (at most one), or a 400.
fn kind(fields: &Fields<'_>, what: &str) -> Result<Option<CheckKind>, ApiError> {
    for (name, alias, kind) in OTHER_KINDS {
        if given(fields, name, alias).is_some() {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}.{name}: {kind} checks are not supported by consul-lite (TTL, HTTP, TCP and Args are)"
            )));
        }
    }
    if given(fields, "Script", "script").is_some() {
        return Err(ApiError::bad_request(format!(
            "Invalid {what}.Script: consul-lite never runs a check through a shell: give the program and its \
             arguments as Args"
        )));
    }
    let mut kinds = Vec::new();
    if let Some(value) = given(fields, "HTTP", "http") {
        let url = value
            .as_str()
            .ok_or_else(|| ApiError::bad_request(format!("Invalid {what}.HTTP: expected a URL string")))?;
        checks::probe::http_url(url)
            .map_err(|error| ApiError::bad_request(format!("Invalid {what}.HTTP {url:?}: {error}")))?;
        let method = string(fields, "Method")?;
        let method = if method.is_empty() { "GET".to_owned() } else { method };
        if hyper::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(ApiError::bad_request(format!("Invalid {what}.Method {method:?}: not an HTTP method")));
        }
        if !matches!(field(fields, "TLSSkipVerify", "tls_skip_verify"), None | Some(Value::Bool(_))) {
            return Err(ApiError::bad_request(format!("Invalid {what}.TLSSkipVerify: expected true or false")));
        }
        kinds.push(CheckKind::Http {
            url: url.to_owned(),
            method,
            headers: headers(fields, what)?,
            body: string(fields, "Body")?,
        });
    }
    if let Some(value) = given(fields, "TCP", "tcp") {
        let address = value
            .as_str()
            .filter(|address| {
                address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            })
            .ok_or_else(|| ApiError::bad_request(format!("Invalid {what}.TCP {value}: expected host:port")))?;
        kinds.push(CheckKind::Tcp { address: address.to_owned() });
    }
    if let Some(value) = given(fields, "Args", "args").or_else(|| given(fields, "ScriptArgs", "script_args")) {
        let args: Option<Vec<String>> =
            value.as_array().and_then(|items| items.iter().map(|item| item.as_str().map(str::to_owned)).collect());
        let args = args.filter(|args| args.first().is_some_and(|program| !program.is_empty())).ok_or_else(|| {
            ApiError::bad_request(format!("Invalid {what}.Args: expected a list of strings, the program first"))
        })?;
        kinds.push(CheckKind::Script { args });
    }
    if let Some(ttl) = duration(fields, "TTL", "ttl", what)? {
        if ttl.is_zero() {
            return Err(ApiError::bad_request(format!("Invalid {what}.TTL: TTL must be > 0 for TTL checks")));
        }
        kinds.push(CheckKind::Ttl { ttl });
    }
    match kinds.len() {
        0 | 1 => Ok(kinds.pop()),
        _ => Err(ApiError::bad_request(format!("Invalid {what}: give only one of TTL, HTTP, TCP, Args"))),
    }
}

/// A check definition (Consul's `CheckType` / `CheckDefinition`), or a 400 naming the field.
/// `default_id` and `default_name` apply when the definition has none.
pub(crate) fn check_definition(
    value: &Value,
    what: &str,
    default_id: Option<String>,
    default_name: Option<String>,
) -> Result<LocalCheck, ApiError> {
    let fields = Fields::of(value, what)?;
    let kind = kind(&fields, what)?;
    let interval = duration(&fields, "Interval", "interval", what)?;
    let kind = match kind {
        Some(kind) => kind,
        None => {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}.TTL: TTL must be > 0 for TTL checks (or give HTTP, TCP or Args with an Interval)"
            )))
        }
    };
    let interval = match (&kind, interval) {
        (CheckKind::Ttl { .. }, Some(interval)) if !interval.is_zero() => {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}.Interval: Interval and TTL cannot both be specified"
            )))
        }
        (CheckKind::Ttl { .. }, _) => Duration::ZERO,
        (_, Some(interval)) if !interval.is_zero() => interval.max(checks::MIN_INTERVAL),
        _ => {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}.Interval: Interval must be > 0 for Script, HTTP or TCP checks"
            )))
        }
    };
    let default_timeout =
        if matches!(kind, CheckKind::Script { .. }) { checks::DEFAULT_SCRIPT_TIMEOUT } else { checks::DEFAULT_TIMEOUT };
    let timeout = duration(&fields, "Timeout", "timeout", what)?.filter(|t| !t.is_zero()).unwrap_or(default_timeout);
    let deregister_critical_after =
        duration(&fields, "DeregisterCriticalServiceAfter", "deregister_critical_service_after", what)?
            .filter(|after| !after.is_zero());
    let thresholds = Thresholds::new(
        count(&fields, "SuccessBeforePassing", "success_before_passing", what)?,
        count(&fields, "FailuresBeforeWarning", "failures_before_warning", what)?,
        count(&fields, "FailuresBeforeCritical", "failures_before_critical", what)?,
    );
    let id = fields.string("CheckID")?.or(fields.string("ID")?).filter(|id| !id.is_empty()).map(str::to_owned);
    let id = match id {
        Some(id) => Some(id),
        None => match field(&fields, "CheckID", "check_id") {
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            _ => None,
        },
    };
    let name = fields.string("Name")?.filter(|name| !name.is_empty()).map(str::to_owned);
    let name = name.or(default_name).ok_or_else(|| ApiError::bad_request("Missing check name"))?;
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
        check_type: String::new(),
    };
    let spec = CheckSpec { kind, interval, timeout, deregister_critical_after, thresholds };
    Ok(LocalCheck::new(check, spec))
}

/// A service definition (the body of `/v1/agent/service/register`, or a `service` of a config
/// file) with its checks (`Check`, `Checks`), or a 400 naming the field.
pub(crate) fn service_definition(
    value: &Value,
    what: &str,
) -> Result<(ServiceRegistration, Vec<LocalCheck>), ApiError> {
    let fields = Fields::of(value, what)?;
    let name = string(&fields, "Name")?;
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let id = fields.string("ID")?.filter(|id| !id.is_empty()).unwrap_or(&name).to_owned();
    let service = service_registration(&fields, id.clone(), name.clone(), "", what)?;
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
        let mut local = check_definition(value, &what, Some(default_id), Some(format!("Service '{name}' check")))?;
        local.check.service_id.clone_from(&id);
        checks.push(local);
    }
    Ok((service, checks))
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

/// A check's `Definition` as Consul reports it: the fields that say what runs and when.
fn definition_json(spec: &CheckSpec) -> Value {
    let mut definition = Map::new();
    let format = crate::duration::format;
    match &spec.kind {
        CheckKind::Ttl { ttl } => {
            definition.insert("TTL".into(), json!(format(*ttl)));
        }
        CheckKind::Http { url, method, headers, .. } => {
            let mut header: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (name, value) in headers {
                header.entry(name).or_default().push(value);
            }
            definition.insert("HTTP".into(), json!(url));
            definition.insert("Method".into(), json!(method));
            definition.insert("Header".into(), json!(header));
        }
        CheckKind::Tcp { address } => {
            definition.insert("TCP".into(), json!(address));
        }
        CheckKind::Script { args } => {
            definition.insert("ScriptArgs".into(), json!(args));
        }
        CheckKind::Maintenance => {}
    }
    if spec.kind.is_probed() {
        definition.insert("Interval".into(), json!(format(spec.interval)));
        definition.insert("Timeout".into(), json!(format(spec.timeout)));
    }
    if let Some(after) = spec.deregister_critical_after {
        definition.insert("DeregisterCriticalServiceAfter".into(), json!(format(after)));
    }
    Value::Object(definition)
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
        "Type": local.spec.kind.type_name(),
        "Interval": if local.spec.kind.is_probed() { crate::duration::format(local.spec.interval) } else { String::new() },
        "Timeout": if local.spec.kind.is_probed() { crate::duration::format(local.spec.timeout) } else { String::new() },
        "Definition": definition_json(&local.spec),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    })
}

/// `PUT /v1/agent/service/register`: the service and its checks (`Check`, `Checks`);
/// an empty 200 once written to the catalog (and, with a data dir, kept there).
pub(super) async fn register_service(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let (service, checks) = service_definition(&body, "service")?;
    api.local.register_service(service, checks, Source::Api, Some(&body)).await?;
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

/// `PUT /v1/agent/check/register`: a check on this node or on one of this agent's services
/// (`ServiceID`).
pub(super) async fn register_check(api: &Api, request: &mut ApiRequest) -> ApiResult {
    let body = request.json_body().await?.ok_or_else(|| ApiError::bad_request("Missing request body"))?;
    let local = check_definition(&body, "check", None, None)?;
    if !local.check.service_id.is_empty() && !api.local.has_service(&local.check.service_id).await {
        return Err(ApiError::bad_request(format!(
            "Invalid ServiceID {:?}: ServiceID {:?} does not exist",
            local.check.service_id, local.check.service_id
        )));
    }
    api.local.register_check(local, Source::Api, Some(&body)).await?;
    Ok(Reply::empty())
}

async fn update(api: &Api, id: &str, status: HealthStatus, output: &str) -> ApiResult {
    if api.local.update_check(id, status, &checks::truncate_output(output)).await? {
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

/// `?enable=true|false` (required) and `?reason=` of the maintenance endpoints, as Consul
/// checks them.
fn maintenance_query(request: &ApiRequest) -> Result<(bool, String), ApiError> {
    let enable = match request.query.get("enable") {
        None | Some("") => return Err(ApiError::bad_request("Missing value for enable")),
        Some("true" | "1" | "t" | "T" | "TRUE" | "True") => true,
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
        Some(other) => return Err(ApiError::bad_request(format!("Invalid value for enable: {other:?}"))),
    };
    Ok((enable, request.query.get("reason").unwrap_or("").to_owned()))
}

/// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`: 404 for an unknown service.
pub(super) async fn service_maintenance(api: &Api, request: &ApiRequest, id: &str) -> ApiResult {
    let (enable, reason) = maintenance_query(request)?;
    if api.local.service_maintenance(id, enable, &reason).await? {
        Ok(Reply::empty())
    } else {
        Err(ApiError::not_found(format!("No service registered with ID {id:?}")))
    }
}

/// `PUT /v1/agent/maintenance?enable=&reason=`: this node's maintenance mode.
pub(super) async fn node_maintenance(api: &Api, request: &ApiRequest) -> ApiResult {
    let (enable, reason) = maintenance_query(request)?;
    api.local.node_maintenance(enable, &reason).await?;
    Ok(Reply::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(value: Value) -> String {
        check_definition(&value, "check", None, None).unwrap_err().message
    }

    #[test]
    fn check_kinds_and_timings_in_any_letter_case() {
        let check = check_definition(
            &json!({"name": "web", "http": "http://127.0.0.1:9/health", "method": "HEAD", "interval": "500ms",
                    "header": {"X-A": ["1", "2"]}, "tls_skip_verify": true, "deregister_critical_service_after": "90s",
                    "success_before_passing": 2, "FailuresBeforeCritical": 3}),
            "check",
            None,
            None,
        )
        .unwrap();
        assert_eq!(check.check.check_id, "web");
        assert_eq!(check.check.check_type, "http");
        assert_eq!(check.check.status, HealthStatus::Critical);
        assert_eq!(check.spec.interval, checks::MIN_INTERVAL, "raised to Consul's minimum");
        assert_eq!(check.spec.timeout, checks::DEFAULT_TIMEOUT);
        assert_eq!(check.spec.deregister_critical_after, Some(Duration::from_secs(90)));
        assert_eq!(check.spec.thresholds, Thresholds::new(Some(2), None, Some(3)));
        let CheckKind::Http { method, headers, .. } = &check.spec.kind else { panic!("{:?}", check.spec.kind) };
        assert_eq!(method, "HEAD");
        assert_eq!(headers.len(), 2);
        let script = check_definition(&json!({"Name": "s", "Args": ["true"], "Interval": "5s"}), "check", None, None);
        assert_eq!(script.unwrap().spec.timeout, checks::DEFAULT_SCRIPT_TIMEOUT);
        let tcp = check_definition(
            &json!({"Name": "t", "TCP": "localhost:80", "Interval": "5s", "Timeout": "1s",
                                           "Status": "passing"}),
            "check",
            None,
            None,
        )
        .unwrap();
        assert_eq!((tcp.spec.timeout, tcp.check.status), (Duration::from_secs(1), HealthStatus::Passing));
    }

    #[test]
    fn bad_check_definitions_name_the_field() {
        assert!(bad(json!({"Name": "c"})).starts_with("Invalid check.TTL"));
        assert!(bad(json!({"Name": "c", "HTTP": "http://x/"})).starts_with("Invalid check.Interval"));
        assert!(bad(json!({"Name": "c", "HTTP": "http://x/", "Interval": "soon"}))
            .starts_with("Invalid check.Interval \"soon\""));
        assert!(bad(json!({"Name": "c", "TTL": "5s", "Interval": "5s"})).contains("cannot both"));
        assert!(bad(json!({"Name": "c", "TTL": "5s", "HTTP": "http://x/"})).contains("only one"));
        assert!(bad(json!({"Name": "c", "GRPC": "x:1", "Interval": "5s"})).starts_with("Invalid check.GRPC"));
        assert!(bad(json!({"Name": "c", "Script": "true", "Interval": "5s"})).starts_with("Invalid check.Script"));
        assert!(bad(json!({"Name": "c", "HTTP": "https://x/", "Interval": "5s"})).contains("https"));
        assert!(bad(json!({"Name": "c", "TCP": "nohost", "Interval": "5s"})).starts_with("Invalid check.TCP"));
        assert!(bad(json!({"Name": "c", "Args": [], "Interval": "5s"})).starts_with("Invalid check.TTL"));
        assert!(bad(json!({"Name": "c", "Args": [1], "Interval": "5s"})).starts_with("Invalid check.Args"));
        assert!(bad(json!({"Name": "c", "HTTP": "http://x/", "Interval": "5s", "Method": "G T"})).contains("Method"));
        assert!(bad(json!({"Name": "c", "TTL": "5s", "SuccessBeforePassing": -1})).contains("SuccessBeforePassing"));
        assert_eq!(bad(json!({"TTL": "5s"})), "Missing check name");
    }

    #[test]
    fn service_checks_take_the_service_id_and_default_names() {
        let (service, checks) = service_definition(
            &json!({"name": "web", "port": 80, "checks": [{"ttl": "5s"}, {"tcp": "127.0.0.1:80", "interval": "2s"}]}),
            "service",
        )
        .unwrap();
        assert_eq!((service.id.as_str(), service.port), ("web", 80));
        let ids: Vec<&str> = checks.iter().map(|c| c.check.check_id.as_str()).collect();
        assert_eq!(ids, ["service:web:1", "service:web:2"]);
        assert!(checks.iter().all(|c| c.check.service_id == "web" && c.check.name == "Service 'web' check"));
    }
}
