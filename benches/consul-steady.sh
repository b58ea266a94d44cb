#!/usr/bin/env bash
# What an idle consul-lite cluster sends and burns at steady state, by agent and by kind of
# traffic: 3 servers (127.0.213.2-4) and N client agents (127.0.213.10 and up), laid out and
# flagged as `cluster-bench designs` starts them (every client runs the lock-held primary with
# -primary-lock-delay 1s, DNS off, log level warn). Once a primary serves and SETTLE more seconds
# have passed, iptables counters (a chain of its own, jumped to from OUTPUT, removed at the end)
# count for SECS seconds every IP byte each agent's address sends, split by port: gossip UDP and
# TCP (7946), the server port (8300: Raft between servers, client agents' requests and feeds),
# the HTTP API and primary service (7373, 8080: on loopback, the primary's own calls to its
# agent); plus what the kernel sends from 127.0.0.1 into the cluster (sockets dialed without a
# source address). CPU time per agent from /proc/PID/stat over the same window, and the Raft
# entries applied during it (consul_raft_applied_index on server 0).
#
# Usage: [PRIMARY=0] benches/consul-steady.sh [N [SECS [SETTLE [BIN]]]]
#   PRIMARY=0  clients run without the election (no -primary-*): what the rest costs
#   N       client agents (default 5)
#   SECS    counting window, s (default 60)
#   SETTLE  s after the primary serves, before the window (default 10)
#   BIN     consul-lite (default: the harness's build, `scripts/build-agent.sh consul-lite`)
# Needs root (iptables). Uses 127.0.213.0/24 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-5}
SECS=${2:-60}
SETTLE=${3:-10}
BIN=${4:-$ROOT/target/$(uname -m)-unknown-linux-gnu/consul/consul-lite}
PRIMARY=${PRIMARY:-1}
NET=127.0.213
CHAIN=CLSTEADY$$
((N >= 1 && N <= 150)) || { echo "N must be 1..150" >&2; exit 2; }
[[ -x $BIN ]] || { echo "no consul-lite binary at $BIN" >&2; exit 2; }

