//! rs-consul (crates.io 0.15), unchanged, against a real `consul-lite agent -dev`: KV read,
//! write, CAS, a blocking read, delete, its lock API (session + acquire, a second acquirer
//! refused, release on drop), and the health of the `consul` service.

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use rs_consul::{
    Config, Consul, ConsulError, CreateOrUpdateKeyRequest, DeleteKeyRequest, GetServiceNodesRequest, LockRequest,
    ReadKeyRequest,
};

fn client(agent: &Agent) -> Consul {
    Consul::new(Config { address: format!("http://127.0.0.1:{}", agent.http), token: None, ..Config::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_consul_works_unchanged() {
    let agent = tokio::task::spawn_blocking(|| Agent::start("rs-node", &[])).await.unwrap();
    let consul = client(&agent);

    let put = |key, value: &str| {
        consul.create_or_update_key(CreateOrUpdateKeyRequest { key, ..Default::default() }, value.as_bytes().to_vec())
    };
    let (ok, _) = put("rs/a", "one").await.unwrap();
    assert!(ok);
    let read = consul.read_key(ReadKeyRequest { key: "rs/a", ..Default::default() }).await.unwrap();
    assert_eq!(read.response.len(), 1, "rs-consul sends recurse=false; as in Consul the prefix is read");
    let entry = &read.response[0];
    assert_eq!(entry.value.as_deref(), Some("one"));
    assert!(read.index >= entry.modify_index as u64);

    // CAS: a stale index is refused, the current one accepted.
    let cas = |index: i64, value: &str| {
        consul.create_or_update_key(
            CreateOrUpdateKeyRequest { key: "rs/a", check_and_set: Some(index), ..Default::default() },
            value.as_bytes().to_vec(),
        )
    };
    assert!(!cas(entry.modify_index + 100, "x").await.unwrap().0);
    assert!(cas(entry.modify_index, "two").await.unwrap().0);

    // A blocking read with the current index and nothing changing answers at the wait.
    let index = consul.read_key(ReadKeyRequest { key: "rs/a", ..Default::default() }).await.unwrap().index;
    let started = Instant::now();
    let blocked = consul
        .read_key(ReadKeyRequest {
            key: "rs/a",
            index: Some(index),
            wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(blocked.index, index);
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());

    // Locks: get_lock creates a session and acquires; a second caller is refused with the
    // key's index; dropping the lock releases it.
    let request = LockRequest { key: "rs/lock", timeout: Duration::from_secs(10), ..Default::default() };
    let lock = consul.get_lock(request, b"holder-1").await.unwrap();
    let held = consul.read_key(ReadKeyRequest { key: "rs/lock", ..Default::default() }).await.unwrap();
    assert_eq!(held.response[0].session.as_deref(), Some(lock.session_id.as_str()));
    match consul.get_lock(request, b"holder-2").await {
        Err(ConsulError::LockAcquisitionFailure(index)) => assert!(index > 0),
        other => panic!("a second acquirer must be refused, got {:?}", other.map(|lock| lock.session_id.clone())),
    }
    let lock_session = lock.session_id.clone();
    // The release on drop is a blocking request (ureq).
    tokio::task::block_in_place(|| drop(lock));
    let released = consul.read_key(ReadKeyRequest { key: "rs/lock", ..Default::default() }).await.unwrap();
    assert_eq!(released.response[0].session, None, "released by {lock_session} on drop");

    // Delete (rs-consul always sends recurse=false: a prefix delete, as in Consul).
    assert!(consul.delete_key(DeleteKeyRequest { key: "rs/a", ..Default::default() }).await.unwrap());
    assert!(consul.read_key(ReadKeyRequest { key: "rs/a", ..Default::default() }).await.is_err(), "404");

    // The server's own service, healthy through serfHealth.
    let nodes = consul
        .get_service_nodes(GetServiceNodesRequest { service: "consul", passing: true, ..Default::default() }, None)
        .await
        .unwrap();
    assert_eq!(nodes.response.len(), 1);
    assert_eq!(nodes.response[0].node.node, "rs-node");

    tokio::task::spawn_blocking(move || drop(agent)).await.unwrap();
}
