# bench/lib/topology.sh: the namespace topology and process bookkeeping that bench/run.sh,
# bench/scale.sh, bench/flood.sh and bench/ipv6.sh share. Source it (bash); it defines functions and two arrays and runs
# nothing itself.
#
#   pids=()        every process the script started and has not reaped (the script appends to it)
#   namespaces=()  every namespace topo_namespaces made and topo_teardown has not deleted
#   topo_files=()  files topo_teardown removes too (the script sets it: wireguard-go's sockets)
#
# It uses the script's `note` and `$work` (its scratch directory).
#
# The rules the scripts keep (bench/README.md): nothing is changed in the root network namespace, since each
# veth pair is created inside its first namespace with its peer placed directly in the second
# (`ip -n A link add … peer name … netns B`); every process is stopped by PID; every namespace is deleted
# on any exit, by the script's EXIT trap calling topo_teardown.

pids=()
namespaces=()
topo_files=()

# forget_pid PID: drops PID from pids once the script has reaped it.
forget_pid() { local p=$1 keep=() x; for x in "${pids[@]}"; do [ "$x" = "$p" ] || keep+=("$x"); done; pids=("${keep[@]}"); }

# run_wait OUT ERR SECONDS CMD…: runs CMD in the background under `timeout`, stdout to OUT and stderr to
# ERR, and waits, so a signal reaches the script's trap at once (bash runs traps only between foreground
# commands). The redirections must stay on the background command: with them on a function call around
# `wait`, bash 5.2 dies of SIGTERM without running the trap. Returns CMD's status.
run_wait() {
    local out=$1 err=$2 secs=$3 pid rc=0
    shift 3
    timeout --kill-after=5 "$secs" "$@" >"$out" 2>"$err" &
    pid=$!
    pids+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# in_ns NS CMD…: runs CMD inside a namespace. Background processes are started with `ip netns exec` itself,
# never through this function, so that $! is the process (ip execs it) and not a subshell.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# topo_namespaces NS…: makes each namespace with its loopback up, and remembers it for topo_teardown.
topo_namespaces() {
    local ns
    for ns in "$@"; do
        ip netns add "$ns"
        namespaces+=("$ns")
        ip -n "$ns" link set lo up
    done
}

# topo_link NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair IF_A in NS_A and IF_B in NS_B, made inside NS_A,
# each end with its address (with prefix length) and up.
topo_link() {
    local ns_a=$1 if_a=$2 addr_a=$3 ns_b=$4 if_b=$5 addr_b=$6
    ip -n "$ns_a" link add "$if_a" type veth peer name "$if_b" netns "$ns_b"
    ip -n "$ns_a" addr add "$addr_a" dev "$if_a"
    ip -n "$ns_b" addr add "$addr_b" dev "$if_b"
    ip -n "$ns_a" link set "$if_a" up
    ip -n "$ns_b" link set "$if_b" up
}

# topo_dual_stack NS…: lets IPv6 addresses be used in each namespace at once and without noise: no router
# solicitations, no router advertisements accepted (every route here is static) and no duplicate address
# detection, as in Sources/NamespaceLab/LabPlan.swift. Run it before making the links.
topo_dual_stack() {
    local ns
    for ns in "$@"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
            net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0 \
            net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 >/dev/null
    done
}

# topo_address6 NS DEV ADDR6: adds an IPv6 address (with prefix length) to DEV in NS, `nodad` so that it is
# usable at once instead of after duplicate address detection (ip-address(8)).
topo_address6() {
    ip -n "$1" -6 address add "$3" dev "$2" nodad
}

# topo_wait_up NS DEV…: waits (at most 5 s) until each DEV in NS is in state UP and has its link-local IPv6
# address: until then what it sends is dropped, or a router cannot solicit a neighbour for a packet it
# forwards, which IPv6 neighbour discovery (retrying only after a second) makes visible
# (LabPlan.isReady in Sources/NamespaceLab/LabPlan.swift).
topo_wait_up() {
    local ns=$1 dev
    shift
    for dev in "$@"; do
        wait_for 5 "$dev in $ns to be up" bash -c "ip -n '$ns' -o link show dev '$dev' | grep -q ' state UP ' \
            && ip -n '$ns' -o -6 address show dev '$dev' scope link | grep -q 'inet6 fe80:'" || return 1
    done
}

# topo_addresses NS DEV BATCH ADDR…: adds many addresses (with prefix length) to DEV in NS in one
# `ip -batch` run, through the file BATCH (a load generator's source addresses).
topo_addresses() {
    local ns=$1 dev=$2 batch=$3 addr
    shift 3
    for addr in "$@"; do echo "address add $addr dev $dev"; done >"$batch"
    ip -n "$ns" -batch "$batch"
}

# stop_pid PID: TERM, up to 3 s, then KILL; always reaps.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# topo_teardown: stops every process in `pids` and deletes every namespace in `namespaces` (with their
# veths). Safe to run twice, and before anything was made.
topo_teardown() {
    local pid ns
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    pids=()
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    namespaces=()
    [ ${#topo_files[@]} -eq 0 ] || rm -f "${topo_files[@]}"
}

# topo_cleanup: the exit trap. topo_teardown; after a failure, the last 20 lines of $work/server.log if
# there is one; removes $work; exits with the script's status.
topo_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    topo_teardown
    if [ "$rc" != 0 ] && [ -f "$work/server.log" ]; then
        note "server log (last 20 lines):"; tail -20 "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}

# topo_traps: runs topo_cleanup on any exit, including Ctrl-C (status 130) and SIGTERM (143).
topo_traps() {
    trap topo_cleanup EXIT
    trap 'note "interrupted"; exit 130' INT
    trap 'note "terminated"; exit 143' TERM
}

# wait_for SECONDS DESCRIPTION CMD…: polls CMD every 0.1 s until it succeeds; says so (through the
# script's `note`) and fails after SECONDS.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for i in $(seq $((secs * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    note "timed out after ${secs}s waiting for $what"
    return 1
}
