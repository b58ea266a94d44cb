#!/usr/bin/env bash
# A local cluster of serf-agents on 127.0.0.1, each with its own ports, snapshot and log.
#
#   scripts/serf-local-cluster.sh start N      start N agents (node0 .. nodeN-1); node0 role=primary
#   scripts/serf-local-cluster.sh status       which agents run, and the members node0.. sees
#   scripts/serf-local-cluster.sh kill NODE    SIGKILL one agent (a crash: the others see it fail)
#   scripts/serf-local-cluster.sh restart NODE start a stopped or killed agent again; it rejoins
#                                              from its snapshot, without -join
#   scripts/serf-local-cluster.sh stop         SIGINT every agent (graceful leave), SIGKILL after 10 s
#
# Ports of node i: gossip 17946+i (UDP+TCP), RPC 17373+i, primary web service 18080+i.
# Environment: SERF_CLUSTER_DIR (state dir, default ${TMPDIR:-/tmp}/serf-local-cluster),
# SERF_AGENT_BIN (binary; default: the one build of scripts/build-agent.sh, the same binary the
# demo and the benchmarks run, rebuilt by cargo when the sources changed), GOSSIP_BASE, RPC_BASE, HTTP_BASE (first ports), PROFILE (default local).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${SERF_CLUSTER_DIR:-${TMPDIR:-/tmp}/serf-local-cluster}
BIN=${SERF_AGENT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/$(uname -m)-unknown-linux-gnu/agent/serf-agent}
GOSSIP_BASE=${GOSSIP_BASE:-17946}
RPC_BASE=${RPC_BASE:-17373}
HTTP_BASE=${HTTP_BASE:-18080}
PROFILE=${PROFILE:-local}

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

die() {
    echo "serf-local-cluster: $*" >&2
    exit 1
}

build() {
    if [[ -n ${SERF_AGENT_BIN:-} ]]; then
        [[ -x $BIN ]] || die "SERF_AGENT_BIN=$BIN is not an executable"
        return
    fi
    echo "building serf-agent (scripts/build-agent.sh; a no-op when up to date) ..." >&2
    BIN=$("$ROOT/scripts/build-agent.sh")
}

# node0, 0 -> 0
index_of() {
    local node=$1
    node=${node#node}
    [[ $node =~ ^[0-9]+$ ]] || die "unknown node '$1': use node0, node1, ... or 0, 1, ..."
    echo "$node"
}

pid_of() {
    local file=$STATE/node$1/pid
    [[ -f $file ]] || return 1
    local pid
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

wait_for_rpc() {
    local i=$1
    for _ in $(seq 1 100); do
        if "$BIN" members -rpc-addr "127.0.0.1:$((RPC_BASE + i))" >/dev/null 2>&1; then
            return 0
        fi
        pid_of "$i" >/dev/null || die "node$i exited at start; see $STATE/node$i/agent.log"
        sleep 0.1
    done
    die "node$i does not answer on 127.0.0.1:$((RPC_BASE + i)); see $STATE/node$i/agent.log"
}

# start_node I [JOIN_ADDR]
start_node() {
    local i=$1 join=${2:-}
    local dir=$STATE/node$i
    mkdir -p "$dir"
    if pid_of "$i" >/dev/null; then
        die "node$i already runs (pid $(cat "$dir/pid"))"
    fi
    local role=standby
    [[ $i == 0 ]] && role=primary
    local args=(agent -node "node$i" -profile "$PROFILE"
        -bind "127.0.0.1:$((GOSSIP_BASE + i))" -rpc-addr "127.0.0.1:$((RPC_BASE + i))"
        -primary-http "127.0.0.1:$((HTTP_BASE + i))" -tag "role=$role"
        -snapshot "$dir/snapshot" -log-level "${LOG_LEVEL:-info}")
    [[ -n $join ]] && args+=(-join "$join")
    nohup "$BIN" "${args[@]}" >>"$dir/agent.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    wait_for_rpc "$i"
}

cmd_start() {
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "start needs a number of agents, e.g. start 5"
    build
    mkdir -p "$STATE"
    for i in $(seq 0 $((n - 1))); do
        pid_of "$i" >/dev/null && die "node$i already runs; stop the cluster first"
    done
    rm -rf "$STATE"/node*
    start_node 0
    for i in $(seq 1 $((n - 1))); do
        start_node "$i" "127.0.0.1:$GOSSIP_BASE"
    done
    echo "$n" >"$STATE/size"
    echo "Started $n agents; state, snapshots and logs in $STATE"
    for i in $(seq 0 $((n - 1))); do
        printf '  node%-3s pid %-7s gossip 127.0.0.1:%s  rpc 127.0.0.1:%s  primary web http://127.0.0.1:%s/\n' \
            "$i" "$(cat "$STATE/node$i/pid")" $((GOSSIP_BASE + i)) $((RPC_BASE + i)) $((HTTP_BASE + i))
    done
    local last=$((n - 1))
    cat <<USAGE

Try:
  $BIN members -rpc-addr 127.0.0.1:$((RPC_BASE + last))
  $BIN primary -rpc-addr 127.0.0.1:$((RPC_BASE + last))
  curl -s http://127.0.0.1:$HTTP_BASE/          # the primary answers 200, the others 503
  $0 kill node0                 # crash the primary; node1 takes over within seconds
  $0 restart node0              # node0 rejoins from its snapshot, as a standby
  $0 status
  $0 stop
USAGE
}

cmd_stop() {
    [[ -d $STATE ]] || { echo "no cluster in $STATE"; return; }
    local pids=()
    for file in "$STATE"/node*/pid; do
        [[ -f $file ]] || continue
        local pid
        pid=$(cat "$file")
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for _ in $(seq 1 100); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "pid $pid did not stop after SIGINT; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$STATE"/node*/pid
    echo "stopped ${#pids[@]} agent(s)"
}

cmd_kill() {
    [[ -n ${1:-} ]] || die "kill needs a node, e.g. kill node0"
    local i pid
    i=$(index_of "$1")
    pid=$(pid_of "$i") || die "node$i is not running"
    kill -KILL "$pid"
    rm -f "$STATE/node$i/pid"
    echo "node$i (pid $pid) killed with SIGKILL"
}

cmd_restart() {
    [[ -n ${1:-} ]] || die "restart needs a node, e.g. restart node0"
    local i
    i=$(index_of "$1")
    build
    [[ -d $STATE/node$i ]] || die "node$i was never started in $STATE"
    start_node "$i"
    echo "node$i restarted (pid $(cat "$STATE/node$i/pid")); it rejoins from $STATE/node$i/snapshot"
}

cmd_status() {
    [[ -d $STATE ]] || { echo "no cluster in $STATE"; return; }
    local first=
    for dir in "$STATE"/node*; do
        [[ -d $dir ]] || continue
        local i=${dir##*/node} pid
        if pid=$(pid_of "$i"); then
            echo "node$i: running, pid $pid, rpc 127.0.0.1:$((RPC_BASE + i))"
            [[ -z $first ]] && first=$i
        else
            echo "node$i: not running"
        fi
    done
    if [[ -n $first ]]; then
        echo
        echo "members as node$first sees them:"
        "$BIN" members -rpc-addr "127.0.0.1:$((RPC_BASE + first))" || true
        echo
        "$BIN" primary -rpc-addr "127.0.0.1:$((RPC_BASE + first))" || true
    fi
}

case ${1:-} in
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop ;;
    kill) cmd_kill "${2:-}" ;;
    restart) cmd_restart "${2:-}" ;;
    status) cmd_status ;;
    *) usage ;;
esac
