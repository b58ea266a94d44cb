#!/usr/bin/env bash
# Build an agent the one way this project builds it, and print the binary's path.
#
#   scripts/build-agent.sh               -> target/<arch>-unknown-linux-gnu/agent/serf-agent
#   scripts/build-agent.sh consul-lite   -> target/<arch>-unknown-linux-gnu/consul/consul-lite
#
# The same builds as `cargo run --release -p cluster-bench -- demo` / `compare` make
# (cluster_bench::system::AGENT_BUILD and CONSUL_BUILD), used by scripts/serf-local-cluster.sh and
# docker/build.sh. Both are linked statically against glibc and not position-independent (small
# resident set; they run FROM scratch). serf-agent uses the `agent` profile (opt-level "z", fat
# LTO, panic = abort); consul-lite the `consul` profile (thin LTO, panics unwind: its servers'
# storage, redb, relies on unwinding to leave its files consistent). A no-op when up to date.
# Environment: CARGO_TARGET_DIR (default target/ of this workspace). Progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGE=${1:-serf-agent}
case $PACKAGE in
    serf-agent) PROFILE=agent ;;
    consul-lite) PROFILE=consul ;;
    *) echo "build-agent: unknown agent '$PACKAGE' (serf-agent or consul-lite)" >&2; exit 2 ;;
esac
TRIPLE=$(uname -m)-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# CARGO_ENCODED_RUSTFLAGS with an explicit --target: the static flags reach the agent only, not
# build scripts and proc-macros.
FLAGS=$(printf '%s\x1f' -C target-feature=+crt-static -C relocation-model=static)
(cd "$ROOT" && env -u RUSTFLAGS CARGO_ENCODED_RUSTFLAGS="${FLAGS%$'\x1f'}" \
    cargo build --profile "$PROFILE" -p "$PACKAGE" --target "$TRIPLE" >&2)
BIN=$TARGET_DIR/$TRIPLE/$PROFILE/$PACKAGE
[[ -x $BIN ]] || { echo "build-agent: $BIN is missing after the build" >&2; exit 1; }
echo "$BIN"
