# Shared by the virtual IP scripts (sourced). The virtual IP goes on the interface that holds the
# node's own address: eth0 normally, another name after `docker network disconnect` + `connect`
# (the interface is created anew, e.g. eth1), which is why it is looked up, not assumed.
#
# SERF_VIP (the virtual IP) and SERF_NODE_IP (this node's address) come from the entrypoint;
# PRIMARY_IP, from the agent, is the same address.
VIP=${SERF_VIP:?SERF_VIP is not set}
NODE_IP=${SERF_NODE_IP:-${PRIMARY_IP:-}}

# iface_of IP: the interface holding IP, empty if none.
iface_of() {
    ip -4 -o addr show 2>/dev/null | awk -v ip="$1" '{ split($4, a, "/"); if (a[1] == ip) { print $2; exit } }'
}

vip_present() {
    [ -n "$(iface_of "$VIP")" ]
}

# announce IFACE [COUNT]: unsolicited ARP, "VIP is at my MAC", COUNT times (default 3) one second
# apart, so that neighbours that cached the old primary's MAC for the virtual IP update at once.
announce() {
    arping -U -c "${2:-3}" -I "$1" "$VIP" >/dev/null 2>&1 || echo "arping on $1 failed (the address is up anyway)" >&2
}

# vip_add: put the virtual IP on this node's interface (idempotent); prints the interface.
vip_add() {
    iface=$(iface_of "$NODE_IP")
    if [ -z "$iface" ]; then
        echo "no interface holds $NODE_IP (the node is cut off?); the virtual IP is not added" >&2
        return 1
    fi
    if ! vip_present; then
        ip addr add "$VIP/32" dev "$iface" || vip_present || return 1
    fi
    echo "$iface"
}

# vip_del: remove the virtual IP wherever it is (idempotent).
vip_del() {
    iface=$(iface_of "$VIP")
    [ -z "$iface" ] && return 0
    ip addr del "$VIP/32" dev "$iface" || ! vip_present
}

# local_role: this node's role as the agent sees it now (primary, standby, ineligible).
local_role() {
    serf-agent primary -format json 2>/dev/null | tr -d ' \t\n' | grep -o '"role":"[a-z]*"' | cut -d'"' -f4
}
