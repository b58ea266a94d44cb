//! Consul's HTTP API against a real `consul-lite agent -dev`, through a raw HTTP client:
//! KV, headers, blocking queries, sessions and locks, transactions, bad input, the token.

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use serde_json::json;

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn kv_put_get_cas_recurse_keys_raw_delete() {
    let agent = Agent::start("kv", &[]);
    assert_eq!(agent.put("/v1/kv/app/config/a?flags=42", b"one").text().trim(), "true");
    assert_eq!(agent.put("/v1/kv/app/config/b", b"two").text().trim(), "true");
    assert_eq!(agent.put("/v1/kv/app/other", b"three").text().trim(), "true");

    let a = agent.get("/v1/kv/app/config/a");
    assert_eq!(a.status, 200);
    for header in ["x-consul-index", "x-consul-lastcontact", "x-consul-knownleader"] {
        assert!(a.headers.contains_key(header), "{header} missing: {a:?}");
    }
    let row = &a.json()[0];
    assert_eq!(row["Key"], "app/config/a");
    assert_eq!(row["Value"], b64("one"));
    assert_eq!(row["Flags"], 42);
    assert_eq!(row["LockIndex"], 0);
    assert!(row.get("Session").is_none(), "no Session field when not held");
    let modify = row["ModifyIndex"].as_u64().unwrap();
    assert_eq!(a.index(), modify);

    // CAS: a stale index is refused (false, nothing written); the right one is taken.
    assert_eq!(agent.put(&format!("/v1/kv/app/config/a?cas={}", modify - 1), b"x").text().trim(), "false");
    assert_eq!(agent.get("/v1/kv/app/config/a?raw").text(), "one");
    assert_eq!(agent.put(&format!("/v1/kv/app/config/a?cas={modify}"), b"uno").text().trim(), "true");
    assert_eq!(agent.put("/v1/kv/app/config/a?cas=0", b"x").text().trim(), "false", "cas=0: only if absent");
    assert_eq!(agent.put("/v1/kv/app/new?cas=0", b"x").text().trim(), "true");

    // raw: the bytes, text/plain, with the headers.
    let raw = agent.get("/v1/kv/app/config/a?raw");
    assert_eq!(raw.text(), "uno");
    assert!(raw.headers["content-type"].starts_with("text/plain"));
    assert!(raw.index() > modify);

    // recurse (whatever its value, as Consul) with the prefix's index; keys with a separator.
    let tree = agent.get("/v1/kv/app/config?recurse=false");
    let rows = tree.json();
    let rows = rows.as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["app/config/a", "app/config/b"]);
    let highest = rows.iter().map(|r| r["ModifyIndex"].as_u64().unwrap()).max().unwrap();
    assert_eq!(tree.index(), highest);
    assert_eq!(agent.get("/v1/kv/app/?keys&separator=/").json(), json!(["app/config/", "app/new", "app/other"]));
    assert_eq!(agent.get("/v1/kv/?keys").json().as_array().unwrap().len(), 4);

    // delete: cas, then recurse.
    let b_index = agent.get("/v1/kv/app/config/b").json()[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(agent.delete(&format!("/v1/kv/app/config/b?cas={}", b_index + 100)).text().trim(), "false");
    assert_eq!(agent.delete(&format!("/v1/kv/app/config/b?cas={b_index}")).text().trim(), "true");
    assert_eq!(agent.get("/v1/kv/app/config/b").status, 404);
    assert_eq!(agent.delete("/v1/kv/app?recurse").text().trim(), "true");
    assert_eq!(agent.get("/v1/kv/app?recurse").status, 404);
}

#[test]
fn a_missing_key_is_a_404_with_an_index_and_empty_values_are_null() {
    let agent = Agent::start("missing", &[]);
    let missing = agent.get("/v1/kv/nothing/here");
    assert_eq!(missing.status, 404);
    assert!(missing.index() >= 1, "never 0");
    assert!(missing.body.is_empty());
    assert_eq!(agent.get("/v1/kv/nothing/?keys").status, 404);
    agent.put("/v1/kv/empty", b"");
    assert_eq!(agent.get("/v1/kv/empty").json()[0]["Value"], serde_json::Value::Null);
}

