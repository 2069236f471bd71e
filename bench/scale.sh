#!/usr/bin/env bash
# bench/scale.sh: one tunvpn server with 1,000 clients. Run as root; see bench/README.md.
#
#   G (load generator)                      S (tunvpn server)                   C (a real client)
#   g0 10.60.0.2/24 ──────── veth ───────── s0 10.60.0.1/24
#      + 10.61.0.1-254/24 (sources)            route 10.61.0.0/24 via 10.60.0.2
#                                           s1 10.62.0.1/24 ──────── veth ───── c0 10.62.0.2/24
#                                           tvs0 10.8.0.1/16 ⇄ tunnel ⇄         tvc0 10.8.0.2/16
#
# 1. `tunvpn server --allow-any-client --no-nat --address 10.8.0.1/16` in S; `tunvpn client --no-routes` in
#    C; ping and iperf3 (TCP, C → the server's tunnel address) with that single peer.
# 2. `tunvpn-loadgen --clients 1000` in G, from 254 source addresses and a port per client; the server's
#    CPU time (utime + stime in /proc/PID/stat) is read before and after: handshakes per CPU-second.
# 3. The same ping and iperf3 with 1,001 peers on the server, and its `stats:` line (SIGUSR1).
# Nothing is changed in the root network namespace; every process started here is stopped by PID and the
# namespaces (named after this script's PID) are deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() {
    cat <<EOF
Usage: sudo bench/scale.sh [--clients N] [--window W] [--duration SECONDS] [--rounds R]

Prints: handshakes/s (wall), handshakes per CPU-second of the server, and iperf3 TCP throughput through a
real client's tunnel with 1 peer and with N+1 peers (median of R rounds of DURATION s). Takes about a
minute with the defaults (1000 clients, window 32, 3 rounds of 3 s).

Environment: TUNVPN_BIN=dir holding tunvpn and tunvpn-loadgen (instead of building), SCRATCH_PATH
(SwiftPM scratch path, default .build), CONFIG (debug or release, default release).
EOF
}

die() { echo "scale.sh: error: $*" >&2; exit 1; }
note() { echo "scale.sh: $*" >&2; }

