//! Property tests: what is encoded decodes to the same thing, with and without encryption, across
//! key rotation, and packets built within a budget stay within it.

mod common;

use common::*;
use gossip_transport::{encode_message, wire, Codec, DecodeError, Key, Keyring, PacketBuilder, DEFAULT_PACKET_BUDGET};
use proptest::prelude::*;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

proptest! {
    #[test]
    fn packets_round_trip(codec in codec(), messages in messages(), seed in any::<u64>()) {
        let datagram = codec.encode_packet(&messages, &mut rng(seed));
        let body_len: usize = messages
            .iter()
            .map(|m| PacketBuilder::message_cost(m.encoded_len()))
            .sum();
        prop_assert_eq!(datagram.len(), body_len + codec.overhead());
        prop_assert_eq!(codec.decode_packet(&datagram).expect("own packet"), messages);
    }

    #[test]
    fn stream_messages_round_trip(codec in codec(), msg in stream_message(), seed in any::<u64>()) {
        let frame = codec.encode_stream(&msg, &mut rng(seed));
        prop_assert_eq!(frame.len(), msg.encoded_len() + codec.overhead());
        prop_assert_eq!(codec.decode_stream(&frame).expect("own frame"), msg);
    }

    #[test]
    fn seal_and_open_round_trip(codec in codec(), body in blob(2000), seed in any::<u64>()) {
        let sealed = codec.seal(&body, &mut rng(seed));
        prop_assert_eq!(codec.open(&sealed).expect("own envelope"), body);
    }

    /// A receiver holding the sender's key among others opens the packet, wherever the key sits
    /// in its keyring.
    #[test]
    fn opens_with_the_key_among_others(
        label in label(),
        sender_key in key(),
        others in prop::collection::vec(key(), 0..4),
        position in any::<prop::sample::Index>(),
        messages in messages(),
        seed in any::<u64>(),
    ) {
        let sender = Codec::new(&label).expect("label").with_keyring(Keyring::new(sender_key.clone()));
        let mut keys: Vec<Key> = others.into_iter().filter(|k| *k != sender_key).collect();
        keys.insert(position.index(keys.len() + 1), sender_key.clone());
        let mut ring = Keyring::new(keys[0].clone());
        for key in &keys[1..] {
            ring.install(key.clone());
        }
        let receiver = Codec::new(&label).expect("label").with_keyring(ring);

        let datagram = sender.encode_packet(&messages, &mut rng(seed));
        prop_assert_eq!(receiver.decode_packet(&datagram).expect("key installed"), messages.clone());

        // Without the sender's key, nothing opens it.
        let mut without = receiver.clone();
        let ring = without.keyring_mut().expect("keyring");
        if ring.primary() == &sender_key {
            let other = keys
                .iter()
                .find(|k| **k != sender_key)
                .cloned()
                .unwrap_or_else(|| Key::from_bytes(&[0x5a; 32]).expect("key"));
            ring.install(other.clone());
            ring.use_key(&other).expect("installed");
        }
        ring.remove(&sender_key).expect("not primary any more");
        let err = without.decode_packet(&datagram).unwrap_err();
        prop_assert!(matches!(err, DecodeError::Decrypt { .. }), "{:?}", err);
    }

    /// The rotation `serf keys` performs: install the new key, use it, remove the old one. Packets
    /// sealed with the old primary open until the old key is removed.
    #[test]
    fn key_rotation(
        old in key(),
        new in key(),
        messages in messages(),
        seed in any::<u64>(),
    ) {
        prop_assume!(old != new);
        let mut rng = rng(seed);
        let old_sender = Codec::new("prod").expect("label").with_keyring(Keyring::new(old.clone()));
        let sealed_with_old = old_sender.encode_packet(&messages, &mut rng);

        let mut node = old_sender.clone();
        node.keyring_mut().expect("keyring").install(new.clone());
        prop_assert_eq!(node.decode_packet(&sealed_with_old).expect("old primary"), messages.clone());

        node.keyring_mut().expect("keyring").use_key(&new).expect("installed");
        prop_assert_eq!(node.keyring().expect("keyring").primary(), &new);
        prop_assert_eq!(node.decode_packet(&sealed_with_old).expect("old still installed"), messages.clone());

        // What the node sends now is sealed with the new key: the old-only node cannot open it.
        let sealed_with_new = node.encode_packet(&messages, &mut rng);
        prop_assert_eq!(old_sender.decode_packet(&sealed_with_new).unwrap_err().reason(), "decrypt");

        node.keyring_mut().expect("keyring").remove(&old).expect("not primary");
        prop_assert_eq!(node.decode_packet(&sealed_with_old).unwrap_err().reason(), "decrypt");
        prop_assert_eq!(node.decode_packet(&sealed_with_new).expect("new primary"), messages);
    }

    /// Greedy filling: every accepted message is decoded back in order, a refused one really did
    /// not fit, and the body never exceeds the budget; sealed, the datagram stays within the
    /// packet budget.
    #[test]
    fn packet_builder_respects_budget(
        codec in codec(),
        packet_budget in prop_oneof![0usize..200, Just(DEFAULT_PACKET_BUDGET), 0usize..3000],
        candidates in prop::collection::vec((message(), any::<bool>()), 0..40),
        seed in any::<u64>(),
    ) {
        let body_budget = codec.body_budget(packet_budget);
        let mut builder = PacketBuilder::new(body_budget);
        let mut accepted = Vec::new();
        for (msg, pre_encoded) in candidates {
            let before = builder.remaining();
            let cost = PacketBuilder::message_cost(msg.encoded_len());
            let pushed = if pre_encoded {
                builder.push_encoded(&encode_message(&msg))
            } else {
                builder.push(&msg)
            };
            prop_assert_eq!(pushed, cost <= before);
            if pushed {
                prop_assert_eq!(builder.remaining(), before - cost);
                accepted.push(msg);
            } else {
                prop_assert_eq!(builder.remaining(), before);
            }
            prop_assert_eq!(builder.len(), accepted.len());
        }
        let body = builder.finish();
        prop_assert!(body.len() <= body_budget);
        let decoded = wire::Packet::decode(body.clone()).expect("own body");
        prop_assert_eq!(&decoded.messages, &accepted);

        if !accepted.is_empty() {
            let datagram = codec.seal(&body, &mut rng(seed));
            prop_assert!(datagram.len() <= packet_budget);
            prop_assert_eq!(codec.decode_packet(&datagram).expect("own packet"), accepted);
        }
    }
}
