#!/usr/bin/env bash
# Build serf-agent the one way this project builds it, and print the binary's path.
#
#   scripts/build-agent.sh        -> target/<arch>-unknown-linux-gnu/agent/serf-agent
#
# The same build as `cargo run --release -p cluster-bench -- demo` / `compare` make
# (cluster_bench::system::AGENT_BUILD), used by scripts/serf-local-cluster.sh and docker/build.sh:
# the `agent` profile (opt-level "z", fat LTO, panic = abort), linked statically against glibc and
# not position-independent (small resident set; runs FROM scratch). A no-op when up to date.
# Environment: CARGO_TARGET_DIR (default target/ of this workspace). Progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIPLE=$(uname -m)-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# CARGO_ENCODED_RUSTFLAGS with an explicit --target: the static flags reach the agent only, not
# build scripts and proc-macros.
FLAGS=$(printf '%s\x1f' -C target-feature=+crt-static -C relocation-model=static)
(cd "$ROOT" && env -u RUSTFLAGS CARGO_ENCODED_RUSTFLAGS="${FLAGS%$'\x1f'}" \
    cargo build --profile agent -p serf-agent --target "$TRIPLE" >&2)
BIN=$TARGET_DIR/$TRIPLE/agent/serf-agent
[[ -x $BIN ]] || { echo "build-agent: $BIN is missing after the build" >&2; exit 1; }
echo "$BIN"