CLIENTS=1000
WINDOW=32
DURATION=3
ROUNDS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) [ $# -ge 2 ] || die "--clients needs a number"; CLIENTS=$2; shift ;;
        --window) [ $# -ge 2 ] || die "--window needs a number"; WINDOW=$2; shift ;;
        --duration) [ $# -ge 2 ] || die "--duration needs seconds"; DURATION=$2; shift ;;
        --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; ROUNDS=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done
for v in CLIENTS WINDOW DURATION ROUNDS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[ "$CLIENTS" -le 60000 ] || die "--clients: the 10.8.0.0/16 pool holds at most 65,532 clients"

[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces): sudo bench/scale.sh"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"
for tool in ip iperf3 ping python3 timeout getconf; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH (apt-get install iperf3 iproute2 iputils-ping)"
done

# ---- binaries --------------------------------------------------------------------------------------
if [ -n "${TUNVPN_BIN:-}" ]; then
    bin=$(cd "$TUNVPN_BIN" && pwd)
else
    scratch=${SCRATCH_PATH:-.build}
    config=${CONFIG:-release}
    note "building (swift build -c $config --scratch-path $scratch)"
    (cd "$repo" && timeout 1800 swift build -c "$config" --scratch-path "$scratch" >&2) || die "swift build failed"
    bin=$(cd "$repo" && swift build -c "$config" --scratch-path "$scratch" --show-bin-path)
fi
tunvpn=$bin/tunvpn
loadgen=$bin/tunvpn-loadgen
[ -x "$tunvpn" ] && [ -x "$loadgen" ] || die "$bin must hold tunvpn and tunvpn-loadgen"

# ---- state and cleanup -----------------------------------------------------------------------------
# shellcheck source=lib/topology.sh
. "$here/lib/topology.sh" # pids, namespaces, topo_*, stop_pid, wait_for, run_wait, in_ns
tag="tvscale$$"
NS_G="$tag-g"; NS_S="$tag-s"; NS_C="$tag-c"
work=$(mktemp -d "/tmp/$tag.XXXXXX")
clk_tck=$(getconf CLK_TCK)

topo_traps

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime, in clock ticks
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# ---- topology --------------------------------------------------------------------------------------
topo_namespaces "$NS_G" "$NS_S" "$NS_C"
topo_link "$NS_G" g0 10.60.0.2/24 "$NS_S" s0 10.60.0.1/24
topo_link "$NS_C" c0 10.62.0.2/24 "$NS_S" s1 10.62.0.1/24
topo_addresses "$NS_G" g0 "$work/sources.batch" $(seq -f '10.61.0.%g/24' 1 254)
ip -n "$NS_S" route add 10.61.0.0/24 via 10.60.0.2

# ---- server and a real client ----------------------------------------------------------------------
keys="$work/keys"
"$tunvpn" keygen --out "$keys" --name server >/dev/null
"$tunvpn" keygen --out "$keys" --name client >/dev/null
ip netns exec "$NS_S" "$tunvpn" server --key "$keys/server.key" --clients "$keys/none" --allow-any-client --no-nat \
    --listen 0.0.0.0:51820 --address 10.8.0.1/16 --dev tvs0 >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
wait_for 10 "tunvpn server to listen" grep -q "server listening" "$work/server.log" || die "tunvpn server did not start"
ip netns exec "$NS_C" "$tunvpn" client --key "$keys/client.key" --peer-key "$keys/server.pub" \
    --endpoint 10.62.0.1:51820 --dev tvc0 --no-routes >"$work/client.log" 2>&1 &
pids+=("$!")
wait_for 15 "the client's 'tunnel up'" grep -q "tunnel up" "$work/client.log" || die "the tunnel client never came up"
wait_for 10 "a ping through the tunnel" ip netns exec "$NS_C" ping -c 1 -W 1 10.8.0.1 || die "no ping through the tunnel"

ip netns exec "$NS_S" iperf3 -s -B 10.8.0.1 -p 5201 >"$work/iperf3-server.log" 2>&1 &
pids+=("$!")
wait_for 5 "iperf3 -s in S" bash -c "ip netns exec '$NS_S' ss -Hltn 'sport = :5201' | grep -q ." || die "iperf3 -s did not start"

# measure LABEL: 50 pings (20 ms apart) and ROUNDS iperf3 runs C → 10.8.0.1; sets ping_ms (the median
# round trip: single pings on this shared machine stray by milliseconds) and mbits (the median rate)
measure() {
    local label=$1 r rates=()
    ping_ms=$(ip netns exec "$NS_C" ping -n -c 50 -i 0.02 -W 1 10.8.0.1 \
        | sed -n 's/.*time=\([0-9.]*\).*/\1/p' | python3 -c 'import statistics,sys; print(statistics.median(float(l) for l in sys.stdin))' 2>/dev/null) \
        || die "$label: no ping replies through the tunnel"
    for r in $(seq "$ROUNDS"); do
        timeout $((DURATION + 20)) ip netns exec "$NS_C" iperf3 -c 10.8.0.1 -p 5201 -t "$DURATION" -J \
            >"$work/iperf3-$label-$r.json" || die "$label: iperf3 failed (round $r)"
        rates+=("$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6, 1))' \
            "$work/iperf3-$label-$r.json")")
    done
    mbits=$(printf '%s\n' "${rates[@]}" | python3 -c 'import statistics,sys; print(round(statistics.median(float(l) for l in sys.stdin), 1))')
    note "$label: ping median ${ping_ms} ms, iperf3 TCP ${rates[*]} Mbit/s (median $mbits)"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
measure "1-peer"
ping_1=$ping_ms mbits_1=$mbits

# ---- 1,000 clients ---------------------------------------------------------------------------------
rss_before=$(rss_kb "$server")
ticks_before=$(cpu_ticks "$server")
ip netns exec "$NS_G" "$loadgen" --peer-key "$keys/server.pub" --endpoint 10.60.0.1:51820 --clients "$CLIENTS" \
    --window "$WINDOW" --sources 10.61.0.0/24 --timeout 120 >"$work/loadgen.out" 2>"$work/loadgen.err" &
gen=$!
pids+=("$gen")
gen_rc=0
wait "$gen" || gen_rc=$?
ticks_after=$(cpu_ticks "$server")
rss_after=$(rss_kb "$server")
summary=$(cat "$work/loadgen.out")
echo "$summary"
[ "$gen_rc" = 0 ] || die "tunvpn-loadgen exited $gen_rc: $(cat "$work/loadgen.err")"
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$summary"; }
completed=$(field completed)
elapsed=$(field elapsed)
server_cpu=$(python3 -c "print(round(($ticks_after - $ticks_before) / $clk_tck, 2))")

before=$(grep -c '^stats:' "$work/server.log" || true)
kill -USR1 "$server"
wait_for 5 "the server's stats: line" bash -c "[ \$(grep -c '^stats:' '$work/server.log') -gt $before ]" || die "no stats: line"
stats=$(grep '^stats:' "$work/server.log" | tail -1)
server_handshakes=$(sed -n 's/.*handshakes.completed=\([0-9]*\).*/\1/p' <<<"$stats")

measure "$((CLIENTS + 1))-peer"
ping_n=$ping_ms mbits_n=$mbits

echo "machine:                      $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r), load average $load_before at the start"
echo "tunvpn:                       $bin/tunvpn, commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 - "$CLIENTS" "$completed" "$elapsed" "$server_cpu" "$server_handshakes" "$ping_1" "$mbits_1" "$ping_n" "$mbits_n" \
    "$rss_before" "$rss_after" "$WINDOW" <<'EOF'
import sys
clients, completed, elapsed, cpu, server_hs, ping1, mb1, pingn, mbn, rss0, rss1, window = sys.argv[1:]
completed, elapsed, cpu = int(completed), float(elapsed), float(cpu)
print(f"clients:                      {clients} (window {window}), {completed} handshakes completed")
print(f"server handshakes.completed:  {server_hs} (including the real client)")
print(f"wall:                         {elapsed:.2f} s, {completed / elapsed:.0f} handshakes/s")
print(f"server CPU:                   {cpu:.2f} s, {completed / cpu:.0f} handshakes per CPU-second" if cpu > 0 else
      "server CPU:                   under one clock tick")
print(f"server RSS:                   {int(rss0) / 1024:.1f} MB before, {int(rss1) / 1024:.1f} MB after")
print(f"iperf3 TCP, 1 peer:           {mb1} Mbit/s, ping median {ping1} ms")
print(f"iperf3 TCP, {int(clients) + 1} peers:       {mbn} Mbit/s, ping median {pingn} ms")
print(f"ratio {int(clients) + 1} / 1 peer:         {float(mbn) / float(mb1):.2f}")
EOF
