//! Cluster-wide key rotation through the internal key queries: install, use, remove, list, with
//! per-node results; a node left with the old key cannot join afterwards; the keyring file.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::serf::{serf_cluster, serf_config, shutdown_serfs, TempDir};
use common::{init_tracing, wait_until, CONVERGE};
use gossip_core::{Key, KeyResponse, Keyring, KeyringOp, Serf, SerfConfig, SerfError};

fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; 32]).unwrap()
}

fn encrypted(name: &str, keyring: Keyring) -> SerfConfig {
    let mut config = serf_config(name);
    config.node.keyring = Some(keyring);
    config.node.stream_timeout = Duration::from_secs(3);
    // Key queries are gossiped: the LAN preset's budget (see t70_queries.rs).
    config.node.swim.retransmit_mult = 4;
    config
}

fn counts(pairs: &[(&Key, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(key, count)| (key.to_base64(), *count)).collect()
}

fn assert_success(response: &KeyResponse, nodes: usize) {
    assert!(response.is_success(), "{response:?}");
    assert_eq!((response.num_nodes, response.num_resp, response.num_err), (nodes, nodes, 0), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_across_the_cluster() {
    init_tracing();
    let dir = TempDir::new("keys");
    let keyring_file = dir.path("keyring.json");
    let (old, new) = (key(1), key(2));
    let serfs = serf_cluster(3, |i| {
        let mut config = encrypted(&format!("kr-{i}"), Keyring::new(old.clone()));
        if i == 0 {
            config.keyring_file = Some(keyring_file.clone());
        }
        config
    })
    .await;

    let listed = serfs[1].list_keys().await.unwrap();
    assert_success(&listed, 3);
    assert_eq!(listed.keys, counts(&[(&old, 3)]));
    assert_eq!(listed.primary_keys, counts(&[(&old, 3)]));

    // Install, then use: every node answers, and each step is visible in the next list.
    assert_success(&serfs[0].install_key(new.clone()).await.unwrap(), 3);
    let listed = serfs[2].list_keys().await.unwrap();
    assert_eq!(listed.keys, counts(&[(&old, 3), (&new, 3)]));
    assert_success(&serfs[0].use_key(new.clone()).await.unwrap(), 3);
    let listed = serfs[0].list_keys().await.unwrap();
    assert_eq!(listed.primary_keys, counts(&[(&new, 3)]));

    // The primary key cannot be removed: each node says why.
    let refused = serfs[0].remove_key(new.clone()).await.unwrap();
    assert_eq!((refused.num_resp, refused.num_err), (3, 3), "{refused:?}");
    assert!(!refused.is_success());
    assert_eq!(refused.messages.len(), 3);
    assert!(refused.messages.values().all(|m| m.contains("primary")), "{:?}", refused.messages);
    // A key this node does not hold cannot be made primary: nothing is sent.
    let err = serfs[1].use_key(key(9)).await.unwrap_err();
    assert!(
        matches!(&err, SerfError::KeyNotInstalled { fingerprint } if *fingerprint == key(9).fingerprint()),
        "{err}"
    );
    // Installed on two nodes only: the third refuses and says why (and, as with Serf, is cut off
    // from the other two until it gets the key: repaired by hand at once here).
    let partial = key(9);
    for serf in &serfs[..2] {
        serf.node().keyring(KeyringOp::Install(partial.clone())).await.unwrap();
    }
    let refused = serfs[0].use_key(partial.clone()).await.unwrap();
    assert_eq!((refused.num_resp, refused.num_err), (3, 1), "{refused:?}");
    assert!(refused.messages.get("kr-2").is_some_and(|m| m.contains("not installed")), "{:?}", refused.messages);
    serfs[2].node().keyring(KeyringOp::Install(partial.clone())).await.unwrap();
    assert_success(&serfs[0].use_key(new.clone()).await.unwrap(), 3);
    assert_success(&serfs[0].remove_key(partial).await.unwrap(), 3);

    assert_success(&serfs[1].remove_key(old.clone()).await.unwrap(), 3);
    let listed = serfs[1].list_keys().await.unwrap();
    assert_eq!(listed.keys, counts(&[(&new, 3)]));
    for serf in &serfs {
        assert_eq!(serf.node().keyring(KeyringOp::List).await.unwrap(), std::slice::from_ref(&new));
    }
    // The node with a keyring file wrote the new keyring down.
    let written: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&keyring_file).unwrap()).unwrap();
    assert_eq!(written, [new.to_base64()]);

    // A node still on the old key cannot join any more; one with the new key can.
    let seeds: Vec<_> = serfs.iter().map(|serf| serf.advertise_addr()).collect();
    let stale = Serf::start(encrypted("kr-stale", Keyring::new(old.clone()))).await.unwrap();
    let err = stale.join(&seeds, false).await.unwrap_err();
    assert!(matches!(err, SerfError::Join(_)), "{err:?}");
    let fresh = Serf::start(encrypted("kr-fresh", Keyring::new(new.clone()))).await.unwrap();
    assert_eq!(fresh.join(&seeds, false).await.unwrap(), 3);
    wait_until("the fresh node is known to all", CONVERGE, || serfs.iter().all(|serf| common::serf::alive(serf) == 4))
        .await;
    assert_eq!(stale.members().len(), 1);
    let mut all = serfs;
    all.extend([stale, fresh]);
    shutdown_serfs(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_file_outlives_a_restart() {
    init_tracing();
    let dir = TempDir::new("keyring-file");
    let path = dir.path("keyring.json");
    std::fs::write(&path, format!("[\"{}\", \"{}\"]", key(7).to_base64(), key(8).to_base64())).unwrap();
    // The file wins over the configured keyring.
    let config = SerfConfig { keyring_file: Some(path.clone()), ..encrypted("kf", Keyring::new(key(1))) };
    let serf = Serf::start(config).await.unwrap();
    assert_eq!(serf.node().keyring(KeyringOp::List).await.unwrap(), [key(7), key(8)]);
    assert!(serf.stats().await.unwrap().encrypted);
    serf.shutdown().await;

    std::fs::write(&path, "not json").unwrap();
    let config = SerfConfig { keyring_file: Some(path), ..encrypted("kf", Keyring::new(key(1))) };
    let err = Serf::start(config).await.unwrap_err();
    assert!(matches!(err, SerfError::KeyringFile { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_need_encryption() {
    init_tracing();
    let serfs = serf_cluster(2, |i| serf_config(&format!("plain-{i}"))).await;
    let err = serfs[0].install_key(key(1)).await.unwrap_err();
    assert!(matches!(err, SerfError::NoEncryption), "{err:?}");
    assert!(matches!(serfs[0].list_keys().await, Err(SerfError::NoEncryption)));
    assert!(!serfs[0].stats().await.unwrap().encrypted);
    shutdown_serfs(serfs).await;
}
