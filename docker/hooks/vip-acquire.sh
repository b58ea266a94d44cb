#!/bin/sh
# -primary-acquire hook: this node became primary. Put the virtual IP on the interface and
# announce it with gratuitous ARP.
#
# From the agent: PRIMARY_NODE, PRIMARY_IP, PREVIOUS_PRIMARY, ROLE_FROM, ROLE_TO (and SERF_
# copies). From the entrypoint: SERF_VIP, SERF_NODE_IP.
set -u
. /etc/serf/vip-lib.sh

echo "acquire: $PRIMARY_NODE ($PRIMARY_IP) becomes primary ($ROLE_FROM -> $ROLE_TO; previous primary: ${PREVIOUS_PRIMARY:-none}); adding $VIP"
iface=$(vip_add) || exit 1
announce "$iface"
echo "acquire: $VIP is on $iface of $PRIMARY_NODE"
