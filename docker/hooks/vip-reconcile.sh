#!/bin/sh
# Event handler (member-join, member-update): make the virtual IP match this node's role.
#
# The role hooks run on role changes only; this repairs what happens between them. The case it is
# for: the primary is cut off the network (docker network disconnect) and keeps its role, as the
# oldest claim; its interface, and the virtual IP on it, is deleted, and `docker network connect`
# creates a new one without it. When the node sees the others again (member-join), this puts the
# virtual IP back. The role is asked from the agent at run time, and asked again after a change,
# so that a release hook running at the same moment wins. It reports on stderr, which the agent
# logs at level info (stdout only at debug).
set -u
. /etc/serf/vip-lib.sh
cat >/dev/null # the member lines on stdin are not needed

role=$(local_role)
if [ "$role" = primary ]; then
    vip_present && exit 0
    iface=$(vip_add) || exit 1
    if [ "$(local_role)" != primary ]; then
        vip_del
        exit 0
    fi
    echo "reconcile: primary without the virtual IP: added $VIP to $iface" >&2
    announce "$iface" 1 # once: a handler should be quick (the agent warns after 1 s)
elif [ -n "$role" ] && vip_present; then
    vip_del || exit 1
    echo "reconcile: $role with the virtual IP: removed $VIP" >&2
fi
exit 0
