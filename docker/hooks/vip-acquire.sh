#!/bin/sh
# -primary-acquire hook: this node became primary. Put the virtual IP on the interface and
# announce it with gratuitous ARP, so that neighbours that cached the old primary's MAC for it
# update their ARP tables at once.
#
# From the agent: PRIMARY_NODE, PRIMARY_IP, PREVIOUS_PRIMARY, ROLE_FROM, ROLE_TO (and SERF_
# copies). From the entrypoint: SERF_VIP, SERF_IFACE.
set -u
VIP=${SERF_VIP:?SERF_VIP is not set}
IFACE=${SERF_IFACE:-eth0}

echo "acquire: $PRIMARY_NODE ($PRIMARY_IP) becomes primary ($ROLE_FROM -> $ROLE_TO; previous primary: ${PREVIOUS_PRIMARY:-none}); adding $VIP to $IFACE"
if ! ip link show dev "$IFACE" >/dev/null 2>&1; then
    echo "acquire: no interface $IFACE (the node is cut off?); the virtual IP is not added" >&2
    exit 1
fi
if ip -4 -o addr show dev "$IFACE" | grep -q " $VIP/"; then
    echo "acquire: $VIP is already on $IFACE"
else
    ip addr add "$VIP/32" dev "$IFACE" || exit 1
fi
# Unsolicited ARP (-U): "VIP is at my MAC", three times one second apart.
arping -U -c 3 -I "$IFACE" "$VIP" >/dev/null 2>&1 || echo "acquire: arping failed (the address is up anyway)" >&2
echo "acquire: $VIP is on $IFACE of $PRIMARY_NODE"
