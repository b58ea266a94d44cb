//! Encryption: key rotation across 3 nodes (install, use, remove, list, with per-node results and
//! keyring files kept up to date); a node with the wrong key, or none, is kept out.

mod common;

use std::time::Duration;

use common::{cluster, run, stderr, stdout, Agent, AgentSpec};

fn keygen() -> String {
    let output = run(&["keygen"]);
    assert!(output.status.success());
    stdout(&output).trim().to_owned()
}

fn keys_list(agent: &Agent) -> serde_json::Value {
    let output = agent.cli(&["keys", "-list", "-format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

#[test]
fn key_rotation_across_three_nodes() {
    let dir = common::tempdir();
    let (old, new) = (keygen(), keygen());
    let keyrings: Vec<_> = (0..3).map(|i| dir.path().join(format!("k{i}.keyring"))).collect();
    let agents = cluster(dir.path(), "k", 3, |index, spec| {
        spec.args([
            "-encrypt".to_owned(),
            old.clone(),
            "-keyring-file".to_owned(),
            keyrings[index].display().to_string(),
        ])
    });

    let list = keys_list(&agents[0]);
    assert_eq!(list["num_nodes"], 3, "{list}");
    assert_eq!(list["keys"][&old], 3, "{list}");

    let output = agents[1].cli(&["keys", "-install", &new]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("3 of 3 nodes answered, 0 with errors"), "{}", stdout(&output));
    let list = keys_list(&agents[2]);
    assert_eq!((list["keys"][&old].clone(), list["keys"][&new].clone()), (3.into(), 3.into()), "{list}");

    let output = agents[0].cli(&["keys", "-use", &new]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let output = agents[0].cli(&["keys", "-remove", &old]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let list = keys_list(&agents[1]);
    assert_eq!(list["keys"].as_object().unwrap().len(), 1, "{list}");
    assert_eq!(list["keys"][&new], 3, "{list}");

    // The cluster still talks (on the new key), and every keyring file holds only the new key.
    let output = agents[2].cli(&["reachability"]);
    assert!(output.status.success(), "{}", stdout(&output));
    for path in &keyrings {
        let keys: Vec<String> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(keys, vec![new.clone()], "{}", path.display());
    }

    // Removing the primary key is refused per node, and the command fails.
    let output = agents[0].cli(&["keys", "-remove", &new]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));

    // A node with the old key only cannot join; one without encryption neither.
    for (name, args) in [("stranger", vec!["-encrypt".to_owned(), old.clone()]), ("plain", vec![])] {
        let mut outsider = Agent::spawn(
            dir.path(),
            AgentSpec::new(name).args(args).args(["-join".to_owned(), agents[0].spec.gossip_addr()]),
        );
        assert_eq!(outsider.wait_exit(Duration::from_secs(40)), Some(1), "{}", outsider.log_text());
        assert!(outsider.log_text().contains("could not join"), "{}", outsider.log_text());
    }
    std::thread::sleep(Duration::from_secs(1));
    for agent in &agents {
        let names: Vec<String> = agent.members().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["k0", "k1", "k2"], "{names:?}");
    }
    // Bad key text is refused before anything is sent.
    let output = agents[0].cli(&["keys", "-install", "bm90IGEga2V5"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not a valid key"), "{}", stderr(&output));
}
