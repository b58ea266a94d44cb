//! Registering services against a real `consul-lite agent -dev`: `/v1/catalog/register` and
//! `/v1/catalog/deregister` in Consul's shapes, read back through `/v1/catalog/service/:s`,
//! `/v1/health/service/:s?passing` and DNS; bad input is a 400 naming the field, with nothing
//! written.

mod common;

use common::Agent;
use hickory_proto::rr::RecordType;
use serde_json::json;

fn put_json(agent: &Agent, path: &str, body: &serde_json::Value) -> common::Response {
    agent.put(path, body.to_string().as_bytes())
}

fn names(rows: &serde_json::Value, field: &str) -> Vec<String> {
    rows.as_array().unwrap().iter().map(|row| row[field].as_str().unwrap().to_owned()).collect()
}

#[test]
fn catalog_register_and_deregister_round_trip() {
    let agent = Agent::start("cat", &[]);
    // Consul's shape, keys in other letter cases (as Go decodes them).
    let body = json!({
        "Node": "ext-1",
        "address": "10.1.2.3",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.1.2.3"},
        "NodeMeta": {"rack": "r1"},
        "Service": {"ID": "web-1", "service": "web", "Tags": ["v1"], "Address": "10.1.2.4", "Port": 8080,
                    "Meta": {"version": "1"}},
        "Check": {"CheckID": "web-1-alive", "Name": "web alive", "Status": "passing", "ServiceID": "web-1"},
        "Checks": [{"Name": "node-disk", "Status": "warning"}]
    });
    let reply = put_json(&agent, "/v1/catalog/register", &body);
    assert_eq!((reply.status, reply.text().trim()), (200, "true"), "{reply:?}");

    let rows = agent.get("/v1/catalog/service/web").json();
    let [row] = rows.as_array().unwrap().as_slice() else { panic!("one instance: {rows}") };
    assert_eq!(row["Node"], "ext-1");
    assert_eq!(row["Address"], "10.1.2.3");
    assert_eq!(row["NodeMeta"], json!({"rack": "r1"}));
    assert_eq!(row["TaggedAddresses"], json!({"lan": "10.1.2.3"}));
    assert_eq!(row["ServiceID"], "web-1");
    assert_eq!(row["ServiceTags"], json!(["v1"]));
    assert_eq!(row["ServiceAddress"], "10.1.2.4");
    assert_eq!(row["ServicePort"], 8080);
    assert_eq!(row["ServiceMeta"], json!({"version": "1"}));

    // The node check warns: listed, but not passing.
    let all = agent.get("/v1/health/service/web").json();
    assert_eq!(all.as_array().unwrap().len(), 1);
    let mut checks = names(&all[0]["Checks"], "CheckID");
    checks.sort();
    assert_eq!(checks, ["node-disk", "web-1-alive"]);
    assert_eq!(agent.get("/v1/health/service/web?passing").json(), json!([]));
    // DNS (only_passing false): a warning instance is answered.
    let reply = common::dns_ask(agent.dns, "web.service.consul.", RecordType::A, false).expect("a DNS reply");
    assert_eq!(reply.answers.len(), 1, "{reply:?}");

    // Updated passing (the check without an ID takes its name): in the passing answers.
    let update = json!({"Node": "ext-1", "Address": "10.1.2.3", "Check": {"Name": "node-disk", "Status": "passing"}});
    assert_eq!(put_json(&agent, "/v1/catalog/register", &update).text().trim(), "true");
    let passing = agent.get("/v1/health/service/web?passing").json();
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    assert_eq!(passing[0]["Node"]["Node"], "ext-1");
    assert_eq!(passing[0]["Service"]["ID"], "web-1");

    // SkipNodeUpdate: no Address needed, the node record kept as it is.
    // (A register without it replaces the node record, as Consul's: the update above had no
    // NodeMeta.)
    let before = agent.get("/v1/catalog/node/ext-1").json()["Node"].clone();
    let skip = json!({"Node": "ext-1", "SkipNodeUpdate": true, "Check": {"Name": "extra", "Status": "passing"}});
    assert_eq!(put_json(&agent, "/v1/catalog/register", &skip).text().trim(), "true");
    let after = agent.get("/v1/catalog/node/ext-1").json()["Node"].clone();
    assert_eq!(before, after);
    assert_eq!(after["Address"], "10.1.2.3");
    assert_eq!(
        put_json(&agent, "/v1/catalog/deregister", &json!({"Node": "ext-1", "CheckID": "extra"})).text().trim(),
        "true"
    );

    // Deregister the check, then the service, then the node.
    let reply = put_json(&agent, "/v1/catalog/deregister", &json!({"node": "ext-1", "CheckID": "node-disk"}));
    assert_eq!(reply.text().trim(), "true");
    assert!(agent.get("/v1/health/node/ext-1").json().as_array().unwrap().iter().all(|c| c["CheckID"] != "node-disk"));
    // ServiceID wins over CheckID (Consul's precedence): the service goes, with its checks.
    let reply =
        put_json(&agent, "/v1/catalog/deregister", &json!({"Node": "ext-1", "ServiceID": "web-1", "CheckID": "x"}));
    assert_eq!(reply.text().trim(), "true");
    assert_eq!(agent.get("/v1/catalog/service/web").json(), json!([]));
    assert!(agent.get("/v1/catalog/node/ext-1").json()["Node"]["Node"] == "ext-1", "the node stays");
    let reply = put_json(&agent, "/v1/catalog/deregister", &json!({"Node": "ext-1"}));
    assert_eq!(reply.text().trim(), "true");
    assert_eq!(agent.get("/v1/catalog/node/ext-1").json(), serde_json::Value::Null);
    // Removing what is gone is not an error.
    assert_eq!(put_json(&agent, "/v1/catalog/deregister", &json!({"Node": "ext-1"})).text().trim(), "true");
}

