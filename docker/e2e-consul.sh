#!/usr/bin/env bash
# End-to-end test of the consul-style Docker demo, with the real consul-lite in containers:
#
#   1. build the static consul-lite and the image (docker/build.sh consul)
#   2. consul-start-cluster 5: 3 servers + 5 client nodes; consulnode4 lists 8 alive members; the
#      virtual IP answers the lock holder ("primary: NODE")
#   3. docker stop the primary: consulnode4 sees it left (a client agent leaves on SIGTERM, as
#      Consul's), the catalog no longer has it, and the virtual IP answers another node
#   4. docker kill the new primary: seen failed, the catalog marks its serfHealth critical, and
#      the virtual IP answers another node
#   5. docker kill the Raft leader server: a new leader, a write through consulnode4 is
#      acknowledged, and one primary still serves through the virtual IP
#   6. docker network disconnect the primary: it steps down (its own web service answers 503),
#      the majority's new primary answers through the virtual IP; then reconnect: it rejoins
#      as standby and one primary remains
#
# Every wait is bounded. The consulnode cluster is removed first and on exit (failure too); on
# failure the containers' logs are shown. Environment: E2E_SKIP_BUILD=1 (use the image as it
# is); bounds in seconds: E2E_DETECT_BOUND (30), E2E_FAILOVER_BOUND (30), E2E_REJOIN_BOUND (60);
# and the settings of consulnode.rc.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=consulnode.rc
source "$ROOT/docker/consulnode.rc"
# shellcheck source=e2e-lib.sh
source "$ROOT/docker/e2e-lib.sh"

N=5
MEMBERS=$((N + CONSUL_SERVERS))
DETECT_BOUND=${E2E_DETECT_BOUND:-30}
FAILOVER_BOUND=${E2E_FAILOVER_BOUND:-30}
REJOIN_BOUND=${E2E_REJOIN_BOUND:-60}
VIEWER=consulnode4
VIP=$(_consul_vip)
PORT=$(_consul_port)

teardown() {
    local code=$?
    trap - EXIT INT TERM
    set +e
    if ((PASSED == 0)); then
        echo
        echo "=== logs of the consulnode containers (last 40 lines each)"
        for name in $(_consul_containers); do
            echo "--- $name ($(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$name" 2>/dev/null))"
            docker logs --tail 40 "$name" 2>&1 | sed 's/^/    /'
        done
    fi
    echo
    echo "=== teardown"
    consul-stop-cluster >/dev/null 2>&1
    if [ -n "$(_consul_containers)" ] || docker network inspect "$(_consul_net)" >/dev/null 2>&1; then
        echo "teardown incomplete: $(_consul_containers | tr '\n' ' ') network $(_consul_net)" >&2
    else
        echo "removed every consulnode container and the network $(_consul_net)"
    fi
    finish "$code" e2e-consul
}
trap teardown EXIT
trap 'fail "interrupted"' INT TERM

# ---------------------------------------------------------------------------------------------
# What a node sees (through its agent's HTTP API)

api() { docker exec "$1" wget -qO- "http://127.0.0.1:8500$2"; }

# status_is VIEWER NODE REGEX: VIEWER lists NODE with a status (Consul's numbers) matching REGEX.
status_is() {
    local status
    status=$(api "$1" /v1/agent/members | jq -r --arg n "$2" '.[] | select(.Name == $n) | .Status') || return 1
    [[ $status =~ ^($3)$ ]]
}

alive_count_is() {
    [ "$(api "$1" /v1/agent/members | jq '[.[] | select(.Status == 1)] | length')" = "$2" ]
}

# gone_from_catalog VIEWER NODE: the catalog, read on VIEWER, no longer has NODE (a node that
# left is deregistered by the leader, as Consul's is).
gone_from_catalog() {
    local nodes
    nodes=$(api "$1" /v1/catalog/nodes) || return 1
    [ "$(jq --arg n "$2" '[.[] | select(.Node == $n)] | length' <<<"$nodes")" = 0 ]
}

# critical_in_catalog VIEWER NODE: the catalog, read on VIEWER, has NODE's serfHealth critical.
critical_in_catalog() {
    [ "$(api "$1" "/v1/health/node/$2" | jq -r '.[] | select(.CheckID == "serfHealth") | .Status')" = critical ]
}

