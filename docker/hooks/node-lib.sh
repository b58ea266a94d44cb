# Shared by the images' entrypoints (serfnode, consulnode; sourced).

# wait_ipv4 IFACE WHO HINT: print the first IPv4 address of IFACE. The interface may appear a
# moment after the container starts (docker network connect), so wait up to 10 s; then fail,
# saying "WHO: ..." and which variable to set (HINT).
wait_ipv4() {
    tries=0
    while :; do
        addr=$(ip -4 -o addr show dev "$1" 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
        tries=$((tries + 1))
        if [ "$tries" -ge 50 ]; then
            echo "$2: no IPv4 address on $1 after 10 s; set $3" >&2
            return 1
        fi
        sleep 0.2
    done
}
