#!/usr/bin/env bash
# bench/ipv6.sh: TCP throughput through tunvpn for each inner family over each underlay family, and over the
# bare routed path for each family, interleaved in one run, with the IPv6/IPv4 ratios. Run as root; see
# bench/README.md.
#
#   C (client)                                   S (server, forwards both families)           H (host)
#   c0 10.101.0.2/24, fd00:101::2/64 ── veth ── s0 10.101.0.1/24, fd00:101::1/64
#                                                s1 10.201.0.1/24, fd00:201::1/64 ── veth ── h0 10.201.0.2/24,
#                                                   IPv6 default via fd00:201::2                  fd00:201::2/64
#   tunvpn: S tvb0 10.8.0.1/16, fd00:8::1/64 (--no-nat; listening on its default [::]:51820, one socket for
#           both families); C tvb0 10.8.0.2, fd00:8::2 (--no-routes), reaching S at 10.101.0.1:51820
#           (IPv4 underlay) or [fd00:101::1]:51820 (IPv6 underlay)
#           C: 10.201.0.0/24 and fd00:201::/64 dev tvb0; H: 10.8.0.0/16 via 10.201.0.1, fd00:8::/64 via fd00:201::1
#   veth:   C: 10.201.0.0/24 via 10.101.0.1, fd00:201::/64 via fd00:101::1; H: the reverse routes
#
# S's IPv6 default route gives the server IPv6 egress, without which the client would answer IPv6 for H
# itself (docs/PROTOCOL.md). Each round runs, in turn (each round starting one later than the one before):
# the tunnel over an IPv4 underlay, the tunnel over an IPv6 underlay, the bare path; in each, iperf3 TCP C→H and H→C (-R) to H's IPv4 address, then to its IPv6
# address. Each gets freshly made namespaces and is torn down completely before the next starts. Nothing is
# changed in the root network namespace; every process started here is stopped by PID and every namespace
# (named after this script's PID) deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() {
    cat <<EOF
Usage: sudo bench/ipv6.sh [--quick] [--rounds N] [--duration SECONDS]

Prints the median TCP throughput (iperf3, one stream, each direction) through tunvpn for IPv4 and IPv6
inside the tunnel, over an IPv4 and an IPv6 underlay, and over the bare routed path, with the ratios
IPv6/IPv4. The default (3 rounds, 10 s tests) takes about 7 minutes; --quick (1 round, 3 s tests) about 1.

Environment: TUNVPN=path (use this binary instead of building), SCRATCH_PATH (SwiftPM scratch path,
default .build-static), ROUNDS, DURATION, PATHS (default "tunnel4 tunnel6 veth").
EOF
}

die() { echo "ipv6.sh: error: $*" >&2; exit 1; }
note() { echo "ipv6.sh: $*" >&2; }

# shellcheck source=lib/options.sh
. "$here/lib/options.sh"
parse_bench_options "$@"
PATHS=${PATHS:-"tunnel4 tunnel6 veth"}
for p in $PATHS; do [[ "$p" =~ ^(tunnel4|tunnel6|veth)$ ]] || die "PATHS: '$p' is not tunnel4, tunnel6 or veth"; done

[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces): sudo bench/ipv6.sh"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"
for tool in ip iperf3 ping python3 timeout awk ss; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH (apt-get install iperf3 iproute2 iputils-ping)"
done

# ---- tunvpn binary (as bench/run.sh builds it) ------------------------------------------------------
# shellcheck source=lib/tunvpn-binary.sh
. "$here/lib/tunvpn-binary.sh"
find_tunvpn

# ---- state and cleanup -----------------------------------------------------------------------------
# shellcheck source=lib/topology.sh
. "$here/lib/topology.sh" # pids, namespaces, topo_*, stop_pid, wait_for, run_wait, in_ns
tag="tvip6$$"
NS_C="$tag-c"; NS_S="$tag-s"; NS_H="$tag-h"
work=$(mktemp -d "/tmp/$tag.XXXXXX")
raw="$work/raw.tsv"; : >"$raw"
failures=()
topo_traps


