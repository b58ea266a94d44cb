//! Criterion micro-benchmarks of the protocol crates:
//!
//! - `packet/encode`, `packet/decode`: a full compound datagram (a ping and alive messages with
//!   tags, 1400-byte budget), plaintext (CRC32) and encrypted (AES-256-GCM); throughput in bytes.
//! - `push_pull/decode_1000`: a 1,000-member push-pull frame decoded; `push_pull/merge_1000_new` and
//!   `merge_1000_known`: [`membership::MemberTable::merge`] of 1,000 members into a table that
//!   knows none of them (a join) or all of them (steady anti-entropy);
//!   `push_pull/swim_handle_1000`: the whole path a node runs on an incoming push-pull
//!   (`swim::Swim::handle_stream_request`: decode, convert, merge, events, encode the answer).
//! - `broadcast/fill_packet`: one datagram's worth of piggybacked news taken from a queue of 1,000
//!   alive messages.
//! - `sim/protocol_period_1000`: one protocol period (1 s of virtual time) of a formed
//!   1,000-node cluster in `gossip-sim`, every message encoded, sent and decoded.
//!
//! Sample sizes are small so that `cargo bench -p cluster-bench --bench protocol` ends in about
//! two minutes (most of it forming the 1,000-node cluster once).

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gossip_sim::{SimConfig, Simulation, TraceLevel};
use gossip_transport::{encode_message, wire, Codec, Key, Keyring, PacketBuilder};
use membership::{AliveClaim, BroadcastQueue, Incarnation, MemberTable, ProtocolRange, State, Tags};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BUDGET: usize = 1400;
const PROTOCOL: ProtocolRange = ProtocolRange { min: 1, max: 1, cur: 1 };

fn addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946))
}

fn tags(i: usize) -> Tags {
    Tags::from_pairs([("role", if i == 0 { "primary" } else { "standby" }), ("dc", "eu-west-1"), ("rack", "r12")])
        .expect("small tags")
}

fn claim(i: usize) -> AliveClaim {
    AliveClaim {
        name: format!("node-{i:04}"),
        addr: addr(i),
        incarnation: Incarnation::new(1_700_000_000_000_000 + i as u64, 3),
        tags: tags(i),
        protocol: PROTOCOL,
    }
}

fn wire_addr(a: SocketAddr) -> wire::Address {
    let SocketAddr::V4(v4) = a else { unreachable!("IPv4 only here") };
    wire::Address { ip: v4.ip().octets().to_vec().into(), port: u32::from(v4.port()) }
}

fn wire_tags(t: &Tags) -> Vec<wire::Tag> {
    t.iter().map(|(k, v)| wire::Tag { key: k.into(), value: v.into() }).collect()
}

fn alive_message(i: usize) -> wire::Message {
    let c = claim(i);
    wire::Message {
        body: Some(wire::message::Body::Alive(wire::Alive {
            node: c.name,
            generation: c.incarnation.generation,
            incarnation: c.incarnation.incarnation,
            addr: Some(wire_addr(c.addr)),
            tags: wire_tags(&c.tags),
            protocol_min: 1,
            protocol_max: 1,
            protocol_cur: 1,
        })),
    }
}

/// A ping followed by as many alive messages as fit the budget.
fn full_packet(codec: &Codec) -> Vec<wire::Message> {
    let mut builder = PacketBuilder::new(codec.body_budget(BUDGET));
    let ping = wire::Message {
        body: Some(wire::message::Body::Ping(wire::Ping {
            seq: 42,
            target: "node-0001".into(),
            source: "node-0000".into(),
            buddy: None,
        })),
    };
    let mut messages = vec![ping.clone()];
    assert!(builder.push(&ping));
    for i in 0.. {
        let m = alive_message(i);
        if !builder.push(&m) {
            break;
        }
        messages.push(m);
    }
    messages
}

fn packet(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let plain = Codec::new("bench").expect("label");
    let key = Key::from_bytes(&[7u8; 32]).expect("32-byte key");
    let sealed = Codec::new("bench").expect("label").with_keyring(Keyring::new(key));
    let mut group = c.benchmark_group("packet");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (name, codec) in [("plaintext", &plain), ("aes-gcm", &sealed)] {
        let messages = full_packet(codec);
        let datagram = codec.encode_packet(&messages, &mut rng);
        assert!(datagram.len() <= BUDGET, "{} > {BUDGET}", datagram.len());
        group.throughput(Throughput::Bytes(datagram.len() as u64));
        group.bench_function(format!("encode/{name}/{}msgs", messages.len()), |b| {
            b.iter(|| codec.encode_packet(black_box(&messages), &mut rng));
        });
        group.bench_function(format!("decode/{name}/{}msgs", messages.len()), |b| {
            b.iter(|| codec.decode_packet(black_box(&datagram)).expect("valid"));
        });
    }
    group.finish();
}