RUN=$(mktemp -d /tmp/consul-steady.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    iptables -D OUTPUT -j "$CHAIN" 2>/dev/null || true
    iptables -F "$CHAIN" 2>/dev/null || true
    iptables -X "$CHAIN" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

common() { echo -bind "$1" -client "$1" -http-port 7373 -serf-lan-port 7946 -dns-port -1 -log-level warn; }
SERVERS=("$NET.2" "$NET.3" "$NET.4")
for k in 0 1 2; do
    ip=${SERVERS[$k]}
    joins=()
    for s in "${SERVERS[@]}"; do [[ $s != "$ip" ]] && joins+=(-retry-join "$s:7946"); done
    # shellcheck disable=SC2046
    "$BIN" agent -server -bootstrap-expect 3 -node "server$k" -data-dir "$RUN/server$k" $(common "$ip") \
        -server-port 8300 "${joins[@]}" >"$RUN/server$k.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 1 300); do
    leader=$(curl -s -m 1 "http://$NET.2:7373/v1/status/leader" || true)
    [[ ${#leader} -gt 2 ]] && break
    sleep 0.1
done
[[ ${#leader} -gt 2 ]] || { echo "no leader in 30 s" >&2; tail "$RUN/server0.log" >&2; exit 1; }
CLIENTS=()
for ((i = 0; i < N; i++)); do
    ip=$NET.$((10 + i))
    CLIENTS+=("$ip")
    election=()
    ((PRIMARY)) && election=(-primary-http "$ip:8080" -primary-lock-delay 1s)
    # shellcheck disable=SC2046
    "$BIN" agent -node "node$i" $(common "$ip") -retry-join "$NET.2:7946" -retry-join "$NET.3:7946" \
        -retry-join "$NET.4:7946" "${election[@]}" >"$RUN/node$i.log" 2>&1 &
    PIDS+=($!)
done
primary=""
((PRIMARY)) || primary=none
for _ in $(seq 1 600); do
    [[ -n $primary ]] && break
    for ip in "${CLIENTS[@]}"; do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://$ip:8080/" || true) == 200 ]]; then
            primary=$ip
            break 2
        fi
    done
    sleep 0.1
done
[[ -n $primary ]] || { echo "no primary in 60 s" >&2; tail "$RUN/node0.log" >&2; exit 1; }
if ! ((PRIMARY)); then
    # Without a primary to wait for: until every client lists every agent alive.
    for _ in $(seq 1 600); do
        ok=1
        for ip in "${CLIENTS[@]}"; do
            alive=$(curl -s -m 1 "http://$ip:7373/v1/agent/members" | grep -o '"Status":1' | wc -l || true)
            ((alive == N + 3)) || { ok=0; break; }
        done
        ((ok)) && break
        sleep 0.1
    done
fi
sleep "$SETTLE"

ALL=("${SERVERS[@]}" "${CLIENTS[@]}")
iptables -N "$CHAIN"
for ip in "${ALL[@]}" 127.0.0.1; do
    dst=()
    [[ $ip == 127.0.0.1 ]] && dst=(-d "$NET.0/24")
    iptables -A "$CHAIN" -s "$ip" "${dst[@]}"
    iptables -A "$CHAIN" -s "$ip" "${dst[@]}" -p udp -m multiport --ports 7946
    iptables -A "$CHAIN" -s "$ip" "${dst[@]}" -p tcp -m multiport --ports 7946
    iptables -A "$CHAIN" -s "$ip" "${dst[@]}" -p tcp -m multiport --ports 8300
    iptables -A "$CHAIN" -s "$ip" "${dst[@]}" -p tcp -m multiport --ports 7373,8080
done
iptables -I OUTPUT 1 -j "$CHAIN"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
applied() {
    curl -s -m 2 "http://$NET.2:7373/v1/agent/metrics?format=prometheus" | awk '/^consul_raft_applied_index/ {print $2}'
}
declare -A CPU0
for p in "${PIDS[@]}"; do CPU0[$p]=$(cpu "$p"); done
a0=$(applied)
iptables -Z "$CHAIN"
t0=$(date +%s.%N)
sleep "$SECS"
t1=$(date +%s.%N)
declare -A CPU1
for p in "${PIDS[@]}"; do CPU1[$p]=$(cpu "$p"); done
mapfile -t COUNTS < <(iptables -L "$CHAIN" -v -x -n | awk 'NR > 2 {print $2}')
iptables -D OUTPUT -j "$CHAIN"
a1=$(applied)
TICK=$(getconf CLK_TCK)
WIN=$(echo "$t1 - $t0" | bc -l)

echo "# consul-lite steady state: 3 servers + $N clients, ${WIN%.*} s window ($(date -u +%FT%TZ), $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "# primary: $primary; Raft entries applied in the window: $((a1 - a0))"
printf '%-10s %-14s %9s %9s %9s %9s %9s %9s\n' agent ip 'B/s' gossipUDP gossipTCP 'port8300' http 'CPU s/min'
row=0
tot_s=0; tot_c=0; cpu_s=0; cpu_c=0
for k in "${!ALL[@]}"; do
    ip=${ALL[$k]}
    b=()
    for j in 0 1 2 3 4; do b+=("$(echo "${COUNTS[$((row * 5 + j))]} / $WIN" | bc -l)"); done
    p=${PIDS[$k]}
    c=$(echo "(${CPU1[$p]} - ${CPU0[$p]}) / $TICK / $WIN * 60" | bc -l)
    name=$([[ $k -lt 3 ]] && echo "server$k" || echo "node$((k - 3))")
    printf '%-10s %-14s %9.0f %9.0f %9.0f %9.0f %9.0f %9.3f\n' "$name" "$ip" "${b[@]}" "$c"
    if ((k < 3)); then
        tot_s=$(echo "$tot_s + ${b[0]}" | bc -l); cpu_s=$(echo "$cpu_s + $c" | bc -l)
    else
        tot_c=$(echo "$tot_c + ${b[0]}" | bc -l); cpu_c=$(echo "$cpu_c + $c" | bc -l)
    fi
    row=$((row + 1))
done
b=()
for j in 0 1 2 3 4; do b+=("$(echo "${COUNTS[$((row * 5 + j))]} / $WIN" | bc -l)"); done
printf '%-10s %-14s %9.0f %9.0f %9.0f %9.0f %9.0f\n' "from lo" "127.0.0.1" "${b[@]}"
printf 'total from the agents: servers %.0f B/s + clients %.0f B/s = %.0f B/s; CPU servers %.3f + clients %.3f = %.3f s/min\n' \
    "$tot_s" "$tot_c" "$(echo "$tot_s + $tot_c" | bc -l)" "$cpu_s" "$cpu_c" "$(echo "$cpu_s + $cpu_c" | bc -l)"