make_topology() {
    topo_namespaces "$NS_C" "$NS_S" "$NS_H"
    topo_dual_stack "$NS_C" "$NS_S" "$NS_H"
    topo_link "$NS_C" c0 10.101.0.2/24 "$NS_S" s0 10.101.0.1/24
    topo_link "$NS_S" s1 10.201.0.1/24 "$NS_H" h0 10.201.0.2/24
    topo_address6 "$NS_C" c0 fd00:101::2/64
    topo_address6 "$NS_S" s0 fd00:101::1/64
    topo_address6 "$NS_S" s1 fd00:201::1/64
    topo_address6 "$NS_H" h0 fd00:201::2/64
    topo_wait_up "$NS_C" c0 && topo_wait_up "$NS_S" s0 s1 && topo_wait_up "$NS_H" h0 || die "a link did not come up"
    ip -n "$NS_S" -6 route add default via fd00:201::2
    in_ns "$NS_S" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip netns exec "$NS_H" iperf3 -s -p 5201 >"$work/iperf3-server.log" 2>&1 &
    pids+=("$!")
    wait_for 5 "iperf3 -s in H" bash -c "ss -N '$NS_H' -Hltn 'sport = :5201' | grep -q ." \
        || die "iperf3 server did not start: $(tail -3 "$work/iperf3-server.log")"
}

# setup_tunnel ENDPOINT: the server and a client towards ENDPOINT, and the routes of the file comment.
setup_tunnel() {
    local endpoint=$1 k="$work/keys"
    mkdir -p "$k"
    "$tunvpn" keygen --out "$k" --name server --force >/dev/null
    "$tunvpn" keygen --out "$k" --name client --force >/dev/null
    cp "$k/client.pub" "$k/clients"
    ip netns exec "$NS_S" "$tunvpn" server --key "$k/server.key" --clients "$k/clients" \
        --address 10.8.0.1/16 --address fd00:8::1/64 --dev tvb0 --no-nat >"$work/tunvpn-server.log" 2>&1 &
    pids+=("$!")
    wait_for 10 "tunvpn server to listen" grep -q "server listening" "$work/tunvpn-server.log" \
        || die "tunvpn server did not start: $(tail -5 "$work/tunvpn-server.log")"
    ip netns exec "$NS_C" "$tunvpn" client --key "$k/client.key" --peer-key "$k/server.pub" --endpoint "$endpoint" \
        --dev tvb0 --no-routes >"$work/tunvpn-client.log" 2>&1 &
    pids+=("$!")
    wait_for 15 "the tunvpn client's 'tunnel up'" grep -q "tunnel up" "$work/tunvpn-client.log" \
        || die "tunvpn client never logged 'tunnel up': $(tail -5 "$work/tunvpn-client.log")"
    wait_for 5 "fd00:8::2 on tvb0 in C" bash -c "ip -n '$NS_C' -6 address show dev tvb0 | grep -q fd00:8::2" \
        || die "tvb0 in C never got fd00:8::2: $(tail -3 "$work/tunvpn-client.log")"
    ip -n "$NS_C" route add 10.201.0.0/24 dev tvb0
    ip -n "$NS_C" -6 route add fd00:201::/64 dev tvb0
    ip -n "$NS_H" route add 10.8.0.0/16 via 10.201.0.1
    ip -n "$NS_H" -6 route add fd00:8::/64 via fd00:201::1
}

setup_veth() {
    ip -n "$NS_C" route add 10.201.0.0/24 via 10.101.0.1
    ip -n "$NS_C" -6 route add fd00:201::/64 via fd00:101::1
    ip -n "$NS_H" route add 10.101.0.0/24 via 10.201.0.1
    ip -n "$NS_H" -6 route add fd00:101::/64 via fd00:201::1
}

record() { printf '%s\t%s\t%s\t%s\n' "$round" "$1" "$2" "$3" >>"$raw"; }

# tcp_test PATH INNER METRIC ARGS…: one iperf3 run from C to H's address of family INNER (4 or 6).
tcp_test() {
    local path=$1 inner=$2 metric=$3 target out bps bytes retr
    shift 3
    target=$([ "$inner" = 6 ] && echo fd00:201::2 || echo 10.201.0.2)
    if ! run_wait "$work/$path-$inner-$metric.json" "$work/iperf.err" $((DURATION + 30)) \
        ip netns exec "$NS_C" iperf3 -c "$target" -p 5201 --json -t "$DURATION" "$@" \
        || ! out=$(python3 "$here/report.py" tcp "$work/$path-$inner-$metric.json"); then
        failures+=("round $round $path IPv$inner $metric: iperf3 failed")
        note "  $path, IPv$inner inside, $metric: FAILED"
        return 0
    fi
    read -r bps bytes retr <<<"$out"
    record "$path" "ipv$inner.$metric" "$(awk -v b="$bps" 'BEGIN{printf "%.4f", b/1e9}')"
    note "  $path, IPv$inner inside, $metric: $(awk -v b="$bps" 'BEGIN{printf "%.2f", b/1e9}') Gbit/s, $retr retransmits"
}

