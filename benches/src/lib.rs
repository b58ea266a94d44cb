//! Benchmarks of the gossip workspace, as a library so that the `cargo bench` targets and the
//! `cluster-bench` binary share one implementation.
//!
//! - [`detection`]: the failure-detection comparison in the simulator (`cargo bench -p
//!   cluster-bench --bench detection`, or `cluster-bench detection`).
//! - [`compare`]: serf-agent and HashiCorp Serf measured side by side on real processes
//!   (`cluster-bench compare`), with [`plots`] and [`iptables`] (traffic, loss; root only).
//! - [`demo`]: the README's main job: five serf-agents, the primary killed, a live timeline.
//! - [`system`]: a system under test ([`system::SerfAgent`], [`system::HashicorpSerf`]) behind
//!   the [`system::System`] trait; [`cluster`] runs a cluster of one; [`availability`] is the
//!   client of the primary service; [`process`] owns every process the harness starts.
//! - [`clients`]: consul-lite's client agents beside serf-agent: idle RSS and CPU, DNS queries
//!   per second, blocking-query fan-out (`cluster-bench clients`).
//! - [`setup`]: where a setup's time goes, side by side (`cluster-bench setup`).
//! - [`stamp`]: the command and machine stamped on every result file.
//! - [`stress`]: stalls (SIGSTOP) against kills (SIGKILL): false failures and detection times
//!   (`cluster-bench stress`); [`stress_suite`]: every system under loss, bursts, one-way loss,
//!   latency and a CPU-starved member, in network namespaces (`cluster-bench stress --suite`).
//!
//! Every result file goes to `docs/results/` (see [`stamp::results_dir`]); `docs/benchmarks.md`
//! explains each figure.

#![deny(missing_docs)]

pub mod availability;
pub mod clients;
pub mod cluster;
pub mod compare;
pub mod consul;
pub mod demo;
pub mod designs;
pub mod detection;
pub mod iptables;
pub mod kv;
pub mod msgpack;
pub mod netns;
pub mod plots;
pub mod process;
pub mod rpc;
pub mod setup;
pub mod stamp;
pub mod stats;
pub mod stress;
pub mod stress_frontier;
pub mod stress_sim;
pub mod stress_suite;
pub mod system;
