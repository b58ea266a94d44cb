#!/bin/sh
# -primary-release hook: this node is no longer primary. Remove the virtual IP (nothing to do
# when it is not there).
set -u
. /etc/serf/vip-lib.sh

echo "release: $PRIMARY_NODE steps down ($ROLE_FROM -> $ROLE_TO; primary now: ${NEW_PRIMARY:-none}); removing $VIP"
if vip_present; then
    vip_del || exit 1
    echo "release: $VIP removed"
else
    echo "release: $VIP was not here"
fi
