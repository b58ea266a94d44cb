#!/usr/bin/env bash
# Install what `cluster-bench compare` measures against and needs, on Debian or Ubuntu:
#   - HashiCorp Serf (the Debian package `serf`, 0.9.4 on bookworm);
#   - iproute2 and iptables, for traffic accounting and random loss (used only when the harness
#     runs as root);
#   - etcd 3.4 (the Debian package `etcd-server`), the reference of `cluster-bench kv`.
# The demo (`cluster-bench demo`) needs none of this for serf-agent; it runs this script itself
# (as root, with apt-get) to add Serf to the side-by-side run when `serf` is missing.
#
# Usage: sudo benches/setup.sh
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run as root (sudo benches/setup.sh): it installs Debian packages" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "setup.sh: apt-get not found; install HashiCorp Serf 0.9.x by hand and put 'serf' on PATH" >&2
    exit 1
fi

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends serf iproute2 iptables
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server

# The package enables a system-wide agent; the harness starts its own agents on 127.0.x
# addresses, so make sure the packaged service does not hold port 7946 or 7373.
if command -v systemctl >/dev/null && systemctl is-active --quiet serf 2>/dev/null; then
    systemctl stop serf || true
fi
# Likewise etcd's packaged service (ports 2379/2380): `cluster-bench kv` starts its own members.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi

echo
echo "installed: $(command -v serf) ($(serf version | head -n 1))"
echo "now: cargo run --release -p cluster-bench -- compare --quick"
