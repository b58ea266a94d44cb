//! Malformed, foreign and future packets are dropped, counted and change nothing.

mod common;

use common::Cluster;
use gossip_transport::{wire, Codec, Key, Keyring};
use rand::SeedableRng;
use swim::{Config, State};

fn snapshot(c: &Cluster, i: usize) -> Vec<(String, State, swim::Incarnation)> {
    c.nodes[i].members().map(|m| (m.name.to_string(), m.state, m.incarnation)).collect()
}

#[test]
fn garbage_is_counted_and_changes_nothing() {
    let mut c = Cluster::new(3, Config::lan(), 11);
    let before = snapshot(&c, 0);
    let from = common::addr(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let inputs: Vec<Vec<u8>> = vec![vec![], vec![0x47], vec![0xff; 2000], b"GET / HTTP/1.1\r\n\r\n".to_vec()];
    for bytes in &inputs {
        c.inject(0, from, bytes);
    }
    // Another cluster's label.
    let other = Codec::new("other-cluster").unwrap();
    let ping = wire::Message {
        body: Some(wire::message::Body::Suspect(wire::Suspect {
            node: "node1".into(),
            generation: 1,
            incarnation: 50,
            from: "evil".into(),
            evidence: wire::Evidence::Refused as i32,
        })),
    };
    let foreign = other.encode_packet(std::slice::from_ref(&ping), &mut rng);
    c.inject(0, from, &foreign);
    // Encrypted with a key this cluster does not have.
    let keyed = Codec::new("").unwrap().with_keyring(Keyring::new(Key::generate(&mut rng)));
    let encrypted = keyed.encode_packet(std::slice::from_ref(&ping), &mut rng);
    c.inject(0, from, &encrypted);
    // A future major version.
    let mut future = Codec::new("").unwrap().encode_packet(std::slice::from_ref(&ping), &mut rng).to_vec();
    future[1] = 9;
    c.inject(0, from, &future);

    let dropped: u64 = c.nodes[0].stats().dropped.values().sum();
    assert_eq!(dropped, 7, "{:?}", c.nodes[0].stats().dropped);
    assert_eq!(snapshot(&c, 0), before);
    // And a valid one with the same content does change state: the test can fail.
    let valid = Codec::new("").unwrap().encode_packet(std::slice::from_ref(&ping), &mut rng);
    c.inject(0, from, &valid);
    assert_eq!(c.state(0, 1), Some(State::Suspect));
}

#[test]
fn a_name_claimed_from_another_address_is_refused() {
    let mut c = Cluster::new(3, Config::lan(), 12);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let impostor = wire::Message {
        body: Some(wire::message::Body::Alive(wire::Alive {
            node: "node1".into(),
            generation: 1,
            incarnation: 99,
            addr: Some(wire::Address { ip: vec![10, 9, 9, 9].into(), port: 7946 }),
            tags: vec![],
            protocol_min: 1,
            protocol_max: 1,
            protocol_cur: 1,
        })),
    };
    let bytes = Codec::new("").unwrap().encode_packet(&[impostor], &mut rng);
    c.inject(0, common::addr(2), &bytes);
    assert_eq!(c.nodes[0].member("node1").unwrap().addr, common::addr(1));
    assert!(c.events.iter().any(|(_, i, e)| *i == 0 && matches!(e, swim::Event::NameConflict { .. })));
}