#[test]
fn a_blocking_query_wakes_on_its_key_and_not_on_another() {
    let agent = Agent::start("blocking", &[]);
    agent.put("/v1/kv/watched", b"1");
    let index = agent.get("/v1/kv/watched").index();

    // An unrelated write does not wake it: it answers at the wait with the same index.
    let started = Instant::now();
    let port = agent.http;
    let waiter = std::thread::spawn(move || {
        common::request(port, "GET", &format!("/v1/kv/watched?index={index}&wait=1s"), b"", &[])
    });
    std::thread::sleep(Duration::from_millis(300));
    agent.put("/v1/kv/unrelated", b"x");
    agent.put("/v1/kv/watched-not", b"x");
    let answer = waiter.join().unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.index(), index, "same index at the timeout");
    assert!(waited >= Duration::from_millis(1000), "returned early: {waited:?}");
    assert!(waited < Duration::from_millis(1000 + 1000 / 16 + 900), "took {waited:?}");

    // Its own key's write wakes it at once, with the new index.
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        common::request(port, "GET", &format!("/v1/kv/watched?index={index}&wait=30s"), b"", &[])
    });
    std::thread::sleep(Duration::from_millis(300));
    agent.put("/v1/kv/watched", b"2");
    let answer = waiter.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "not woken: {:?}", started.elapsed());
    assert!(answer.index() > index);
    assert_eq!(answer.json()[0]["Value"], b64("2"));

    // A missing key can be waited on until it appears.
    let missing = agent.get("/v1/kv/later").index();
    let waiter = std::thread::spawn(move || {
        common::request(port, "GET", &format!("/v1/kv/later?index={missing}&wait=30s"), b"", &[])
    });
    std::thread::sleep(Duration::from_millis(300));
    agent.put("/v1/kv/later", b"here");
    let answer = waiter.join().unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.index() > missing);
}

