#!/bin/sh
# -primary-release hook: this node is no longer primary. Remove the virtual IP from the interface
# (nothing to do when it is not there).
set -u
VIP=${SERF_VIP:?SERF_VIP is not set}
IFACE=${SERF_IFACE:-eth0}

echo "release: $PRIMARY_NODE steps down ($ROLE_FROM -> $ROLE_TO); removing $VIP from $IFACE"
if ip -4 -o addr show dev "$IFACE" 2>/dev/null | grep -q " $VIP/"; then
    ip addr del "$VIP/32" dev "$IFACE" || exit 1
    echo "release: $VIP removed"
else
    echo "release: $VIP was not on $IFACE"
fi
