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

    // Deregister the check, then the service, then the node.
    let reply = put_json(&agent, "/v1/catalog/deregister", &json!({"node": "ext-1", "CheckID": "node-disk"}));
    assert_eq!(reply.text().trim(), "true");
    assert!(agent.get("/v1/health/node/ext-1").json().as_array().unwrap().iter().all(|c| c["CheckID"] != "node-disk"));
    let reply = put_json(&agent, "/v1/catalog/deregister", &json!({"Node": "ext-1", "ServiceID": "web-1"}));
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