#[test]
fn catalog_register_bad_input_is_400_naming_the_field_and_writes_nothing() {
    let agent = Agent::start("cat-bad", &[]);
    let service = json!({"Service": "db", "Port": 5432});
    let cases = [
        (json!({"Address": "10.0.0.1", "Service": service}), "Node"),
        (json!({"Node": "n1", "Service": service}), "Address"),
        (json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db", "Port": 70000}}), "Port"),
        (json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db", "Port": "5432"}}), "Port"),
        (json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"ID": "db-1"}}), "Service.Service"),
        (
            json!({"Node": "n1", "Address": "10.0.0.1", "Service": service, "Check": {"Name": "c", "Status": "ok"}}),
            "Status",
        ),
        (
            json!({"Node": "n1", "Address": "10.0.0.1", "Checks": [{"Name": "c"}, {"Notes": "no id"}]}),
            "Checks[1].CheckID",
        ),
        (json!({"Node": "n1", "Address": "10.0.0.1", "Check": {"Name": "c", "ServiceID": "nope"}}), "ServiceID"),
        (json!({"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc9"}), "Datacenter"),
        (json!({"Node": "n1", "Address": "10.0.0.1", "ID": "not-a-uuid"}), "ID"),
        (json!({"Node": "n1", "SkipNodeUpdate": true}), "SkipNodeUpdate"),
        (
            json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db", "Address": "0.0.0.0"}}),
            "Service.Address",
        ),
        (json!({"Node": "n1", "Address": "10.0.0.1", "Check": {"Name": "c", "Node": "n2"}}), "Check.Node"),
    ];
    for (body, field) in cases {
        let reply = put_json(&agent, "/v1/catalog/register", &body);
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(reply.text().contains(field), "{body}: {:?} should name {field}", reply.text());
    }
    assert_eq!(agent.put("/v1/catalog/register", b"{not json").status, 400);
    assert_eq!(agent.get("/v1/catalog/register").status, 405);
    let reply = put_json(&agent, "/v1/catalog/deregister", &json!({"ServiceID": "db"}));
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("Node"), "{reply:?}");
    assert_eq!(agent.get("/v1/catalog/node/n1").json(), serde_json::Value::Null, "nothing written");
    assert_eq!(agent.get("/v1/catalog/service/db").json(), json!([]));
}

fn eventually(within: std::time::Duration, what: &str, mut check: impl FnMut() -> bool) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    started.elapsed()
}

fn dns_answers(agent: &Agent, name: &str) -> usize {
    common::dns_ask(agent.dns, name, RecordType::A, false).expect("a DNS reply").answers.len()
}

