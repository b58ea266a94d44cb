#!/bin/sh
# serfnode: the container's entrypoint. Works out the node's name, address and role from the
# environment, then execs serf-agent, which becomes PID 1 and so receives `docker stop`'s SIGTERM
# itself (it exits at once, without leaving: the others see the node fail, as after a crash).
#
# Environment (all optional):
#   ROLE             primary | standby (default standby): the configured role; the node
#                    configured primary wins the first election of a fresh cluster
#   SERF_JOIN_IP     an agent to join, IP or IP:PORT (retried every SERF_RETRY_INTERVAL until
#                    it answers); after a restart the node also rejoins from its snapshot
#   SERF_NODE        node name (default: the container's host name)
#   SERF_IFACE       the interface to read the node's address from (default eth0)
#   SERF_ADVERTISE   the address to advertise (default: the first IPv4 address of SERF_IFACE)
#   SERF_VIP         the virtual IP that follows the primary (default: .99 of the /24 of the
#                    node's address); put on the interface holding the node's address by the
#                    role hooks /etc/serf/vip-acquire.sh and vip-release.sh, and repaired after
#                    member events by the handler /etc/serf/vip-reconcile.sh
#   SERF_HTTP_PORT   port of the primary web service (default 80)
#   SERF_PROFILE     timing preset lan | local | wan (default lan)
#   SERF_LOG_LEVEL   default info
#   SERF_RETRY_INTERVAL, SERF_RECONNECT_INTERVAL   default 2s and 5s
# Arguments given to the container are appended to the agent's flags.
set -eu

IFACE=${SERF_IFACE:-eth0}
NODE=${SERF_NODE:-$(hostname)}
ROLE=${ROLE:-standby}

. /etc/serf/node-lib.sh
ADVERTISE=${SERF_ADVERTISE:-}
if [ -z "$ADVERTISE" ]; then
    ADVERTISE=$(wait_ipv4 "$IFACE" serfnode SERF_ADVERTISE) || exit 1
fi
export SERF_NODE_IP="$ADVERTISE"
export SERF_VIP="${SERF_VIP:-${ADVERTISE%.*}.99}"

set -- agent \
    -node "$NODE" \
    -bind "0.0.0.0:7946" \
    -advertise "$ADVERTISE:7946" \
    -tag "role=$ROLE" \
    -snapshot /data/serf.snapshot \
    -rpc-addr 127.0.0.1:7373 \
    -primary-http "0.0.0.0:${SERF_HTTP_PORT:-80}" \
    -primary-acquire /etc/serf/vip-acquire.sh \
    -primary-release /etc/serf/vip-release.sh \
    -event-handler "member-join,member-update=/etc/serf/vip-reconcile.sh" \
    -profile "${SERF_PROFILE:-lan}" \
    -reconnect-interval "${SERF_RECONNECT_INTERVAL:-5s}" \
    -log-level "${SERF_LOG_LEVEL:-info}" \
    "$@"
if [ -n "${SERF_JOIN_IP:-}" ]; then
    set -- "$@" -retry-join "$SERF_JOIN_IP" -retry-interval "${SERF_RETRY_INTERVAL:-2s}"
fi

echo "serfnode: $NODE ($ADVERTISE, role $ROLE, virtual IP $SERF_VIP): exec serf-agent $*"
exec /bin/serf-agent "$@"
