//! Property tests: decoders return an error or a value on any input and never panic, be it
//! random bytes or a valid packet damaged by bit flips, truncation, extension or a rewritten
//! header. The `fuzz/` crate at the repository root runs the same decoders under libFuzzer.

mod common;

use common::*;
use gossip_transport::{Codec, Key, Keyring, Refusal, CRC_LEN, PROTOCOL_MAJOR};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Runs every decoder on `bytes`; the test fails if any of them panics. The key-free header
/// check, run by stream readers before the body, agrees with `open`: a header it refuses is
/// refused by `open` for the same reason, and what `open` accepts it accepts.
fn decode_all(codec: &Codec, bytes: &[u8]) {
    let opened = codec.open(bytes);
    let _ = codec.decode_packet(bytes);
    let _ = codec.decode_stream(bytes);
    let _ = Refusal::decode(bytes);
    match (codec.header_check().check(bytes), &opened) {
        (Err(header), Err(open)) => assert_eq!(header.reason(), open.reason()),
        (Err(header), Ok(_)) => panic!("header refused ({header}) but the envelope opens"),
        (Ok(_), _) => {}
    }
}

/// A valid envelope around `body` for `codec`, from a fixed seed.
fn sealed(codec: &Codec, body: &[u8]) -> Vec<u8> {
    codec.seal(body, &mut StdRng::seed_from_u64(1)).to_vec()
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Extend(Vec<u8>),
    Remove(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::FlipBit(i, bit) => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::SetByte(i, value) => {
            let i = i.index(bytes.len());
            bytes[i] = *value;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
    }
}

fn keyed(label: &str) -> Codec {
    let mut ring = Keyring::new(Key::from_bytes(&[1; 32]).expect("key"));
    ring.install(Key::from_bytes(&[2; 16]).expect("key"));
    Codec::new(label).expect("label").with_keyring(ring)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(codec in codec(), bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        decode_all(&codec, &bytes);
    }

    /// Random bytes behind a header that passes the magic, version and label checks.
    #[test]
    fn arbitrary_payload_behind_a_valid_header(
        label in label(),
        encrypted in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![b'G', PROTOCOL_MAJOR, 0, u8::from(encrypted), label.len() as u8];
        bytes.extend_from_slice(label.as_bytes());
        bytes.extend_from_slice(&payload);
        decode_all(&Codec::new(&label).expect("label"), &bytes);
        decode_all(&keyed(&label), &bytes);
    }

    #[test]
    fn mutated_packets(
        codec in codec(),
        messages in messages(),
        mutations in prop::collection::vec(mutation(), 1..6),
        seed in any::<u64>(),
    ) {
        let mut bytes = codec.encode_packet(&messages, &mut StdRng::seed_from_u64(seed)).to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_all(&codec, &bytes);
    }

    #[test]
    fn mutated_stream_frames(
        codec in codec(),
        msg in stream_message(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = codec.encode_stream(&msg, &mut StdRng::seed_from_u64(3)).to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_all(&codec, &bytes);
    }

    /// Damage the protobuf body and then fix up the checksum (or encrypt the damaged body), so
    /// that the garbage reaches the protobuf decoder instead of being caught by the envelope.
    #[test]
    fn mutated_bodies_with_a_valid_envelope(
        label in label(),
        messages in messages(),
        stream in stream_message(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let plain = Codec::new(&label).expect("label");
        let keyed = keyed(&label);
        for original in [
            gossip_transport::encode_message(&messages[0]).to_vec(),
            prost::Message::encode_to_vec(&gossip_transport::wire::Packet { messages: messages.clone() }),
            prost::Message::encode_to_vec(&stream),
        ] {
            let mut body = original;
            for m in &mutations {
                apply(&mut body, m);
            }
            for codec in [&plain, &keyed] {
                let bytes = sealed(codec, &body);
                prop_assert_eq!(codec.open(&bytes).expect("valid envelope"), body.clone());
                decode_all(codec, &bytes);
            }
        }
    }
}

#[test]
fn every_truncation_of_a_valid_packet() {
    let codecs = [Codec::new("prod").expect("label"), keyed("prod")];
    let msg = gossip_transport::wire::Message {
        body: Some(gossip_transport::wire::message::Body::Nack(gossip_transport::wire::Nack { seq: 7 })),
    };
    for codec in &codecs {
        let bytes = codec.encode_packet(std::slice::from_ref(&msg), &mut StdRng::seed_from_u64(9));
        for len in 0..bytes.len() {
            let err = codec.decode_packet(&bytes[..len]).unwrap_err();
            assert!(["too_short", "checksum", "decrypt"].contains(&err.reason()), "len {len}: {err:?}");
        }
        assert!(bytes.len() > CRC_LEN);
    }
}
