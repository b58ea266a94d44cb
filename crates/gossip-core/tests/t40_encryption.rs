//! Encryption: nodes sharing a key form a cluster; a node with another key (or none) cannot join
//! and is never listed.

mod common;

use std::time::Duration;

use common::{config, init_tracing, shutdown_all, CONVERGE};
use gossip_core::{JoinError, Key, Keyring, Node, NodeConfig};

fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; 32]).unwrap()
}

fn encrypted(name: &str, keyring: Keyring) -> NodeConfig {
    NodeConfig { keyring: Some(keyring), stream_timeout: Duration::from_secs(3), ..config(name) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_keyring_forms_a_cluster_and_other_keys_cannot_join() {
    init_tracing();
    let nodes = common::cluster(3, |i| encrypted(&format!("secret-{i}"), Keyring::new(key(1)))).await;
    let seed = nodes[0].advertise_addr();

    // Another key: the push-pull request cannot be opened, the join fails.
    let intruder = Node::start(encrypted("intruder", Keyring::new(key(2)))).await.unwrap();
    let err = intruder.join(&[seed]).await.unwrap_err();
    assert!(matches!(&err, JoinError::Unreachable { seeds, .. } if seeds == &[seed]), "{err:?}");

    // No key at all: refused as well.
    let plain = Node::start(NodeConfig { stream_timeout: Duration::from_secs(3), ..config("plain") }).await.unwrap();
    assert!(plain.join(&[seed]).await.is_err());

    // A node whose primary key is the cluster's, with a second key installed next to it (as
    // during a rotation), joins.
    let mut rotating = Keyring::new(key(1));
    rotating.install(key(3));
    let rotating = Node::start(encrypted("rotating", rotating)).await.unwrap();
    let everyone: Vec<_> = nodes.iter().map(|node| node.advertise_addr()).collect();
    assert_eq!(rotating.join(&everyone).await, Ok(3));

    // Give gossip time to spread anything that leaked; the outsiders are never listed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        for node in nodes.iter().chain([&rotating]) {
            let names: Vec<String> = node.members().into_iter().map(|m| m.name.into()).collect();
            assert!(!names.iter().any(|n| n == "intruder" || n == "plain"), "{names:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::wait_until("the rotating node is known to all", CONVERGE, || {
        nodes.iter().all(|node| common::alive_count(node) == 4)
    })
    .await;
    assert_eq!(intruder.members().len(), 1);
    assert_eq!(plain.members().len(), 1);

    let mut all = nodes;
    all.extend([intruder, plain, rotating]);
    shutdown_all(all).await;
}
