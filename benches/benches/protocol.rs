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
//! - `sim/protocol_period_1000`: one protocol period (1 s of virtual time) of a formed and
//!   settled 1,000-node cluster in `gossip-sim`, every message encoded, sent and decoded.
//!
//! Sample sizes are small so that `cargo bench -p cluster-bench --bench protocol` ends in a few
//! minutes (a good part of it forming the 1,000-node cluster once). The medians are also written
//! to `docs/results/protocol.{md,json}`, stamped with the command and machine.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput};
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
        name: format!("node-{i:04}").into(),
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
            node: c.name.to_string(),
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
                node: c.name.to_string(),
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
        b.iter_batched(
            || (full.clone(), claims.clone()),
            |(mut table, claims)| table.merge(claims, now),
            BatchSize::SmallInput,
        );
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
    // Forming the cluster takes most of a minute: skip it when a name filter excludes it.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "sim/protocol_period_1000".contains(f.as_str())) {
        return;
    }
    let mut cfg = SimConfig::preset("lan", N, 1).expect("preset");
    cfg.trace = TraceLevel::Off;
    let spread = cfg.formation.spread;
    let mut sim = Simulation::new(cfg).expect("valid");
    let formed = Instant::now();
    sim.run_until(spread);
    let converged = sim.run_until_converged(spread + Duration::from_secs(300), Duration::from_secs(1));
    // Right after formation every node still gossips the thousand `alive` messages of the
    // formation (full packets); let them drain so that the period measured is a steady one.
    sim.run_for(Duration::from_secs(60));
    eprintln!(
        "sim: formed {N} nodes ({:?} s virtual) and let them settle for 60 s, in {:.1} s wall",
        converged.map(|d| d.as_secs_f64()),
        formed.elapsed().as_secs_f64()
    );
    let period = sim.config().swim.probe_interval;
    let mut group = c.benchmark_group("sim");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("protocol_period_1000", |b| b.iter(|| sim.run_for(period)));
    group.finish();
}

/// Criterion's output directory: `$CRITERION_HOME`, else `<target>/criterion`.
fn criterion_dir() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| cluster_bench::stamp::workspace_root().join("target"), std::path::PathBuf::from);
    target.join("criterion")
}

/// One finished benchmark, read back from criterion's `new/benchmark.json` and `estimates.json`.
struct Measured {
    id: String,
    median_ns: f64,
    low_ns: f64,
    high_ns: f64,
    throughput: Option<(String, f64)>,
}

fn read_results(dir: &std::path::Path, since: std::time::SystemTime) -> Vec<Measured> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with("new/estimates.json") {
                let fresh = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= since);
                let bench = p.with_file_name("benchmark.json");
                let (Ok(est), Ok(bench)) = (std::fs::read_to_string(&p), std::fs::read_to_string(bench)) else {
                    continue;
                };
                let (Ok(est), Ok(bench)) = (
                    serde_json::from_str::<serde_json::Value>(&est),
                    serde_json::from_str::<serde_json::Value>(&bench),
                ) else {
                    continue;
                };
                if !fresh {
                    continue;
                }
                let median = &est["median"];
                let throughput = bench["throughput"].as_object().and_then(|t| {
                    let (k, v) = t.iter().next()?;
                    Some((k.clone(), v.as_f64()?))
                });
                found.push(Measured {
                    id: bench["full_id"].as_str().unwrap_or("?").to_owned(),
                    median_ns: median["point_estimate"].as_f64().unwrap_or(f64::NAN),
                    low_ns: median["confidence_interval"]["lower_bound"].as_f64().unwrap_or(f64::NAN),
                    high_ns: median["confidence_interval"]["upper_bound"].as_f64().unwrap_or(f64::NAN),
                    throughput,
                });
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn human_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Write `docs/results/protocol.{md,json}` from the benchmarks this run measured.
fn write_summary(results: &[Measured], stamp: &cluster_bench::stamp::Stamp) -> std::io::Result<()> {
    use std::fmt::Write as _;
    if results.is_empty() {
        return Ok(());
    }
    let mut md = String::from("# Protocol micro-benchmarks (criterion)\n\n");
    md.push_str(&stamp.markdown());
    md.push_str("\n| benchmark | median time (95% CI) | throughput at the median |\n|---|---:|---:|\n");
    let mut json = Vec::new();
    for m in results {
        let tp = match &m.throughput {
            Some((kind, n)) if kind == "Bytes" => format!("{:.1} MiB/s", n / (m.median_ns / 1e9) / (1024.0 * 1024.0)),
            Some((_, n)) => format!("{:.0} elements/s", n / (m.median_ns / 1e9)),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            md,
            "| `{}` | {} ({} – {}) | {tp} |",
            m.id,
            human_time(m.median_ns),
            human_time(m.low_ns),
            human_time(m.high_ns)
        );
        json.push(serde_json::json!({
            "id": m.id, "median_ns": m.median_ns, "ci_low_ns": m.low_ns, "ci_high_ns": m.high_ns,
            "throughput": m.throughput.as_ref().map(|(k, n)| serde_json::json!({ k: n })),
        }));
    }
    md.push_str(
        "\nOne protocol period of the simulator moves every datagram of 1,000 nodes for 1 s of virtual time \
         (encode, seal, deliver, open, decode, apply); its throughput counts nodes.\n",
    );
    let dir = cluster_bench::stamp::results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("protocol.md"), md)?;
    let doc = serde_json::json!({ "stamp": stamp, "benchmarks": json });
    std::fs::write(dir.join("protocol.json"), serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")?;
    eprintln!("wrote {}/protocol.md and .json", dir.display());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let listing = args.iter().any(|a| a == "--list" || a == "--test");
    let started = std::time::SystemTime::now();
    let mut command = "cargo bench -p cluster-bench --bench protocol".to_owned();
    if !args.is_empty() {
        command = format!("{command} -- {}", args.join(" "));
    }
    let stamp = cluster_bench::stamp::Stamp::new(command);
    let dir = criterion_dir();
    let mut c = Criterion::default().output_directory(&dir).configure_from_args();
    packet(&mut c);
    push_pull(&mut c);
    broadcast(&mut c);
    simulation(&mut c);
    c.final_summary();
    if !listing {
        if let Err(e) = write_summary(&read_results(&dir, started), &stamp) {
            eprintln!("protocol: could not write docs/results/protocol.md: {e}");
        }
    }
}