# run_path PATH: PATH is tunnel4 (IPv4 underlay), tunnel6 (IPv6 underlay) or veth.
run_path() {
    local path=$1 inner
    note "round $round/$ROUNDS: $path"
    make_topology
    case "$path" in
        tunnel4) setup_tunnel 10.101.0.1:51820 ;;
        tunnel6) setup_tunnel "[fd00:101::1]:51820" ;;
        veth) setup_veth ;;
    esac
    for inner in 4 6; do
        local target
        target=$([ "$inner" = 6 ] && echo fd00:201::2 || echo 10.201.0.2)
        wait_for 10 "a ping from C to $target over $path" in_ns "$NS_C" ping -n -c 1 -W 1 "$target" \
            || die "$path: no path from C to H ($target)"
        tcp_test "$path" "$inner" up
        tcp_test "$path" "$inner" down -R
    done
    if [ "$path" = tunnel6 ]; then
        grep -q "fd00:101::2" "$work/tunvpn-server.log" \
            || failures+=("round $round tunnel6: the server never named the client's IPv6 underlay address")
    fi
    topo_teardown
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date +%s)
note "tunvpn: $tunvpn; $ROUNDS round(s) of ${DURATION} s iperf3 TCP tests"
# Each round starts one path later than the one before (tunnel4 tunnel6 veth, then tunnel6 veth tunnel4, …),
# so that no path always runs first, right after the previous round's teardown.
read -r -a order <<<"$PATHS"
for round in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((${#order[@]} - 1))); do run_path "${order[$(((i + round - 1) % ${#order[@]}))]}"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----------------------------------------------------------------------------------------
echo
LOAD_START=$load_start LOAD_END=$load_end ELAPSED=$(($(date +%s) - started_at)) ROUNDS=$ROUNDS DURATION=$DURATION \
NPROC="$(nproc)" VERSION="$(git -C "$repo" describe --always --dirty --tags 2>/dev/null || echo unknown)" \
FAILURES="$(printf '%s\n' "${failures[@]+"${failures[@]}"}")" python3 - "$raw" <<'EOF'
import os, statistics, sys
values = {}
for line in open(sys.argv[1]):
    _, path, metric, value = line.rstrip("\n").split("\t")
    values.setdefault((path, metric), []).append(float(value))
def med(path, metric):
    v = values.get((path, metric))
    return statistics.median(v) if v else None
def fmt(x, d=2):
    return "–" if x is None else f"{x:.{d}f}"
def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b
paths = [("tunnel4", "tunvpn, IPv4 underlay"), ("tunnel6", "tunvpn, IPv6 underlay"), ("veth", "bare routed path")]
print(f"### IPv4 and IPv6 through tunvpn (bench/ipv6.sh, {os.environ['VERSION']})")
print()
print(f"Medians of {os.environ['ROUNDS']} round(s) of {os.environ['DURATION']} s iperf3 TCP tests, one stream, C→H (up) and H→C (down); "
      f"{os.environ['NPROC']} CPUs, load average {os.environ['LOAD_START']} at the start and {os.environ['LOAD_END']} at the end, "
      f"{os.environ['ELAPSED']} s in all. Gbit/s, ↑ better.")
print()
print("| path | direction | IPv4 inside | IPv6 inside | IPv6 / IPv4 inside |")
print("|---|---|---|---|---|")
for path, label in paths:
    for d in ("up", "down"):
        a, b = med(path, f"ipv4.{d}"), med(path, f"ipv6.{d}")
        print(f"| {label} | {d} | {fmt(a)} | {fmt(b)} | {fmt(ratio(b, a), 3)} |")
print()
print("| inside | direction | IPv4 underlay | IPv6 underlay | IPv6 / IPv4 underlay |")
print("|---|---|---|---|---|")
for inner in ("ipv4", "ipv6"):
    for d in ("up", "down"):
        a, b = med("tunnel4", f"{inner}.{d}"), med("tunnel6", f"{inner}.{d}")
        print(f"| {inner.replace('ipv', 'IPv')} | {d} | {fmt(a)} | {fmt(b)} | {fmt(ratio(b, a), 3)} |")
failures = [l for l in os.environ["FAILURES"].splitlines() if l]
if failures:
    print()
    print("Failures: " + "; ".join(failures))
EOF
[ ${#failures[@]} -eq 0 ] || exit 1
