#!/usr/bin/env bash
# Where a steady-state serf-agent's CPU goes, in instructions (repeatable, unlike CPU time on a
# shared machine): start N agents on loopback (127.0.31.10 and up, lan profile, as
# `cluster-bench compare` starts them), one of them (node 1) under `valgrind --tool=callgrind`;
# once every agent lists all N alive and SETTLE more seconds have passed, zero the counters,
# count for SECS seconds, dump, and stop everything. Prints the instructions of the window, per
# minute; the syscalls of one native agent (node 2, `strace -c`); for the other native agents, the
# CPU time (user and system) and how often each was scheduled in (/proc/PID/schedstat, stat); and
# the top functions of the measured one (callgrind_annotate). The callgrind output stays in OUT (default /tmp/agent-cpu.N.out).
#
# Usage: benches/agent-cpu.sh N [SECS [SETTLE [BIN [OUT]]]]
#   N       agents (3..200)
#   SECS    counting window, s (default 60)
#   SETTLE  s after convergence before the window (default 20)
#   BIN     serf-agent binary (default target/<arch>-unknown-linux-gnu/agent/serf-agent, as the
#           harness builds it: build it first with the command in docs/benchmarks.md)
# Wrap it in `flock /work/heavy.lock` on a shared machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:?usage: agent-cpu.sh N [SECS [SETTLE [BIN [OUT]]]]}
SECS=${2:-60}
SETTLE=${3:-20}
BIN=${4:-$ROOT/target/$(uname -m)-unknown-linux-gnu/agent/serf-agent}
OUT=${5:-/tmp/agent-cpu.$N.out}
((N >= 3 && N <= 200)) || { echo "N must be 3..200" >&2; exit 2; }
[[ -x $BIN ]] || { echo "no agent binary at $BIN" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }

RUN=$(mktemp -d /tmp/agent-cpu.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

ip() { echo "127.0.31.$((10 + $1))"; }
MEASURED=1
rm -f "$OUT"
for ((i = 0; i < N; i++)); do
    a=$(ip "$i")
    join=()
    ((i > 0)) && join=(-join "$(ip 0):7946")
    role=standby
    ((i == 0)) && role=primary
    args=(agent -node "n$i" -bind "$a:7946" -rpc-addr "$a:7373" -primary-http "$a:8080"
        -tag "role=$role" -profile lan -event-handler /bin/true -log-level warn "${join[@]}")
    if ((i == MEASURED)); then
        valgrind --tool=callgrind --callgrind-out-file="$OUT" --instr-atstart=no \
            "$BIN" "${args[@]}" >"$RUN/n$i.log" 2>&1 &
        PIDS+=($!)
        sleep 3 # valgrind starts slowly; let it join before the rest pile on
    else
        "$BIN" "${args[@]}" >"$RUN/n$i.log" 2>&1 &
        PIDS+=($!)
        ((i == 0)) && sleep 0.3
    fi
done
VG=${PIDS[$MEASURED]}

# Converged: every agent lists N alive members (bounded: 60 s + 1 s per agent).
deadline=$((SECONDS + 60 + N))
while :; do
    ok=1
    for ((i = 0; i < N; i++)); do
        alive=$("$BIN" members -rpc-addr "$(ip "$i"):7373" -status alive 2>/dev/null | wc -l) || alive=0
        if ((alive != N)); then ok=0; break; fi
    done
    ((ok)) && break
    if ((SECONDS > deadline)); then echo "the cluster did not converge" >&2; exit 1; fi
    sleep 1
done
echo "[agent-cpu] $N agents converged; settling $SETTLE s" >&2
sleep "$SETTLE"

native() { # over every agent but the two measured ones: CPU ns, times scheduled in, user and system ticks
    local p
    for p in "${PIDS[@]}"; do
        [[ $p == "$VG" || $p == "$TRACED" ]] && continue
        echo "$(cat "/proc/$p/schedstat") $(awk '{print $14, $15}' "/proc/$p/stat")"
    done | awk '{c += $1; w += $3; u += $4; s += $5} END {printf "%.0f %.0f %.0f %.0f\n", c, w, u, s}'
}
callgrind_control --instr=on "$VG" >/dev/null
callgrind_control --zero "$VG" >/dev/null
# The syscalls of one native agent (node 2) over the same window.
TRACED=${PIDS[2]}
timeout -s INT "$SECS" strace -c -f -q -p "$TRACED" -o "$RUN/strace" &
STRACE=$!
read -r c0 w0 u0 s0 < <(native)
t0=$(date +%s.%N)
sleep "$SECS"
callgrind_control --dump=window "$VG" >/dev/null
t1=$(date +%s.%N)
read -r c1 w1 u1 s1 < <(native)
wait "$STRACE" 2>/dev/null || true
# Still N alive at the end (a measured node too slow under valgrind would be suspected).
alive=$("$BIN" members -rpc-addr "$(ip 0):7373" -status alive 2>/dev/null | wc -l) || alive=0

dump=$(ls -t "$OUT"* | head -n 1)
ir=$(awk '/^(summary|totals):/{print $2; exit}' "$dump")
window=$(echo "$t1 - $t0" | bc -l)
per_min() { echo "($1) / ($N - 2) / $window * 60" | bc -l; }
printf '[agent-cpu] N=%d window=%.1f s, %d alive at the end\n' "$N" "$window" "$alive"
printf '[agent-cpu] measured agent (callgrind): %s Ir = %.2f M Ir/min\n' "$ir" "$(echo "$ir / $window * 60 / 1000000" | bc -l)"
printf '[agent-cpu] other agents, each, per minute: %.1f ms CPU (user %.0f ms, sys %.0f ms), scheduled in %.0f times\n' \
    "$(per_min "($c1 - $c0) / 1000000")" "$(per_min "($u1 - $u0) * 10")" "$(per_min "($s1 - $s0) * 10")" "$(per_min "$w1 - $w0")"
echo "[agent-cpu] syscalls of one native agent over the window (strace -c):"
sed -n '1,25p' "$RUN/strace" 2>/dev/null || true
callgrind_annotate --inclusive=no "$dump" 2>/dev/null | sed -n '1,60p'
echo "[agent-cpu] callgrind output: $dump" >&2
