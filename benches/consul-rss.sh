#!/usr/bin/env bash
# Where a consul-lite agent's resident set goes, beside serf-agent's, in one run (issue 15's
# target: a consul-lite client agent needs at most 1.5x serf-agent's RSS).
#
# Starts, on loopback, 3 consul-lite servers (127.0.61.2-4, -server -bootstrap-expect 3) and 5
# client agents (127.0.61.10-14, -retry-join the servers, the lock-held primary on: -primary-http,
# -primary-lock-delay 1s), with the flags cluster-bench gives them (benches/src/consul.rs), and
# 5 serf-agents (127.0.62.10-14, as benches/agent-rss.sh starts them). Waits until every client
# lists the 8 consul-lite agents alive and one client serves the primary, and every serf-agent
# lists 5 alive; then polls every agent's member list 5 times a second for SECS seconds
# (default 20) and reads, for every process, /proc/PID/status (VmRSS, RssAnon, RssFile, Threads),
# /proc/PID/task/*/schedstat (CPU, all threads) and /proc/PID/smaps, whose mappings it sorts into: the binary's pages
# (file-backed, and its private pages written since: anonymous), [heap] (the main malloc arena),
# other malloc arenas (an anonymous mapping followed by the PROT_NONE rest of its 64 MiB
# reservation), thread and signal stacks (an anonymous mapping right after a PROT_NONE guard page), the main
# [stack], and other anonymous mappings (large allocations, vdso). Writes OUT (default
# docs/results/consul-rss.md).
#
# Binaries: built as the harness builds them (scripts/build-agent.sh: consul-lite with the
# `consul` profile, serf-agent with the `agent` profile) unless CONSUL_LITE / SERF_AGENT name
# others; VARIANT names the consul-lite build in the report.
#
# Usage: benches/consul-rss.sh [SECS]          (wrap it in `flock /work/heavy.lock` on a shared box)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${1:-20}
OUT=${OUT:-$ROOT/docs/results/consul-rss.md}
CONSUL_NET=127.0.61
SERF_NET=127.0.62
RUN=$(mktemp -d /tmp/consul-rss.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

# The commit measured, read before anything is written (this script rewrites a tracked file).
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- || echo +dirty)
CONSUL_LITE_SET=${CONSUL_LITE:-}
CONSUL_LITE=${CONSUL_LITE:-$("$ROOT/scripts/build-agent.sh" consul-lite)}
SERF_AGENT=${SERF_AGENT:-$("$ROOT/scripts/build-agent.sh")}
VARIANT=${VARIANT:-\`consul\` profile (scripts/build-agent.sh consul-lite)}

ROLES=() # role of each PID, same index
start() { # role log bin args...
    local role=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    PIDS+=($!)
    ROLES+=("$role")
}

common() { # ip
    echo -bind "$1" -client "$1" -http-port 7373 -serf-lan-port 7946 -dns-port -1 -log-level warn
}

# consul-lite: 3 servers, then 5 clients once there is a leader.
SEEDS=()
for k in 0 1 2; do SEEDS+=("$CONSUL_NET.$((2 + k)):7946"); done
for k in 0 1 2; do
    ip=$CONSUL_NET.$((2 + k))
    join=()
    for s in "${SEEDS[@]}"; do [[ $s == "$ip:7946" ]] || join+=(-retry-join "$s"); done
    mkdir -p "$RUN/server$k"
    # shellcheck disable=SC2046
    start server "$RUN/server$k/agent.log" "$CONSUL_LITE" agent -server -bootstrap-expect 3 -node "server$k" \
        -data-dir "$RUN/server$k/data" $(common "$ip") -server-port 8300 "${join[@]}"
done
leader=""
for _ in $(seq 1 300); do
    leader=$(curl -s -m 1 "http://$CONSUL_NET.2:7373/v1/status/leader" || true)
    ((${#leader} > 2)) && break
    sleep 0.1
done
((${#leader} > 2)) || { echo "consul-rss: the servers elected no leader in 30 s; server0's log:" >&2; tail -n 20 "$RUN/server0/agent.log" >&2; exit 1; }
for i in 0 1 2 3 4; do
    ip=$CONSUL_NET.$((10 + i))
    join=()
    for s in "${SEEDS[@]}"; do join+=(-retry-join "$s"); done
    mkdir -p "$RUN/client$i"
    # shellcheck disable=SC2046
    start client "$RUN/client$i/agent.log" "$CONSUL_LITE" agent -node "node$i" $(common "$ip") "${join[@]}" \
        -primary-http "$ip:8080" -primary-lock-delay 1s
done
# serf-agent: 5 agents, node 0 first.
for i in 0 1 2 3 4; do
    ip=$SERF_NET.$((10 + i))
    join=()
    ((i > 0)) && join=(-join "$SERF_NET.10:7946")
    start serf-agent "$RUN/serf$i.log" "$SERF_AGENT" agent -node "n$i" -bind "$ip:7946" -rpc-addr "$ip:7373" \
        -primary-http "$ip:8080" -tag role=standby -profile lan -event-handler /bin/true -log-level warn "${join[@]}"
    ((i == 0)) && sleep 0.3
done

alive() { # url: how many members the agent lists alive (Status 1 or "alive")
    local n
    n=$(curl -s -m 1 "$1" | jq '[(if type == "object" then .members else . end)[] | select(.Status == 1 or .status == "alive")] | length' 2>/dev/null || true)
    echo "${n:-0}"
}
formed=""
for _ in $(seq 1 120); do
    ok=1
    for i in 0 1 2 3 4; do
        (($(alive "http://$CONSUL_NET.$((10 + i)):7373/v1/agent/members") == 8)) || ok=0
        (($(alive "http://$SERF_NET.$((10 + i)):7373/v1/members") == 5)) || ok=0
    done
    primary=0
    for i in 0 1 2 3 4; do
        [[ $(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://$CONSUL_NET.$((10 + i)):8080/") == 200 ]] && primary=1
    done
    ((ok && primary)) && { formed=1; break; }
    sleep 0.5
done
[[ -n $formed ]] || { echo "consul-rss: the clusters did not form within 60 s (client0's log follows)" >&2; tail -n 20 "$RUN/client0/agent.log" >&2; exit 1; }

end=$((SECONDS + SECS))
while ((SECONDS < end)); do
    for i in 0 1 2 3 4; do
        curl -s -m 1 "http://$CONSUL_NET.$((10 + i)):7373/v1/agent/members" >/dev/null || true
        curl -s -m 1 "http://$SERF_NET.$((10 + i)):7373/v1/members" >/dev/null || true
    done
    sleep 0.2
done

# One line per process: role pid VmRSS RssAnon RssFile Threads cpu_ms, then kB by kind of mapping.
: >"$RUN/rows"
for n in "${!PIDS[@]}"; do
    p=${PIDS[$n]}
    [[ -r /proc/$p/status ]] || { echo "consul-rss: ${ROLES[$n]} $p exited; its log is in the run directory" >&2; exit 1; }
    status=$(awk '/^(VmRSS|RssAnon|RssFile|Threads):/{printf "%s ", $2}' "/proc/$p/status")
    cpu=$(cat /proc/"$p"/task/*/schedstat | awk '{ns += $1} END {print int(ns / 1e6)}')
    bin=$(readlink "/proc/$p/exe")
    kinds=$(perl -e '
        my ($bin) = @ARGV; my @m; my $cur;
        open(my $f, "<", "/proc/'"$p"'/smaps") or die;
        while (<$f>) {
            if (/^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/) {
                $cur = { lo => hex($1), hi => hex($2), perm => $3, name => $4, rss => 0, anon => 0 }; push @m, $cur;
            } elsif (/^Rss:\s+(\d+)/) { $cur->{rss} = $1 } elsif (/^Anonymous:\s+(\d+)/) { $cur->{anon} = $1 }
        }
        my %k = map { $_ => 0 } qw(bin_file bin_anon heap arena arenas stack tstack tstacks other);
        for my $i (0 .. $#m) {
            my $x = $m[$i]; my $prev = $i > 0 ? $m[$i - 1] : undef; my $next = $m[$i + 1];
            if ($x->{name} eq $bin) { $k{bin_file} += $x->{rss} - $x->{anon}; $k{bin_anon} += $x->{anon} }
            elsif ($x->{name} eq "[heap]") { $k{heap} += $x->{rss} }
            elsif ($x->{name} eq "[stack]") { $k{stack} += $x->{rss} }
            elsif ($x->{name} eq "" && $x->{perm} =~ /^rw/ && $next && $next->{name} eq "" && $next->{perm} =~ /^---/
                   && $next->{lo} == $x->{hi} && $x->{lo} % (64 << 20) == 0) { $k{arena} += $x->{rss}; $k{arenas}++ }
            elsif ($x->{name} eq "" && $x->{perm} =~ /^rw/ && $prev && $prev->{name} eq "" && $prev->{perm} =~ /^---/
                   && $prev->{hi} == $x->{lo} && $prev->{hi} - $prev->{lo} <= 65536) { $k{tstack} += $x->{rss}; $k{tstacks}++ }
            else { $k{other} += $x->{rss} }
        }
        print join(" ", map { $k{$_} } qw(bin_file bin_anon heap arena arenas tstack tstacks stack other)), "\n";
    ' "$bin")
    echo "${ROLES[$n]} $p $status$cpu $kinds" >>"$RUN/rows"
done

mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }
size_of() { # bin: file MiB, .text MiB
    printf '%s / %s' "$(stat -c %s "$1" | awk '{printf "%.2f", $1 / 1048576}')" \
        "$(size -A "$1" | awk '$1 == ".text" {printf "%.2f", $2 / 1048576}')"
}
# Mean per role of each column (fields 3..), as "role n c3 c4 ...".
awk '{ n[$1]++; for (i = 3; i <= NF; i++) s[$1, i] += $i; nf = NF }
     END { for (r in n) { printf "%s %d", r, n[r]; for (i = 3; i <= nf; i++) printf " %.0f", s[r, i] / n[r]; printf "\n" } }' \
    "$RUN/rows" >"$RUN/means"
mean() { awk -v r="$1" -v c="$2" '$1 == r { print $(c) }' "$RUN/means"; } # role, column (3 = VmRSS)
CLIENT=$(mean client 3)
SERF=$(mean serf-agent 3)
RATIO=$(awk -v a="$CLIENT" -v b="$SERF" 'BEGIN { printf "%.2f", a / b }')
VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r <= 1.5 ? "met" : "missed") }')

{
    echo "# consul-lite's resident set beside serf-agent's"
    echo
    echo "- command: \`benches/consul-rss.sh $SECS\`$([[ -n ${CONSUL_LITE_SET:-} ]] && echo " with CONSUL_LITE=$CONSUL_LITE_SET")"
    echo "- machine: \`$(uname -a)\`, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ) (commit $COMMIT)"
    echo "- consul-lite: $VARIANT, file / .text $(size_of "$CONSUL_LITE") MiB; serf-agent: \`agent\` profile (scripts/build-agent.sh), file / .text $(size_of "$SERF_AGENT") MiB"
    echo "- 3 consul-lite servers + 5 client agents (lock-held primary on, \`-primary-lock-delay 1s\`) and 5 serf-agents on loopback, lan timings; after both clusters formed, every agent's member list polled 5 times a second for $SECS s, then each process read once"
    echo
    echo "**A client agent: $(mib "$CLIENT") MiB, $RATIO × serf-agent's $(mib "$SERF") MiB (target ≤ 1.5×: $VERDICT).** A server: $(mib "$(mean server 3)") MiB."
    echo
    echo "Mean per process of each role; MiB from /proc/PID/status, then resident kB by kind of mapping (/proc/PID/smaps; \"binary, written\" are the binary's private pages written since it was mapped, anonymous; arenas and stacks with their count: every thread has a stack and a signal stack, each after a guard page; CPU is the sum over the threads since the process started)."
    echo
    echo "| role | processes | VmRSS (MiB) | RssAnon (MiB) | RssFile (MiB) | threads | CPU (ms) | binary (kB) | binary, written (kB) | [heap] (kB) | other malloc arenas (kB, count) | thread and signal stacks (kB, count) | [stack] (kB) | other anonymous (kB) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for role in client server serf-agent; do
        awk -v r="$role" '$1 == r {
            name = (r == "client") ? "consul-lite client" : (r == "server") ? "consul-lite server" : "serf-agent";
            printf "| %s | %d | %.2f | %.2f | %.2f | %d | %d | %d | %d | %d | %d (%d) | %d (%d) | %d | %d |\n", name, $2,
                $3 / 1024, $4 / 1024, $5 / 1024, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 }' "$RUN/means"
    done
    echo
    echo "Every process:"
    echo
    echo "| role | pid | VmRSS (kB) | RssAnon (kB) | RssFile (kB) | threads | CPU (ms) | binary | binary, written | [heap] | arenas (count) | stacks (count) | [stack] | other anonymous |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s | %s |\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 }' "$RUN/rows"
} >"$RUN/report"
cp "$RUN/report" "$OUT"
cat "$OUT"