#[test]
fn agent_service_with_a_ttl_check_critical_pass_expire_deregister() {
    let agent = Agent::start("t50-agent", &[]);
    // py-consul's shape: lowercase keys, the check as {"ttl": ...}.
    let body = json!({"name": "api", "id": "api-1", "port": 9000, "tags": ["v2"], "meta": {"m": "1"},
                      "check": {"ttl": "2s"}});
    let reply = put_json(&agent, "/v1/agent/service/register", &body);
    assert_eq!(reply.status, 200, "{reply:?}");

    let services = agent.get("/v1/agent/services").json();
    assert_eq!(services["api-1"]["Service"], "api");
    assert_eq!(services["api-1"]["Port"], 9000);
    assert_eq!(services["api-1"]["Tags"], json!(["v2"]));
    let one = agent.get("/v1/agent/service/api-1");
    assert_eq!((one.status, one.json()["ID"].clone()), (200, json!("api-1")));
    assert_eq!(agent.get("/v1/agent/service/nope").status, 404);

    // Critical at start (Consul's default for a new TTL check), in the catalog as in the agent.
    let checks = agent.get("/v1/agent/checks").json();
    assert_eq!(checks["service:api-1"]["Status"], "critical", "{checks}");
    assert_eq!(checks["service:api-1"]["ServiceID"], "api-1");
    assert_eq!(checks["service:api-1"]["Type"], "ttl");
    let rows = agent.get("/v1/health/service/api").json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["Service"]["Port"], 9000);
    assert_eq!(agent.get("/v1/health/service/api?passing").json(), json!([]));
    assert_eq!(dns_answers(&agent, "api.service.consul."), 0);

    // pass: passing, in ?passing and in DNS.
    let reply = agent.put("/v1/agent/check/pass/service:api-1?note=all%20good", b"");
    assert_eq!(reply.status, 200, "{reply:?}");
    let passing = agent.get("/v1/health/service/api?passing").json();
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    let check = passing[0]["Checks"].as_array().unwrap().iter().find(|c| c["CheckID"] == "service:api-1").unwrap();
    assert_eq!((check["Status"].clone(), check["Output"].clone()), (json!("passing"), json!("all good")));
    assert_eq!(dns_answers(&agent, "api.service.consul."), 1);

    // No update within the TTL (2 s): critical, out of ?passing and out of DNS.
    let took = eventually(std::time::Duration::from_secs(6), "the TTL check turns critical", || {
        agent.get("/v1/health/service/api?passing").json() == json!([])
    });
    assert!(took >= std::time::Duration::from_millis(1500), "critical after {took:?}, before its TTL");
    let checks = agent.get("/v1/agent/checks").json();
    assert_eq!(checks["service:api-1"]["Status"], "critical");
    // Consul keeps the last output after its words.
    assert_eq!(checks["service:api-1"]["Output"], "TTL expired (last output before timeout follows): all good");
    assert_eq!(dns_answers(&agent, "api.service.consul."), 0);

    // update: Status and Output.
    let reply =
        put_json(&agent, "/v1/agent/check/update/service:api-1", &json!({"Status": "warning", "Output": "slow"}));
    assert_eq!(reply.status, 200, "{reply:?}");
    let checks = agent.get("/v1/health/checks/api").json();
    assert_eq!((checks[0]["Status"].clone(), checks[0]["Output"].clone()), (json!("warning"), json!("slow")));

    // A node-level TTL check through /v1/agent/check/register, then removed.
    let reply =
        put_json(&agent, "/v1/agent/check/register", &json!({"Name": "mem", "TTL": "30s", "Status": "passing"}));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(agent.get("/v1/agent/checks").json()["mem"]["Status"], "passing");
    let node_checks = names(&agent.get("/v1/health/node/t50-agent").json(), "CheckID");
    assert!(node_checks.contains(&"mem".to_owned()), "{node_checks:?}");
    assert_eq!(agent.put("/v1/agent/check/deregister/mem", b"").status, 200);
    assert!(agent.get("/v1/agent/checks").json().get("mem").is_none());
    let node_checks = names(&agent.get("/v1/health/node/t50-agent").json(), "CheckID");
    assert!(!node_checks.contains(&"mem".to_owned()), "{node_checks:?}");

    // Deregister: gone from the agent, the catalog and DNS.
    assert_eq!(agent.put("/v1/agent/service/deregister/api-1", b"").status, 200);
    assert_eq!(agent.get("/v1/agent/services").json(), json!({}));
    assert_eq!(agent.get("/v1/agent/checks").json(), json!({}));
    assert_eq!(agent.get("/v1/catalog/service/api").json(), json!([]));
    assert_eq!(dns_answers(&agent, "api.service.consul."), 0);
    assert_eq!(agent.put("/v1/agent/service/deregister/api-1", b"").status, 404);
}

