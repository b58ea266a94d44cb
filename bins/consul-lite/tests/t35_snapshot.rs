//! `consul-lite snapshot save | restore` and `GET | PUT /v1/snapshot` on three `-server`
//! processes: a snapshot saved through one server and restored through another replaces the
//! registry on every server at once (keys written after the save are gone, deleted ones are
//! back), blocking queries wake and no index goes back, a damaged archive is refused with a
//! 400 and changes nothing.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::process::Command;
use std::time::Duration;

use servers::{agreed_leader, eventually, Server, WAIT};

const T: Duration = Duration::from_secs(15);

fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_consul-lite"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", server.http))
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .expect("run consul-lite");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn put(server: &Server, key: &str, value: &str) {
    let r = server.call("PUT", &format!("/v1/kv/{key}"), value.as_bytes(), T).expect("answer");
    assert_eq!((r.status, r.text().trim()), (200, "true"), "PUT {key}");
}

/// `?consistent&raw` value of `key` on `server` (`None`: 404).
fn value(server: &Server, key: &str) -> Option<String> {
    let r = server.call("GET", &format!("/v1/kv/{key}?consistent&raw"), b"", T).expect("answer");
    match r.status {
        200 => Some(r.text()),
        404 => None,
        other => panic!("GET {key}: {other} {}", r.text()),
    }
}

#[test]
fn a_snapshot_restored_through_another_server_replaces_the_registry_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let cluster = servers::cluster("p", 3, root.path());
    let leader = eventually(WAIT, "a leader", || agreed_leader(&cluster));
    let (a, b) = (&cluster[(leader + 1) % 3], &cluster[(leader + 2) % 3]);
    // The leader registers the servers' own nodes (serfHealth) as it sees them: let those writes
    // land first, so that nothing but this test writes between the save and the read below.
    eventually(WAIT, "the three servers passing in the catalog", || {
        let r = a.call("GET", "/v1/health/state/passing?consistent", b"", T).ok()?;
        let checks: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let serf = checks.as_array()?.iter().filter(|c| c["CheckID"] == "serfHealth").count();
        (serf == 3).then_some(())
    });

    put(a, "app/one", "1");
    put(b, "app/two", "2");
    put(a, "gone-later", "x");

    // Saved through a follower, with the read barrier: both writes are in it.
    let file = root.path().join("backup.snap");
    let (ok, out, err) = cli(a, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("Saved and verified snapshot to index "), "{out}");
    let saved_index: u64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let http = b.call("GET", "/v1/snapshot", b"", T).unwrap();
    assert_eq!(http.status, 200);
    assert_eq!(http.index(), saved_index, "X-Consul-Index is the index the snapshot was taken at");
    assert!(http.body.starts_with(b"consul-lite snapshot\n"));

    // Changes after the save: a new key, a changed one, a deleted one.
    put(b, "app/three", "3");
    put(a, "app/one", "changed");
    let r = a.call("DELETE", "/v1/kv/gone-later", b"", T).unwrap();
    assert_eq!(r.status, 200);
    let before_restore = a.call("GET", "/v1/kv/app/one", b"", T).unwrap().index();

    // A blocking query on a key the restore brings back.
    let watcher = {
        let port = b.http;
        let index = b.call("GET", "/v1/kv/gone-later", b"", T).unwrap().index();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let r = servers::call(port, "GET", &format!("/v1/kv/gone-later?index={index}&wait=20s"), b"", T * 2)
                .expect("answer");
            (r.status, r.index(), index, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));

    // A damaged archive is refused by the server with a 400, and nothing changes.
    let mut damaged = std::fs::read(&file).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let r = a.call("PUT", "/v1/snapshot", &damaged, T).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("checksum"), "{}", r.text());
    let r = a.call("PUT", "/v1/snapshot", b"not a snapshot", T).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(value(b, "app/one").as_deref(), Some("changed"));
    let (ok, _, err) = cli(a, &["snapshot", "restore", root.path().join("missing.snap").to_str().unwrap()]);
    assert!(!ok && err.contains("missing.snap"), "{err}");

    // Restored through the other follower.
    let (ok, out, err) = cli(b, &["snapshot", "restore", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "Restored snapshot");
    for server in &cluster {
        assert_eq!(value(server, "app/one").as_deref(), Some("1"), "on {}", server.name);
        assert_eq!(value(server, "app/two").as_deref(), Some("2"), "on {}", server.name);
        assert_eq!(value(server, "gone-later").as_deref(), Some("x"), "on {}", server.name);
        assert_eq!(value(server, "app/three"), None, "on {}", server.name);
        let index = server.call("GET", "/v1/kv/app/one?consistent", b"", T).unwrap().index();
        assert!(index > before_restore, "the index went back on {}: {index} <= {before_restore}", server.name);
    }
    let (status, woke_at, waited_from, took) = watcher.join().unwrap();
    assert_eq!(status, 200, "the restored key is there for the blocking query");
    assert!(woke_at > waited_from, "{woke_at} > {waited_from}");
    assert!(took < Duration::from_secs(15), "the blocking query woke only after {took:?}");

    // Writes go on from there, and a new snapshot holds them.
    put(a, "app/after", "4");
    let (ok, out, err) = cli(a, &["snapshot", "save", root.path().join("again.snap").to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let again: u64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(again > saved_index);
    eprintln!("saved at {saved_index}, restored over {before_restore}, saved again at {again}");
}