# The node the virtual IP answers for, read from FROM ("" when nothing answers 200).
vip_primary() {
    local answer
    answer=$(docker exec "$1" timeout 3 wget -qO- "http://$VIP:$PORT/" 2>/dev/null) || return 1
    echo "${answer#primary: }"
}

# vip_answers_other FROM NODE: the virtual IP answers a primary other than NODE.
vip_answers_other() {
    local p
    p=$(vip_primary "$1") || return 1
    [ -n "$p" ] && [ "$p" != "$2" ]
}

# serves_itself NODE: NODE's own web service answers 200 (from inside NODE).
serves_itself() { docker exec "$1" timeout 2 wget -qO- "http://127.0.0.1:$PORT/" >/dev/null 2>&1; }

leader_server() {
    local leader
    leader=$(api "$VIEWER" /v1/status/leader | tr -d '"') || return 1
    leader=${leader%:*}
    [ -n "$leader" ] || return 1
    for name in $(_consul_containers); do
        [ "$(_consul_ip "$name")" = "$leader" ] && { echo "$name"; return 0; }
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# The scenario

docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info)"
need_jq

ev "e2e-consul start: $CONSUL_SERVERS servers + $N client nodes, network $(_consul_net) $(_consul_prefix).0/24, virtual IP $VIP:$PORT"
consul-stop-cluster >/dev/null 2>&1 || true

if [[ ${E2E_SKIP_BUILD:-0} != 1 ]]; then
    ev "build: docker/build.sh consul"
    "$ROOT/docker/build.sh" consul || fail "docker/build.sh consul failed"
fi
size=$(docker image inspect -f '{{.Size}}' "$(_consul_image)") || fail "no image $(_consul_image)"
ev "image $(_consul_image): $size bytes"
RESULTS+=("consulnode image size: $size bytes")

# --- 1. start
ev "consul-start-cluster $N"
start=$(now_ms)
consul-start-cluster "$N" | sed 's/^/    /' || fail "consul-start-cluster $N"
[ "$(docker exec consulnode0 cat /proc/1/comm)" = consul-lite ] || fail "PID 1 of consulnode0 is not consul-lite"
wait_until 30 "$VIEWER lists $MEMBERS alive members" alive_count_is "$VIEWER" "$MEMBERS"
ev "$VIEWER lists $MEMBERS alive members"
show docker exec "$VIEWER" consul-lite members
wait_until "$FAILOVER_BOUND" "the virtual IP answers a primary" vip_primary "$VIEWER"
P0=$(vip_primary "$VIEWER")
ev "virtual IP http://$VIP:$PORT/ answers 'primary: $P0' ($(secs $(($(now_ms) - start))) s after the start)"
RESULTS+=("setup: 3 servers + $N clients, primary serving through the virtual IP after $(secs $(($(now_ms) - start))) s")

# avoid_viewer NODE: NODE is about to be stopped, killed or cut off; if it is the viewer, watch
# from another running client node instead (the lock can land on any node, the viewer included).
avoid_viewer() {
    local node=$1
    [ "$node" = "$VIEWER" ] || return 0
    VIEWER=$(docker ps --filter label=consulnode.demo --filter name=consulnode --format '{{.Names}}' | sort -V | grep -vx "$node" | tail -n 1)
    [ -n "$VIEWER" ] || fail "no client node left to watch from"
    ev "$node is the viewer: watching from $VIEWER instead"
}

