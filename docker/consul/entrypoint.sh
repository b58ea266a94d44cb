#!/bin/sh
# consulnode: the container's entrypoint. Works out the node's name and address from the
# environment, then execs consul-lite, which becomes PID 1 and so receives `docker stop`'s SIGTERM
# itself (it exits at once, without leaving: the others see the node fail, as after a crash).
#
# Environment (all optional):
#   CONSUL_SERVER      1: a Raft server (-server -bootstrap-expect CONSUL_EXPECT, data in /data);
#                      otherwise a client agent that runs the primary web service and takes part
#                      in the lock-held election
#   CONSUL_EXPECT      servers to wait for before bootstrapping (default 3)
#   CONSUL_JOIN        space-separated gossip addresses to join (IP or IP:PORT), retried until one
#                      answers
#   CONSUL_NODE        node name (default: the container's host name)
#   CONSUL_IFACE       the interface to read the node's address from (default eth0)
#   CONSUL_ADVERTISE   the address to bind gossip and server RPC to (default: the first IPv4
#                      address of CONSUL_IFACE)
#   SERF_VIP           the virtual IP that follows the primary (default: .99 of the /24 of the
#                      node's address); put on the interface by the role hooks
#                      /etc/serf/vip-acquire.sh and vip-release.sh (shared with serfnode)
#   CONSUL_HTTP_PORT   port of the primary web service (default 80)
#   CONSUL_LOCK_DELAY  the election's lock-delay (default: the agent's)
#   CONSUL_LOG_LEVEL   default info
# Arguments given to the container are appended to the agent's flags.
set -eu

IFACE=${CONSUL_IFACE:-eth0}
NODE=${CONSUL_NODE:-$(hostname)}

. /etc/serf/node-lib.sh
ADVERTISE=${CONSUL_ADVERTISE:-}
if [ -z "$ADVERTISE" ]; then
    ADVERTISE=$(wait_ipv4 "$IFACE" consulnode CONSUL_ADVERTISE) || exit 1
fi
export SERF_NODE_IP="$ADVERTISE"
export SERF_VIP="${SERF_VIP:-${ADVERTISE%.*}.99}"

set -- agent \
    -node "$NODE" \
    -bind "$ADVERTISE" \
    -client 0.0.0.0 \
    -data-dir /data \
    -log-level "${CONSUL_LOG_LEVEL:-info}" \
    "$@"
if [ "${CONSUL_SERVER:-0}" = 1 ]; then
    set -- "$@" -server -bootstrap-expect "${CONSUL_EXPECT:-3}"
    what="server"
else
    set -- "$@" \
        -primary-http "0.0.0.0:${CONSUL_HTTP_PORT:-80}" \
        -primary-acquire /etc/serf/vip-acquire.sh \
        -primary-release /etc/serf/vip-release.sh
    if [ -n "${CONSUL_LOCK_DELAY:-}" ]; then
        set -- "$@" -primary-lock-delay "$CONSUL_LOCK_DELAY"
    fi
    what="client, virtual IP $SERF_VIP"
fi
for join in ${CONSUL_JOIN:-}; do
    set -- "$@" -retry-join "$join"
done

echo "consulnode: $NODE ($ADVERTISE, $what): exec consul-lite $*"
exec /bin/consul-lite "$@"
