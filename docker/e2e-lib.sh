# Shared by the Docker end-to-end tests (docker/e2e.sh, docker/e2e-consul.sh): a timeline of
# events with timestamps, failing with a message, bounded polling. Sourced; the caller prints
# TIMELINE and RESULTS in its teardown and sets PASSED=1 at the end.

now_ms() { date +%s%3N; }
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }
T0=$(now_ms)
TIMELINE=()
RESULTS=()
PASSED=0

ev() {
    local t line
    t=$(now_ms)
    line=$(printf '%s  +%7ss  %s' "$(date -d "@$((t / 1000))" +%H:%M:%S).$(printf '%03d' $((t % 1000)))" "$(secs $((t - T0)))" "$*")
    TIMELINE+=("$line")
    echo "$line"
}

fail() {
    ev "FAIL: $*"
    exit 1
}

# try_until BOUND_SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds (WAITED_MS is
# how long it took) or BOUND_SECONDS pass (then it returns 1).
WAITED_MS=0
try_until() {
    local bound=$1
    shift
    local start deadline
    start=$(now_ms)
    deadline=$((start + bound * 1000))
    while :; do
        if "$@" >/dev/null 2>&1; then
            WAITED_MS=$(($(now_ms) - start))
            return 0
        fi
        (($(now_ms) < deadline)) || return 1
        sleep 0.2
    done
}

# wait_until BOUND_SECONDS DESCRIPTION COMMAND...: as try_until, but fails the test on timeout.
wait_until() {
    local bound=$1 what=$2
    shift 2
    try_until "$bound" "$@" || fail "$what: not within ${bound} s"
}

# finish CODE NAME: print the timeline, the measurements and the verdict (PASS when PASSED=1),
# then exit (with 1 at least when the test did not pass).
finish() {
    local code=$1
    echo
    echo "=== timeline"
    printf '%s\n' "${TIMELINE[@]}"
    if ((${#RESULTS[@]})); then
        echo
        echo "=== measurements"
        printf '%s\n' "${RESULTS[@]}"
    fi
    echo
    if ((PASSED)); then
        echo "$2: PASS"
    else
        echo "$2: FAIL (exit $code)"
        ((code == 0)) && code=1
    fi
    exit "$code"
}

show() {
    echo "    \$ $*"
    "$@" 2>&1 | sed 's/^/    /'
}

# need_jq: install jq (apt-get) when missing: the tests read the agents' JSON with it.
need_jq() {
    if ! command -v jq >/dev/null; then
        ev "installing jq (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; } || fail "jq is needed and could not be installed"
    fi
}