# failover stop|kill NODE: NODE is the primary; measure when the viewer sees it failed, when the
# catalog marks it critical, and when the virtual IP answers another node (NEXT).
NEXT=""
failover() {
    local how=$1 node=$2 start detect catalog moved
    avoid_viewer "$node"
    ev "docker $how $node (the primary)"
    start=$(now_ms)
    docker "$how" "$node" >/dev/null || fail "docker $how $node"
    # docker stop sends SIGTERM: a client agent leaves the pool (Consul's leave_on_terminate), so
    # the others list it left (3) and the leader deregisters it; docker kill: failed (4), and its
    # serfHealth goes critical.
    local status=4 seen=failed catalog_what="the catalog marks $node critical" catalog_check=critical_in_catalog
    if [ "$how" = stop ]; then
        status=3 seen=left catalog_what="the catalog no longer has $node" catalog_check=gone_from_catalog
    fi
    wait_until "$DETECT_BOUND" "$VIEWER sees $node $seen" status_is "$VIEWER" "$node" "$status"
    detect=$(($(now_ms) - start))
    ev "$VIEWER sees $node $seen ($(secs "$detect") s after docker $how)"
    wait_until "$DETECT_BOUND" "$catalog_what" "$catalog_check" "$VIEWER" "$node"
    catalog=$(($(now_ms) - start))
    ev "$catalog_what ($(secs "$catalog") s)"
    wait_until "$FAILOVER_BOUND" "the virtual IP answers a node other than $node" vip_answers_other "$VIEWER" "$node"
    moved=$(($(now_ms) - start))
    NEXT=$(vip_primary "$VIEWER")
    ev "virtual IP answers 'primary: $NEXT' ($(secs "$moved") s after docker $how)"
    RESULTS+=("docker $how $node: seen $seen after $(secs "$detect") s, $catalog_what after $(secs "$catalog") s, virtual IP answers $NEXT after $(secs "$moved") s")
}

# --- 2, 3. stop, then kill the primary
failover stop "$P0"
P1=$NEXT
failover kill "$P1"
P2=$NEXT
show docker exec "$VIEWER" consul-lite members

# --- 4. kill the Raft leader server
L0=$(leader_server) || fail "no Raft leader known to $VIEWER"
ev "docker kill $L0 (the Raft leader)"
start=$(now_ms)
docker kill "$L0" >/dev/null || fail "docker kill $L0"
new_leader() { local l; l=$(leader_server) && [ "$l" != "$L0" ]; }
wait_until "$FAILOVER_BOUND" "a new Raft leader" new_leader
ev "new Raft leader $(leader_server) ($(secs $(($(now_ms) - start))) s)"
write_ok() { docker exec "$VIEWER" consul-lite kv put e2e/after-leader-kill yes; }
wait_until "$FAILOVER_BOUND" "a write through $VIEWER after the leader kill" write_ok
ev "a write through $VIEWER is acknowledged ($(secs $(($(now_ms) - start))) s)"
wait_until "$FAILOVER_BOUND" "a primary serves through the virtual IP after the leader kill" vip_primary "$VIEWER"
ev "virtual IP answers 'primary: $(vip_primary "$VIEWER")' after the leader kill"
RESULTS+=("docker kill $L0 (Raft leader): write acknowledged again after $(secs $(($(now_ms) - start))) s")

# --- 5. cut the primary off the network (watched from another client)
P3=$(vip_primary "$VIEWER")
avoid_viewer "$P3"
ev "docker network disconnect $(_consul_net) $P3 (the primary)"
start=$(now_ms)
consul-disconnect "$P3" >/dev/null || fail "docker network disconnect $P3"
not_serving() { ! serves_itself "$P3"; }
wait_until "$FAILOVER_BOUND" "$P3, cut off, stops serving" not_serving
down=$(($(now_ms) - start))
ev "$P3, cut off, answers 503 on its own web service ($(secs "$down") s)"
wait_until "$FAILOVER_BOUND" "the virtual IP answers a node other than $P3" vip_answers_other "$VIEWER" "$P3"
moved=$(($(now_ms) - start))
ev "virtual IP answers 'primary: $(vip_primary "$VIEWER")' ($(secs "$moved") s)"
RESULTS+=("partition of the primary $P3: it stopped serving after $(secs "$down") s, the majority's primary answers after $(secs "$moved") s")
consul-reconnect "$P3" >/dev/null || fail "docker network connect $P3"
wait_until "$REJOIN_BOUND" "$VIEWER sees $P3 alive again" status_is "$VIEWER" "$P3" 1
ev "$P3 is back (alive), standby: $(docker exec "$P3" timeout 2 wget -qO- "http://127.0.0.1:$PORT/" 2>&1 | head -n 1)"
serves_itself "$P3" && fail "$P3 serves as primary after the heal while $(vip_primary "$VIEWER") holds the lock"
show docker exec "$VIEWER" consul-lite members

PASSED=1
ev "all checks passed"