#[test]
fn agent_registration_bad_input_is_400_naming_the_field_and_writes_nothing() {
    let agent = Agent::start("t50-bad", &[]);
    let cases = [
        (json!({"Port": 80}), "Missing service name"),
        (json!({"Name": "web", "Address": "0.0.0.0"}), "Invalid service address"),
        (json!({"Name": "web", "Port": 70000}), "Port"),
        (json!({"Name": "web", "Port": -1}), "Port"),
        (json!({"Name": "web", "Check": {"HTTP": "http://127.0.0.1/"}}), "Invalid Check.Interval"),
        (json!({"Name": "web", "Check": {"TCP": "127.0.0.1", "Interval": "10s"}}), "Invalid Check.TCP"),
        (json!({"Name": "web", "Check": {"GRPC": "127.0.0.1:9", "Interval": "10s"}}), "Invalid Check.GRPC"),
        (json!({"Name": "web", "Check": {"TTL": "soon"}}), "TTL"),
        (json!({"Name": "web", "Checks": [{"TTL": "5s"}, {"TTL": "5s", "Status": "fine"}]}), "Checks[1].Status"),
    ];
    for (body, expected) in cases {
        let reply = put_json(&agent, "/v1/agent/service/register", &body);
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(reply.text().contains(expected), "{body}: {:?} should say {expected}", reply.text());
    }
    // Script checks need -enable-script-checks (Consul's answer: a 500 with its message).
    let reply = put_json(
        &agent,
        "/v1/agent/service/register",
        &json!({"Name": "web", "Check": {"Args": ["true"], "Interval": "10s"}}),
    );
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(reply.text().starts_with("Scripts are disabled on this agent"), "{reply:?}");
    let reply = put_json(&agent, "/v1/agent/check/register", &json!({"Name": "c", "TTL": "5s", "ServiceID": "nope"}));
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("ServiceID"), "{reply:?}");
    let reply = put_json(&agent, "/v1/agent/check/register", &json!({"TTL": "5s"}));
    assert_eq!((reply.status, reply.text().trim()), (400, "Missing check name"));
    assert_eq!(agent.get("/v1/agent/services").json(), json!({}), "nothing written");
    assert_eq!(agent.get("/v1/agent/checks").json(), json!({}));
    assert_eq!(agent.get("/v1/catalog/service/web").json(), json!([]));

    assert_eq!(put_json(&agent, "/v1/agent/check/register", &json!({"Name": "c", "TTL": "5s"})).status, 200);
    let reply = put_json(&agent, "/v1/agent/check/update/c", &json!({"Status": "fine"}));
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("status"), "{reply:?}");
    assert_eq!(agent.get("/v1/agent/checks").json()["c"]["Status"], "critical", "unchanged");
    let reply = agent.put("/v1/agent/check/pass/nope", b"");
    assert_eq!((reply.status, reply.text().trim()), (404, "Unknown check \"nope\""));
    assert_eq!(agent.put("/v1/agent/check/deregister/nope", b"").status, 404);
    assert_eq!(agent.get("/v1/agent/service/register").status, 405);
}

#[test]
fn the_agent_writes_back_what_it_owns_and_leaves_catalog_registrations_alone() {
    let agent = Agent::start("t50-owner", &[]);
    let body = json!({"Name": "owned", "Port": 7000, "Check": {"TTL": "60s", "Status": "passing"}});
    assert_eq!(put_json(&agent, "/v1/agent/service/register", &body).status, 200);
    // A service registered through the catalog on the agent's own node: not the agent's.
    let catalog = json!({"Node": "t50-owner", "Address": "127.0.0.1", "Service": {"Service": "foreign", "Port": 7001}});
    assert_eq!(put_json(&agent, "/v1/catalog/register", &catalog).text().trim(), "true");
    assert!(agent.get("/v1/agent/services").json().get("foreign").is_none(), "not an agent service");

    // The agent's service removed behind its back is written again by the next sync (10 s).
    let reply = put_json(&agent, "/v1/catalog/deregister", &json!({"Node": "t50-owner", "ServiceID": "owned"}));
    assert_eq!(reply.text().trim(), "true");
    assert_eq!(agent.get("/v1/catalog/service/owned").json(), json!([]));
    eventually(std::time::Duration::from_secs(15), "the agent writes its service back", || {
        agent.get("/v1/health/service/owned?passing").json().as_array().is_some_and(|rows| rows.len() == 1)
    });
    // ... and the catalog's own registration is still there (Consul's anti-entropy would have
    // removed it: hashicorp/consul#7513).
    assert_eq!(agent.get("/v1/catalog/service/foreign").json().as_array().unwrap().len(), 1);
}
