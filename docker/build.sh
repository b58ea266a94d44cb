#!/usr/bin/env bash
# Build a node image in one command: the static agent, busybox, the scripts, FROM scratch.
#
#   docker/build.sh            build serf-agent (scripts/build-agent.sh), then the image serfnode:latest
#   docker/build.sh consul     build consul-lite (scripts/build-agent.sh consul-lite), then the image
#                              consulnode:latest (servers and client nodes; docker/consul/)
#
# Environment:
#   IMAGE             image name (default serfnode:latest or consulnode:latest)
#   SKIP_CARGO=1      do not run cargo; use the binary already built
#   CARGO_TARGET_DIR  where the build goes (default target/)
#
# The agent is the project's one build of it (scripts/build-agent.sh, the binary the demo and the
# benchmarks run), linked statically against glibc; busybox comes from the Debian package
# busybox-static (installed with apt-get when missing). Join addresses are IPs: a static glibc cannot load the NSS modules that
# resolving host names needs, and the image has none.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIND=${1:-serf}
case $KIND in
    serf)
        PACKAGE=serf-agent PROFILE=agent IMAGE=${IMAGE:-serfnode:latest}
        CONTEXT=$ROOT/target/docker-context DOCKERFILE=$ROOT/docker/Dockerfile
        ENTRYPOINT=$ROOT/docker/entrypoint.sh ENTRYPOINT_NAME=serfnode-entrypoint
        MAX_IMAGE_BYTES=$((20 * 1000 * 1000))
        ;;
    consul)
        PACKAGE=consul-lite PROFILE=consul IMAGE=${IMAGE:-consulnode:latest}
        CONTEXT=$ROOT/target/docker-context-consul DOCKERFILE=$ROOT/docker/consul/Dockerfile
        ENTRYPOINT=$ROOT/docker/consul/entrypoint.sh ENTRYPOINT_NAME=consulnode-entrypoint
        MAX_IMAGE_BYTES=$((40 * 1000 * 1000))
        ;;
    *) printf '[build] error: unknown image kind %s (serf or consul)\n' "$KIND" >&2; exit 2 ;;
esac
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$(uname -m)-unknown-linux-gnu/$PROFILE/$PACKAGE
# The busybox applets the scripts and a user at the shell need.
APPLETS="sh ash ip arping wget sleep cat echo ls ps kill ping grep sed awk date env hostname ifconfig
 mkdir rm cp mv ln tr cut head tail sort uniq wc printf test [ true false seq tee nc netstat ip vi more
 less uptime free top du df find xargs id whoami sync touch chmod basename dirname timeout watch"

say() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed"

# 1. The static agent.
if [[ ${SKIP_CARGO:-0} != 1 ]]; then
    say "scripts/build-agent.sh $PACKAGE (the $PROFILE profile, static)"
    BIN=$("$ROOT/scripts/build-agent.sh" "$PACKAGE")
fi
[[ -x $BIN ]] || die "$BIN is missing (build it, or unset SKIP_CARGO)"
if file "$BIN" 2>/dev/null | grep -q 'dynamically linked'; then
    die "$BIN is dynamically linked; it cannot run FROM scratch"
fi

# 2. busybox.
BUSYBOX=/bin/busybox
if ! [[ -x $BUSYBOX ]] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    say "installing busybox-static (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
[[ -x $BUSYBOX ]] || die "$BUSYBOX is missing after installing busybox-static"
if file -L "$BUSYBOX" 2>/dev/null | grep -q 'dynamically linked'; then
    die "$BUSYBOX is dynamically linked; install busybox-static, not busybox"
fi

# 3. The build context: a root file system, copied as is into the image.
say "staging $CONTEXT"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/rootfs/bin" "$CONTEXT/rootfs/etc/serf" "$CONTEXT/rootfs/data" "$CONTEXT/rootfs/tmp" \
    "$CONTEXT/rootfs/proc" "$CONTEXT/rootfs/sys" "$CONTEXT/rootfs/dev" "$CONTEXT/rootfs/root"
cp "$BUSYBOX" "$CONTEXT/rootfs/bin/busybox"
available=" $("$BUSYBOX" --list | tr '\n' ' ') "
for applet in $APPLETS; do
    if [[ $available == *" $applet "* ]]; then
        ln -sf busybox "$CONTEXT/rootfs/bin/$applet"
    else
        say "note: busybox has no applet '$applet'; skipped"
    fi
done
cp "$BIN" "$CONTEXT/rootfs/bin/$PACKAGE"
install -m 0755 "$ENTRYPOINT" "$CONTEXT/rootfs/bin/$ENTRYPOINT_NAME"
for script in vip-acquire.sh vip-release.sh vip-reconcile.sh; do
    install -m 0755 "$ROOT/docker/hooks/$script" "$CONTEXT/rootfs/etc/serf/$script"
done
install -m 0644 "$ROOT/docker/hooks/vip-lib.sh" "$CONTEXT/rootfs/etc/serf/vip-lib.sh"
install -m 0644 "$ROOT/docker/hooks/node-lib.sh" "$CONTEXT/rootfs/etc/serf/node-lib.sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$CONTEXT/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$CONTEXT/rootfs/etc/group"
chmod 1777 "$CONTEXT/rootfs/tmp"

# 4. The image.
say "docker build -t $IMAGE"
previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build --quiet -t "$IMAGE" -f "$DOCKERFILE" "$CONTEXT" >/dev/null 2>"$CONTEXT/build.log" || {
    cat "$CONTEXT/build.log" >&2
    die "docker build failed"
}
# The image it replaces, now untagged, is removed (unless a container still uses it).
current=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [[ -n $previous && $previous != "$current" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE: $size bytes ($((size / 1000 / 1000)) MB); agent $(stat -c %s "$BIN") bytes, busybox $(stat -c %s "$BUSYBOX") bytes"
((size < MAX_IMAGE_BYTES)) || die "the image is $size bytes, over the $((MAX_IMAGE_BYTES / 1000 / 1000)) MB budget"
