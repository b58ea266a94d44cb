//! Proptest strategies for the wire messages, shared by the integration tests.

// Each test file uses a different subset of the strategies.
#![allow(dead_code)]

use bytes::Bytes;
use gossip_transport::wire::{self, message, stream_message};
use gossip_transport::{Codec, Key, Keyring};
use proptest::prelude::*;

pub(crate) fn name() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{0,24}"
}

pub(crate) fn any_text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(40).collect())
}

pub(crate) fn blob(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub(crate) fn address() -> impl Strategy<Value = wire::Address> {
    (prop_oneof![Just(4usize), Just(16usize), 0usize..20], any::<u32>()).prop_flat_map(|(len, port)| {
        prop::collection::vec(any::<u8>(), len).prop_map(move |ip| wire::Address { ip: ip.into(), port })
    })
}

pub(crate) fn tags() -> impl Strategy<Value = Vec<wire::Tag>> {
    prop::collection::vec((any_text(), any_text()).prop_map(|(key, value)| wire::Tag { key, value }), 0..5)
}

pub(crate) fn suspect() -> impl Strategy<Value = wire::Suspect> {
    // Any evidence value, unknown ones included: a newer peer may send one this build lacks.
    (name(), any::<u64>(), any::<u64>(), name(), any::<i32>()).prop_map(
        |(node, generation, incarnation, from, evidence)| wire::Suspect {
            node,
            generation,
            incarnation,
            from,
            evidence,
        },
    )
}

pub(crate) fn alive() -> impl Strategy<Value = wire::Alive> {
    (name(), any::<u64>(), any::<u64>(), prop::option::of(address()), tags(), any::<(u32, u32, u32)>()).prop_map(
        |(node, generation, incarnation, addr, tags, (min, max, cur))| wire::Alive {
            node,
            generation,
            incarnation,
            addr,
            tags,
            protocol_min: min,
            protocol_max: max,
            protocol_cur: cur,
        },
    )
}

pub(crate) fn ping() -> impl Strategy<Value = wire::Ping> {
    (any::<u32>(), name(), name(), prop::option::of(suspect())).prop_map(|(seq, target, source, buddy)| wire::Ping {
        seq,
        target,
        source,
        buddy,
    })
}

pub(crate) fn ack() -> impl Strategy<Value = wire::Ack> {
    (any::<u32>(), blob(64)).prop_map(|(seq, payload)| wire::Ack { seq, payload })
}

pub(crate) fn body() -> impl Strategy<Value = message::Body> {
    prop_oneof![
        ping().prop_map(message::Body::Ping),
        (any::<u32>(), name(), prop::option::of(address()), any::<bool>(), name(), prop::option::of(address()),)
            .prop_map(|(seq, target, target_addr, want_nack, source, source_addr)| {
                message::Body::IndirectPing(wire::IndirectPing {
                    seq,
                    target,
                    target_addr,
                    want_nack,
                    source,
                    source_addr,
                })
            }),
        ack().prop_map(message::Body::Ack),
        any::<u32>().prop_map(|seq| message::Body::Nack(wire::Nack { seq })),
        alive().prop_map(message::Body::Alive),
        suspect().prop_map(message::Body::Suspect),
        (name(), any::<u64>(), any::<u64>(), name(), any::<bool>()).prop_map(
            |(node, generation, incarnation, from, left)| {
                message::Body::Dead(wire::Dead { node, generation, incarnation, from, left })
            }
        ),
        blob(300).prop_map(|payload| message::Body::User(wire::User { payload })),
    ]
}

pub(crate) fn message() -> impl Strategy<Value = wire::Message> {
    body().prop_map(|body| wire::Message { body: Some(body) })
}

pub(crate) fn messages() -> impl Strategy<Value = Vec<wire::Message>> {
    prop::collection::vec(message(), 1..12)
}

pub(crate) fn member_state() -> impl Strategy<Value = wire::MemberState> {
    (alive(), 0i32..4).prop_map(|(a, status)| wire::MemberState {
        node: a.node,
        generation: a.generation,
        incarnation: a.incarnation,
        addr: a.addr,
        tags: a.tags,
        status,
        protocol_min: a.protocol_min,
        protocol_max: a.protocol_max,
        protocol_cur: a.protocol_cur,
    })
}

pub(crate) fn stream_message() -> impl Strategy<Value = wire::StreamMessage> {
    prop_oneof![
        (any::<bool>(), prop::collection::vec(member_state(), 0..20), blob(200)).prop_map(
            |(join, members, user_state)| {
                stream_message::Body::PushPull(wire::PushPull { join, members, user_state })
            }
        ),
        ping().prop_map(stream_message::Body::Ping),
        ack().prop_map(stream_message::Body::Ack),
        any_text().prop_map(stream_message::Body::Error),
    ]
    .prop_map(|body| wire::StreamMessage { body: Some(body) })
}

/// A key of any valid length.
pub(crate) fn key() -> impl Strategy<Value = Key> {
    prop_oneof![Just(16usize), Just(24usize), Just(32usize)].prop_flat_map(|len| {
        prop::collection::vec(any::<u8>(), len).prop_map(|bytes| Key::from_bytes(&bytes).expect("valid key length"))
    })
}

/// A cluster label, usually short, sometimes empty or at the 255-byte limit.
pub(crate) fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9-]{0,12}",
        1 => Just(String::new()),
        1 => Just("x".repeat(255)),
    ]
}

/// A codec, plaintext or with a keyring.
pub(crate) fn codec() -> impl Strategy<Value = Codec> {
    (label(), prop::option::of(key())).prop_map(|(label, key)| {
        let codec = Codec::new(&label).expect("label within 255 bytes");
        match key {
            Some(key) => codec.with_keyring(Keyring::new(key)),
            None => codec,
        }
    })
}