#[test]
fn sessions_locks_and_lock_delay() {
    let agent = Agent::start("sessions", &[]);
    // py-consul's lower-case keys; a numeric lockdelay below 1000 is seconds.
    let created =
        agent.put("/v1/session/create", br#"{"name": "web", "ttl": "15s", "lockdelay": 2, "behavior": "release"}"#);
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json()["ID"].as_str().unwrap().to_owned();

    let info = agent.get(&format!("/v1/session/info/{id}"));
    let session = &info.json()[0];
    assert_eq!(session["Name"], "web");
    assert_eq!(session["Node"], "sessions");
    assert_eq!(session["LockDelay"], 2_000_000_000u64, "nanoseconds");
    assert_eq!(session["TTL"], "15s", "a string");
    assert_eq!(session["Behavior"], "release");
    assert_eq!(session["NodeChecks"], json!(["serfHealth"]));
    assert!(info.index() >= 1);
    assert_eq!(agent.get("/v1/session/info/00000000-0000-0000-0000-000000000000").json(), json!([]));
    assert_eq!(agent.get("/v1/session/list").json().as_array().unwrap().len(), 1);
    assert_eq!(agent.get("/v1/session/node/sessions").json().as_array().unwrap().len(), 1);
    assert_eq!(agent.put(&format!("/v1/session/renew/{id}"), b"").json()[0]["ID"], id.as_str());
    assert_eq!(agent.put("/v1/session/renew/00000000-0000-0000-0000-000000000000", b"").status, 404);

    // Acquire, a second session is refused, release, acquire again.
    let other = agent.put("/v1/session/create", br#"{"Name": "other", "LockDelay": "0s"}"#).json()["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={id}"), b"me").text().trim(), "true");
    let held = agent.get("/v1/kv/lock").json();
    assert_eq!(held[0]["Session"], id.as_str());
    assert_eq!(held[0]["LockIndex"], 1);
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={other}"), b"them").text().trim(), "false");
    assert_eq!(agent.put(&format!("/v1/kv/lock?release={other}"), b"").text().trim(), "false");
    assert_eq!(agent.put(&format!("/v1/kv/lock?release={id}"), b"done").text().trim(), "true");
    assert!(agent.get("/v1/kv/lock").json()[0].get("Session").is_none());
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={id}"), b"me").text().trim(), "true");

    // Destroying the holder releases the lock and starts its 2 s lock-delay: a re-acquire is
    // refused inside the window and accepted after it.
    assert_eq!(agent.put(&format!("/v1/session/destroy/{id}"), b"").text().trim(), "true");
    assert!(agent.get("/v1/kv/lock").json()[0].get("Session").is_none());
    let refused_at = Instant::now();
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={other}"), b"them").text().trim(), "false");
    assert!(agent.get("/v1/kv/lock").json()[0].get("Session").is_none(), "nothing written");
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(refused_at.elapsed()));
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={other}"), b"them").text().trim(), "true");
    assert_eq!(agent.get("/v1/kv/lock").json()[0]["LockIndex"], 3);
}

#[test]
fn txn_is_all_or_nothing() {
    let agent = Agent::start("txn", &[]);
    agent.put("/v1/kv/t/a", b"1");
    let index = agent.get("/v1/kv/t/a").json()[0]["ModifyIndex"].as_u64().unwrap();
    let ok = json!([
        {"KV": {"Verb": "cas", "Key": "t/a", "Value": b64("2"), "Index": index}},
        {"kv": {"verb": "set", "key": "t/b", "value": b64("3")}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]);
    let answer = agent.put("/v1/txn", ok.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    let results = answer.json()["Results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[2]["KV"]["Value"], b64("2"));

    let failing = json!([
        {"KV": {"Verb": "set", "Key": "t/c", "Value": b64("4")}},
        {"KV": {"Verb": "cas", "Key": "t/a", "Value": b64("5"), "Index": index}},
    ]);
    let answer = agent.put("/v1/txn", failing.to_string().as_bytes());
    assert_eq!(answer.status, 409, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["Results"], serde_json::Value::Null);
    assert_eq!(body["Errors"][0]["OpIndex"], 1);
    assert_eq!(agent.get("/v1/kv/t/c").status, 404, "the set of the failed transaction is not applied");
    assert_eq!(agent.get("/v1/kv/t/a?raw").text(), "2");

    let unknown = agent.put("/v1/txn", br#"[{"KV": {"Verb": "frobnicate", "Key": "t/a"}}]"#);
    assert_eq!(unknown.status, 409);
}

#[test]
fn bad_input_is_refused_with_consuls_status_and_nothing_written() {
    let agent = Agent::start("bad", &[]);
    let before = agent.get("/v1/kv/?keys").json();

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("PUT", "/v1/session/create", b"{not json".to_vec(), 400, "Request decode failed"),
        ("PUT", "/v1/session/create", br#"{"TTL": "5s"}"#.to_vec(), 400, "Invalid Session TTL"),
        ("PUT", "/v1/session/create", br#"{"TTL": "soon"}"#.to_vec(), 400, "TTL"),
        ("PUT", "/v1/session/create", br#"{"Behavior": "explode"}"#.to_vec(), 400, "Invalid Behavior"),
        ("PUT", "/v1/session/create", br#"{"Node": "nobody"}"#.to_vec(), 500, "nobody"),
        ("PUT", "/v1/kv/big", vec![b'x'; 513 * 1024], 413, "too large"),
        ("PUT", "/v1/kv/k?cas=abc", b"v".to_vec(), 400, "cas"),
        ("PUT", "/v1/kv/k?flags=-1", b"v".to_vec(), 400, "flags"),
        ("PUT", "/v1/kv/k?cas=1&acquire=x", b"v".to_vec(), 400, "Conflicting flags"),
        ("PUT", "/v1/kv/k?acquire=00000000-0000-0000-0000-000000000000", b"v".to_vec(), 500, "session"),
        ("GET", "/v1/kv/k?index=1&wait=forever", Vec::new(), 400, "Invalid wait time"),
        ("GET", "/v1/kv/k?index=abc", Vec::new(), 400, "Invalid index"),
        ("GET", "/v1/kv/k?stale&consistent", Vec::new(), 400, "Cannot specify ?stale with ?consistent"),
        ("PUT", "/v1/txn", b"[{]".to_vec(), 400, "Failed to parse body"),
        ("DELETE", "/v1/kv/k?recurse&cas=1", Vec::new(), 400, "Conflicting flags"),
        ("POST", "/v1/session/create", Vec::new(), 405, "not allowed"),
        ("GET", "/v1/kv/", Vec::new(), 400, "Missing key name"),
    ];
    for (method, path, body, status, message) in cases {
        let answer = agent.request(method, path, &body, &[]);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
        assert!(answer.text().contains(message), "{method} {path}: {:?} lacks {message:?}", answer.text());
        assert!(answer.headers["content-type"].starts_with("text/plain"), "{method} {path}");
    }
    // A value of exactly 512 KiB is accepted.
    assert_eq!(agent.put("/v1/kv/max", &vec![b'y'; 512 * 1024]).text().trim(), "true");
    agent.delete("/v1/kv/max");
    assert_eq!(agent.get("/v1/kv/?keys").json(), before, "nothing written");
    assert!(agent.get("/v1/session/list").json().as_array().unwrap().is_empty(), "no session created");
}

#[test]
fn the_master_token_is_required_everywhere() {
    let agent = Agent::start("acl", &["-acl-master-token", "s3cret"]);
    for path in ["/v1/kv/a", "/v1/agent/members", "/v1/status/leader", "/v1/agent/metrics"] {
        let answer = agent.get(path);
        assert_eq!(answer.status, 403, "{path}");
        assert_eq!(answer.text().trim(), "Permission denied");
    }
    assert_eq!(agent.request("PUT", "/v1/kv/a", b"v", &[("X-Consul-Token", "wrong")]).status, 403);
    assert_eq!(agent.get("/v1/kv/a?token=s3cret").status, 404, "not written by the refused PUT");
    assert_eq!(agent.request("PUT", "/v1/kv/a", b"v", &[("X-Consul-Token", "s3cret")]).text().trim(), "true");
    assert_eq!(agent.get("/v1/kv/a?raw&token=s3cret").text(), "v");
    let (ok, _, stderr) = agent.cli(&["kv", "get", "a"]);
    assert!(!ok && stderr.contains("403"), "{stderr}");
    let (ok, stdout, _) = agent.cli(&["kv", "get", "-token", "s3cret", "a"]);
    assert!(ok && stdout == "v\n", "{stdout}");
}
