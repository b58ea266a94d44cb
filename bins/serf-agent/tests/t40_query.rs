//! Queries: responses from handlers, acks, node and tag filters, JSON output; user events.

mod common;

use std::time::Duration;

use common::{cluster, stderr, stdout};

#[test]
fn query_responses_and_filters() {
    let dir = common::tempdir();
    let agents = cluster(dir.path(), "q", 3, |index, spec| {
        let role = if index == 2 { "db" } else { "web" };
        spec.args([
            "-tag".to_owned(),
            format!("role={role}"),
            "-event-handler".to_owned(),
            "query:uptime=echo \"$SERF_SELF_NAME up $SERF_QUERY_NAME\"; cat".to_owned(),
            "-event-handler".to_owned(),
            "query:slow=sleep 30".to_owned(),
        ])
    });
    let client = &agents[0];

    // Every node acks and answers; its stdout (with the payload from stdin) is the response.
    let output = client.cli(&["query", "-timeout", "2s", "uptime", "!"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("Query 'uptime' dispatched"), "{text}");
    for name in ["q0", "q1", "q2"] {
        assert!(text.contains(&format!("Ack from '{name}'")), "{text}");
        assert!(text.contains(&format!("Response from '{name}': {name} up uptime\n!")), "{text}");
    }
    assert!(text.contains("Total Acks: 3") && text.contains("Total Responses: 3"), "{text}");

    // Filter by node.
    let output = client.cli(&["query", "-timeout", "2s", "-node", "q1", "-format", "json", "uptime"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    assert_eq!(json["acks"], serde_json::json!(["q1"]), "{json}");
    assert_eq!(json["responses"].as_object().unwrap().len(), 1, "{json}");

    // Filter by tag (a regular expression).
    let output = client.cli(&["query", "-timeout", "2s", "-tag", "role=^db$", "-format", "json", "uptime"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    assert_eq!(json["acks"], serde_json::json!(["q2"]), "{json}");
    assert!(json["responses"]["q2"].as_str().unwrap().starts_with("q2 up"), "{json}");

    // Without acks; a query nobody handles gets acks but no response; a handler still running at
    // the deadline answers nothing.
    let output = client.cli(&["query", "-timeout", "1s", "-no-ack", "-format", "json", "uptime"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    assert_eq!(json["acks"], serde_json::json!([]), "{json}");
    assert_eq!(json["responses"].as_object().unwrap().len(), 3, "{json}");
    let output = client.cli(&["query", "-timeout", "1s", "-format", "json", "slow"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    assert_eq!(json["acks"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json["responses"].as_object().unwrap().len(), 0, "{json}");

    // The raw stream: NDJSON lines ending with "done".
    let (status, body) = client.http("POST", "/v1/query", r#"{"name":"uptime","timeout":"1s","filter_nodes":["q0"]}"#);
    assert_eq!(status, 200);
    let lines: Vec<serde_json::Value> = body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.first().unwrap()["type"], "started", "{body}");
    assert_eq!(lines.last().unwrap()["type"], "done", "{body}");
    assert!(lines.iter().any(|line| line["type"] == "response" && line["from"] == "q0"), "{body}");

    // Internal names are refused.
    let (status, body) = client.http("POST", "/v1/query", r#"{"name":"_serf_ping"}"#);
    assert_eq!(status, 400, "{body}");

    // Reachability: every member acks the internal ping.
    let output = client.cli(&["reachability", "-format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["missing"], serde_json::json!([]), "{json}");
    assert_eq!(json["acks"].as_array().unwrap().len(), 3, "{json}");
}

#[test]
fn user_events_reach_every_stream() {
    let dir = common::tempdir();
    let agents = cluster(dir.path(), "e", 2, |_, spec| spec);
    // Follow agent 1's event stream in a thread; read until the event shows up.
    let addr = agents[1].spec.rpc_addr();
    let reader = std::thread::spawn(move || {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(stream, "GET /v1/stream?type=user:hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let reader = BufReader::new(stream);
        for line in reader.lines() {
            let Ok(line) = line else { return None };
            if line.contains("\"event\":\"user\"") {
                return Some(line);
            }
        }
        None
    });
    std::thread::sleep(Duration::from_millis(500));
    let output = agents[0].cli(&["event", "-coalesce=false", "ignored", "x"]);
    assert!(output.status.success());
    let output = agents[0].cli(&["event", "hello", "world"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("Event 'hello' dispatched! Coalescing enabled: true"), "{}", stdout(&output));
    let line = reader.join().unwrap().expect("the event on the stream");
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["name"], "hello");
    assert_eq!(record["payload"], "world");
}
