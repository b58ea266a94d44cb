//! A cluster on one machine: starts N nodes on 127.0.0.1 (N from the command line, default 3),
//! joins them, prints the membership events one node sees, kills another node abruptly and shows
//! how long the cluster takes to declare it failed.
//!
//! ```text
//! cargo run -p gossip-core --example cluster -- 5
//! RUST_LOG=gossip_core=debug cargo run -p gossip-core --example cluster
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use gossip_core::{Event, Node, NodeConfig, State};

/// Bound on every wait, so that the example always ends.
const WAIT_BOUND: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| format!("N must be a number, got {arg:?}"))?,
        None => 3,
    };
    if count < 2 {
        return Err("N must be at least 2: one node is killed, another watches".into());
    }
    let started = Instant::now();

    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        let config = NodeConfig { name: format!("node-{i}"), ..NodeConfig::local() };
        let node = Node::start(config).await?;
        println!("started {} on {}", node.local_member().name, node.advertise_addr());
        nodes.push(node);
    }

    // node-0 is the observer: print everything it sees.
    let mut events = nodes[0].events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let at = started.elapsed().as_secs_f64();
            match event {
                Event::MemberJoined(m) => {
                    println!("[{at:6.3}s] node-0 sees {} joined ({})", m.name, m.addr)
                }
                Event::MemberSuspected(m) => println!("[{at:6.3}s] node-0 suspects {}", m.name),
                Event::MemberRecovered(m) => {
                    println!("[{at:6.3}s] node-0 sees {} recovered", m.name)
                }
                Event::MemberFailed(m) => println!("[{at:6.3}s] node-0 sees {} FAILED", m.name),
                Event::MemberLeft(m) => println!("[{at:6.3}s] node-0 sees {} left", m.name),
                Event::MemberUpdated(m) => println!("[{at:6.3}s] node-0 sees {} updated", m.name),
                // Probe round trips, join outcomes, user payloads: not membership.
                _ => {}
            }
        }
    });

    let seed = nodes[0].advertise_addr();
    for node in &nodes[1..] {
        node.join(&[seed]).await?;
    }
    wait_until(|| nodes.iter().all(|node| node.live_members().len() == count)).await?;
    println!("cluster formed: every node sees {count} live members after {:?}", started.elapsed());

    let victim = nodes.pop().expect("at least two nodes");
    let victim_name = victim.local_member().name;
    let killed_at = Instant::now();
    victim.kill().await;
    println!("killed {victim_name}");
    let is_dead =
        |node: &Node| node.members().iter().any(|member| member.name == victim_name && member.state == State::Dead);
    wait_until(|| nodes.iter().all(is_dead)).await?;
    println!(
        "all {} remaining nodes declared {victim_name} failed {:.3}s after the kill",
        nodes.len(),
        killed_at.elapsed().as_secs_f64()
    );

    println!("members as node-0 sees them:");
    for member in nodes[0].members() {
        println!("  {:<8} {:<21} {:?}", member.name, member.addr.to_string(), member.state);
    }
    for node in nodes {
        node.shutdown().await;
    }
    printer.await?;
    Ok(())
}

/// Poll `done` every 50 ms until it holds, at most [`WAIT_BOUND`].
async fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + WAIT_BOUND;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("gave up after {WAIT_BOUND:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
