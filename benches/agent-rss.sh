#!/usr/bin/env bash
# The resident set of serf-agent built in different ways: the attempts behind the `agent` profile
# and the static, non-PIE build that `cluster-bench compare` measures (docs/benchmarks.md,
# "The agent that is measured").
#
# For each variant: build serf-agent into target/exp-<variant>/ (a no-op when it is up to date),
# start 5 agents on 127.0.30.10-14 (node 0 first, the others joining it), poll every agent's member
# list (GET /v1/members) 5 times a second for SECS seconds (default 20), then print each agent's
# VmRSS / RssAnon / RssFile (kB, /proc/PID/status) and CPU time (ms, /proc/PID/schedstat), and the
# first agent's resident kB per mapping (/proc/PID/smaps). Writes docs/results/agent-rss.md.
#
# Usage: benches/agent-rss.sh [SECS]          (wrap it in `flock /work/heavy.lock` on a shared box)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${1:-20}
TARGET=$(uname -m)-unknown-linux-gnu
OUT=$ROOT/docs/results/agent-rss.md
RUN=$(mktemp -d /tmp/agent-rss.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

measure() { # name bin
    local name=$1 bin=$2 i ip
    PIDS=()
    for i in 0 1 2 3 4; do
        ip=127.0.30.$((10 + i))
        local join=()
        ((i > 0)) && join=(-join 127.0.30.10:7946)
        "$bin" agent -node "n$i" -bind "$ip:7946" -rpc-addr "$ip:7373" -primary-http "$ip:8080" \
            -tag role=standby -profile lan -event-handler /bin/true -log-level warn "${join[@]}" \
            >"$RUN/$name-$i.log" 2>&1 &
        PIDS+=($!)
        ((i == 0)) && sleep 0.3
    done
    local end=$((SECONDS + SECS))
    while ((SECONDS < end)); do
        for i in 0 1 2 3 4; do curl -s -m 1 "http://127.0.30.$((10 + i)):7373/v1/members" >/dev/null || true; done
        sleep 0.2
    done
    local rss=0 anon=0 file=0 cpu=0
    for p in "${PIDS[@]}"; do
        rss=$((rss + $(awk '/^VmRSS/{print $2}' "/proc/$p/status")))
        anon=$((anon + $(awk '/^RssAnon/{print $2}' "/proc/$p/status")))
        file=$((file + $(awk '/^RssFile/{print $2}' "/proc/$p/status")))
        cpu=$((cpu + $(awk '{print int($1 / 1e6)}' "/proc/$p/schedstat")))
    done
    local top
    top=$(awk '/^[0-9a-f]+-[0-9a-f]+ /{n=$6; if (n == "") n="[anon]"; sub(".*/", "", n)} /^Rss:/{r[n]+=$2}
               END{for (n in r) if (r[n] > 0) printf "%s %d, ", n, r[n]}' "/proc/${PIDS[0]}/smaps")
    local text
    text=$(size -A "$bin" | awk '$1 == ".text" {printf "%.2f", $2 / 1048576}')
    printf '| %s | %s | %s | %.2f | %.2f | %.2f | %d | %s |\n' "$name" "$(stat -c %s "$bin" | awk '{printf "%.2f", $1 / 1048576}')" \
        "$text" "$(echo "$rss / 5 / 1024" | bc -l)" "$(echo "$anon / 5 / 1024" | bc -l)" "$(echo "$file / 5 / 1024" | bc -l)" \
        "$((cpu / 5))" "${top%, }" >>"$RUN/table"
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

variant() { # name "RUSTFLAGS" opt-level
    local name=$1 flags=$2 opt=$3
    echo "[agent-rss] $name: RUSTFLAGS='$flags' opt-level=$opt" >&2
    (cd "$ROOT" && CARGO_TARGET_DIR=$ROOT/target/exp-$name RUSTFLAGS=$flags CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt \
        cargo build --release -p serf-agent --target "$TARGET" -q)
    measure "$name" "$ROOT/target/exp-$name/$TARGET/release/serf-agent"
}

# The commit measured, read before anything is written (this script rewrites tracked files).
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- || echo +dirty)
: >"$RUN/table"
variant o3-dyn "" 3
variant os-dyn "" s
variant oz-dyn "" z
variant o3-static "-C target-feature=+crt-static" 3
variant os-static "-C target-feature=+crt-static" s
variant os-static-nopie "-C target-feature=+crt-static -C relocation-model=static" s
# What `cluster-bench compare` and `demo` build and run (cluster_bench::system::AGENT_BUILD): the
# `agent` profile (release with opt-level "z"), static, non-PIE; the same command as the harness.
echo "[agent-rss] agent profile, as the harness builds it" >&2
(cd "$ROOT" && env -u RUSTFLAGS CARGO_ENCODED_RUSTFLAGS=$'-C\x1ftarget-feature=+crt-static\x1f-C\x1frelocation-model=static' \
    cargo build --profile agent -p serf-agent --target "$TARGET" -q)
measure "oz-static-nopie-abort (\`agent\` profile: what compare runs)" "$ROOT/target/$TARGET/agent/serf-agent"
# The same with unwinding, as the agent profile was before it took panic = "abort".
echo "[agent-rss] agent profile with unwinding" >&2
(cd "$ROOT" && env -u RUSTFLAGS CARGO_TARGET_DIR=$ROOT/target/exp-oz-unwind CARGO_PROFILE_AGENT_PANIC=unwind \
    CARGO_ENCODED_RUSTFLAGS=$'-C\x1ftarget-feature=+crt-static\x1f-C\x1frelocation-model=static' \
    cargo build --profile agent -p serf-agent --target "$TARGET" -q)
measure "oz-static-nopie-unwind" "$ROOT/target/exp-oz-unwind/$TARGET/agent/serf-agent"

{
    echo "# serf-agent's resident set by build"
    echo
    echo "- command: \`benches/agent-rss.sh $SECS\`"
    echo "- machine: \`$(uname -a)\`, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ) (commit $COMMIT)"
    echo "- 5 agents on loopback, lan profile, each member list polled 5 times a second for $SECS s; figures are the mean over the 5 agents"
    echo
    echo "| variant | file (MiB) | .text (MiB) | VmRSS (MiB) | RssAnon (MiB) | RssFile (MiB) | CPU (ms) | first agent, resident kB by mapping |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    cat "$RUN/table"
    echo
    echo "Variants: o3/os/oz = opt-level 3/\"s\"/\"z\" (release profile otherwise: fat LTO, one codegen unit, unwinding; the \`agent\` profile aborts on panic); dyn = glibc shared; static = \`-C target-feature=+crt-static\` (static-pie); nopie = \`-C relocation-model=static\` too."
} >"$OUT"
cat "$OUT"
# The same table in docs/benchmarks.md, between its markers (without the title).
DOC=$ROOT/docs/benchmarks.md
if grep -q '^<!-- results:agent-rss begin -->$' "$DOC"; then
    awk -v f="$OUT" '
        BEGIN { n = 0; while ((getline l < f) > 0) { if (n++ >= 2) body = body l "\n" } }
        /^<!-- results:agent-rss begin -->$/ { print; printf "Generated: `docs/results/agent-rss.md`\n\n%s", body; skip = 1; next }
        /^<!-- results:agent-rss end -->$/ { skip = 0 }
        !skip' "$DOC" >"$RUN/doc" && cat "$RUN/doc" >"$DOC"
fi