fn push_pull_frame(codec: &Codec, n: usize, rng: &mut ChaCha8Rng) -> Bytes {
    let members = (1..=n)
        .map(|i| {
            let c = claim(i);
            wire::MemberState {
                node: c.name,
                generation: c.incarnation.generation,
                incarnation: c.incarnation.incarnation,
                addr: Some(wire_addr(c.addr)),
                tags: wire_tags(&c.tags),
                status: wire::MemberStatus::Alive as i32,
                protocol_min: 1,
                protocol_max: 1,
                protocol_cur: 1,
            }
        })
        .collect();
    let msg = wire::StreamMessage {
        body: Some(wire::stream_message::Body::PushPull(wire::PushPull {
            join: false,
            members,
            user_state: Bytes::new(),
        })),
    };
    codec.encode_stream(&msg, rng)
}

fn push_pull(c: &mut Criterion) {
    const N: usize = 1000;
    let now = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let codec = Codec::new("").expect("label");
    let frame = push_pull_frame(&codec, N, &mut rng);
    let claims: Vec<(AliveClaim, State)> = (1..=N).map(|i| (claim(i), State::Alive)).collect();
    let empty = MemberTable::new(claim(0), now);
    let mut full = empty.clone();
    full.merge(claims.clone(), now);
    assert_eq!(full.live_count(), N + 1);

    let mut group = c.benchmark_group("push_pull");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode_1000", |b| b.iter(|| codec.decode_stream(black_box(&frame)).expect("valid")));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("merge_1000_new", |b| {
        b.iter_batched(
            || (empty.clone(), claims.clone()),
            |(mut table, claims)| table.merge(claims, now),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("merge_1000_known", |b| {
        b.iter_batched(|| (full.clone(), claims.clone()), |(mut table, claims)| table.merge(claims, now), BatchSize::SmallInput);
    });
    group.bench_function("swim_handle_1000", |b| {
        b.iter_batched(
            || {
                let local = swim::LocalNode { name: "node-0000".into(), addr: addr(0), tags: tags(0), generation: 1 };
                swim::Swim::new(swim::Config::lan(), local, 3, now).expect("valid config")
            },
            |mut node| {
                let answer = node.handle_stream_request(addr(5000), black_box(&frame), now);
                assert!(answer.is_some());
                node
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    const N: usize = 1000;
    let mut queue = BroadcastQueue::new(4, 100_000);
    for i in 0..N {
        let c = claim(i);
        queue.push(Some(&c.name), encode_message(&alive_message(i)));
    }
    let body_budget = Codec::new("").expect("label").body_budget(BUDGET) - 40; // room for a ping
    let mut group = c.benchmark_group("broadcast");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.bench_function("fill_packet_from_1000", |b| {
        b.iter_batched(
            || queue.clone(),
            |mut q| {
                let picked = q.fill(body_budget, N, PacketBuilder::message_cost);
                assert!(!picked.is_empty());
                (q, picked)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn simulation(c: &mut Criterion) {
    const N: usize = 1000;
    let mut cfg = SimConfig::preset("lan", N, 1).expect("preset");
    cfg.trace = TraceLevel::Off;
    let spread = cfg.formation.spread;
    let mut sim = Simulation::new(cfg).expect("valid");
    let formed = Instant::now();
    sim.run_until(spread);
    let converged = sim.run_until_converged(spread + Duration::from_secs(300), Duration::from_secs(1));
    eprintln!(
        "sim: formed {N} nodes in {:.1} s wall ({:?} virtual)",
        formed.elapsed().as_secs_f64(),
        converged.map(|d| d.as_secs_f64())
    );
    let period = sim.config().swim.probe_interval;
    let mut group = c.benchmark_group("sim");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("protocol_period_1000", |b| b.iter(|| sim.run_for(period)));
    group.finish();
}

criterion_group!(benches, packet, push_pull, broadcast, simulation);
criterion_main!(benches);
