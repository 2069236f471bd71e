#!/usr/bin/env bash
# bench/peers.sh: a tunvpn server's CPU per GB with 1 peer and with N peers (N-1 idle), interleaved in one
# run; with --pin, the server's and the client's tunvpn pinned to separate cores. Run as root; see
# bench/README.md.
#
#   setup "1"  C1 c0 10.70.1.2/24 ───── veth ───── S1 s0 10.70.1.1/24    allow-list: the real client
#   setup "N"  CN c0 10.70.2.2/24 ───── veth ───── SN s0 10.70.2.1/24    allow-list: the real client and
#              tvc0 10.8.0.2/16 ⇄ tunnel ⇄ tvs0 10.8.0.1/16                N-1 idle keys with fixed addresses
#
# The idle peers are allow-list entries that never handshake: they are the peers a server carries at no
# traffic, and they exercise what grows with configured peers (the per-peer tables, the address table the
# data path looks destinations up in, and `tick`), without a load generator's CPU on this small machine.
# Rounds run 1 N 1 N …; in each, iperf3 TCP (C → S's tunnel address, fixed duration) and the server's
# (and client's) utime+stime from /proc/PID/stat before and after give CPU-seconds per GB received.
# Nothing is changed in the root network namespace; every process started here is stopped by PID and the
# namespaces (named after this script's PID) are deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() {
    cat <<USAGE
Usage: sudo bench/peers.sh [--peers N] [--rounds R] [--duration SECONDS] [--pin]

Prints the server's CPU-seconds per GB (and the client's, and iperf3's rate) with 1 peer and with N peers
configured (default 10000: the real client and N-1 idle keys), medians of R interleaved rounds (default
3) of SECONDS-long iperf3 TCP runs (default 10), and the ratio N / 1. --pin runs the server's tunvpn on
CPU 0 and the client's on CPU 1 (taskset; iperf3 on either). Takes about 2 × R × (SECONDS + 5) s.

Environment: TUNVPN_BIN=dir holding tunvpn (instead of building), SCRATCH_PATH (SwiftPM scratch path,
default .build), CONFIG (debug or release, default release).
USAGE
}

die() { echo "peers.sh: error: $*" >&2; exit 1; }
note() { echo "peers.sh: $*" >&2; }

PEERS=10000
ROUNDS=3
DURATION=10
PIN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --peers) [ $# -ge 2 ] || die "--peers needs a number, e.g. --peers 10000"; PEERS=$2; shift ;;
        --rounds) [ $# -ge 2 ] || die "--rounds needs a number, e.g. --rounds 3"; ROUNDS=$2; shift ;;
        --duration) [ $# -ge 2 ] || die "--duration needs seconds, e.g. --duration 10"; DURATION=$2; shift ;;
        --pin) PIN=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done
for v in PEERS ROUNDS DURATION; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, not '${!v}' (e.g. --${v,,} 3)"
done
{ [ "$PEERS" -ge 2 ] && [ "$PEERS" -le 60000 ]; } || die "--peers must be 2 to 60000 (fixed addresses in 10.8.0.0/16), e.g. --peers 10000"

[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces): sudo bench/peers.sh"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"
for tool in ip iperf3 ping python3 timeout getconf taskset; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH (apt-get install iperf3 iproute2 iputils-ping util-linux)"
done
[ "$PIN" = 0 ] || [ "$(nproc)" -ge 2 ] || die "--pin needs 2 cores, this machine has $(nproc)"

# ---- binaries --------------------------------------------------------------------------------------
if [ -n "${TUNVPN_BIN:-}" ]; then
    bin=$(cd "$TUNVPN_BIN" && pwd)
else
    scratch=${SCRATCH_PATH:-.build}
    config=${CONFIG:-release}
    note "building (swift build -c $config --scratch-path $scratch --product tunvpn)"
    (cd "$repo" && timeout 1800 swift build -c "$config" --scratch-path "$scratch" --product tunvpn >&2) || die "swift build failed"
    bin=$(cd "$repo" && swift build -c "$config" --scratch-path "$scratch" --show-bin-path)
fi
tunvpn=$bin/tunvpn
[ -x "$tunvpn" ] || die "$bin must hold tunvpn"

# ---- state and cleanup -----------------------------------------------------------------------------
# shellcheck source=lib/topology.sh
. "$here/lib/topology.sh" # pids, namespaces, topo_*, stop_pid, wait_for, run_wait, in_ns
tag="tvpeers$$"
work=$(mktemp -d "/tmp/$tag.XXXXXX")
clk_tck=$(getconf CLK_TCK)
topo_traps

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime, in clock ticks
pin_server=(); pin_client=()
if [ "$PIN" = 1 ]; then pin_server=(taskset -c 0); pin_client=(taskset -c 1); fi

# ---- keys and allow-lists --------------------------------------------------------------------------
keys="$work/keys"
"$tunvpn" keygen --out "$keys" --name server >/dev/null
"$tunvpn" keygen --out "$keys" --name client >/dev/null
client_pub=$(cat "$keys/client.pub")
echo "$client_pub 10.8.0.2 # active" >"$work/allow-1"
# N-1 idle peers: random 32-byte keys nobody holds, fixed addresses from 10.8.1.0 up.
python3 - "$PEERS" "$client_pub" >"$work/allow-N" <<'PY'
import base64, os, sys
n, active = int(sys.argv[1]), sys.argv[2]
print(f"{active} 10.8.0.2 # active")
for i in range(n - 1):
    a = 256 + i
    print(f"{base64.b64encode(os.urandom(32)).decode()} 10.8.{a >> 8}.{a & 255} # idle{i}")
PY

# ---- two setups, side by side ----------------------------------------------------------------------
declare -A server_pid client_pid ns_s ns_c
setup() { # setup LABEL SUBNET ALLOWLIST
    local label=$1 net=$2 list=$3 s="$tag-s$2" c="$tag-c$2"
    ns_s[$label]=$s; ns_c[$label]=$c
    topo_namespaces "$s" "$c"
    topo_link "$c" c0 "10.70.$net.2/24" "$s" s0 "10.70.$net.1/24"
    ip netns exec "$s" "${pin_server[@]}" "$tunvpn" server --key "$keys/server.key" --clients "$list" --no-nat \
        --listen 0.0.0.0:51820 --address 10.8.0.1/16 --dev tvs0 >"$work/server-$net.log" 2>&1 &
    server_pid[$label]=$!
    pids+=("$!")
    wait_for 60 "tunvpn server ($label) to listen" grep -q "server listening" "$work/server-$net.log" \
        || { tail -5 "$work/server-$net.log" >&2; die "tunvpn server ($label) did not start"; }
    ip netns exec "$c" "${pin_client[@]}" "$tunvpn" client --key "$keys/client.key" --peer-key "$keys/server.pub" \
        --endpoint "10.70.$net.1:51820" --dev tvc0 --no-routes >"$work/client-$net.log" 2>&1 &
    client_pid[$label]=$!
    pids+=("$!")
    wait_for 20 "the client's 'tunnel up' ($label)" grep -q "tunnel up" "$work/client-$net.log" \
        || { tail -5 "$work/client-$net.log" >&2; die "the tunnel client ($label) never came up"; }
    wait_for 10 "a ping through the tunnel ($label)" ip netns exec "$c" ping -c 1 -W 1 10.8.0.1 \
        || die "no ping through the tunnel ($label)"
    ip netns exec "$s" iperf3 -s -B 10.8.0.1 -p 5201 >"$work/iperf3-server-$net.log" 2>&1 &
    pids+=("$!")
    wait_for 5 "iperf3 -s ($label)" bash -c "ip netns exec '$s' ss -Hltn 'sport = :5201' | grep -q ." \
        || die "iperf3 -s ($label) did not start"
}
setup 1 1 "$work/allow-1"
setup N 2 "$work/allow-N"
note "1 peer and $PEERS peers configured; server PIDs ${server_pid[1]} and ${server_pid[N]}$([ "$PIN" = 1 ] && echo ", servers on CPU 0, clients on CPU 1" || true)"

# With no traffic, what each server spends per second on its own (timers, `tick`): the part of the cost
# that grows with configured peers however little they send.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
idle_seconds=10
i1=$(cpu_ticks "${server_pid[1]}"); iN=$(cpu_ticks "${server_pid[N]}")
sleep "$idle_seconds"
i1=$(( $(cpu_ticks "${server_pid[1]}") - i1 )); iN=$(( $(cpu_ticks "${server_pid[N]}") - iN ))

# round LABEL R: one iperf3 run; appends "LABEL bytes server_ticks client_ticks bits_per_second" to results
round() {
    local label=$1 r=$2 s0 c0 s1 c1 json="$work/iperf3-$1-$2.json"
    s0=$(cpu_ticks "${server_pid[$label]}"); c0=$(cpu_ticks "${client_pid[$label]}")
    run_wait "$json" "$work/iperf3-$label-$r.err" $((DURATION + 30)) \
        ip netns exec "${ns_c[$label]}" iperf3 -c 10.8.0.1 -p 5201 -t "$DURATION" -J \
        || die "$label: iperf3 failed (round $r): $(tail -3 "$work/iperf3-$label-$r.err")"
    s1=$(cpu_ticks "${server_pid[$label]}"); c1=$(cpu_ticks "${client_pid[$label]}")
    python3 - "$label" "$json" $((s1 - s0)) $((c1 - c0)) >>"$work/results" <<'PY'
import json, sys
label, path, s, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
end = json.load(open(path))["end"]["sum_received"]
print(label, end["bytes"], s, c, end["bits_per_second"])
PY
    note "round $r, $label: $(tail -1 "$work/results") (label bytes server-ticks client-ticks bit/s)"
}
for r in $(seq "$ROUNDS"); do
    round 1 "$r"
    round N "$r"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo "machine:  $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r)"
echo "load:     load average $load_start at the start, $load_end at the end"
echo "tunvpn:   $tunvpn (built $(date -u -r "$tunvpn" '+%Y-%m-%d %H:%M UTC'); checkout at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown))"
echo "setup:    iperf3 TCP one stream, client → server, $ROUNDS interleaved rounds of $DURATION s$([ "$PIN" = 1 ] && echo "; server tunvpn on CPU 0, client tunvpn on CPU 1, iperf3 unpinned" || true)"
python3 - "$work/results" "$PEERS" "$clk_tck" "$i1" "$iN" "$idle_seconds" <<'PY'
import statistics, sys
path, peers, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
idle1, idleN, idle_s = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rows = {"1": [], "N": []}
for line in open(path):
    label, b, s, c, bps = line.split()
    gb = int(b) / 1e9
    rows[label].append((int(s) / tck / gb, int(c) / tck / gb, float(bps) / 1e9))
med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in rows.items()}
print(f"{'':24}{'1 peer':>10}{f'{peers} peers':>14}{'ratio':>8}")
for i, name in enumerate(["server CPU-s/GB", "client CPU-s/GB", "iperf3 Gbit/s"]):
    a, b = med["1"][i], med["N"][i]
    print(f"{name:24}{a:10.2f}{b:14.2f}{b / a:8.3f}")
print(f"{'server idle CPU ms/s':24}{idle1 * 1000 / tck / idle_s:10.1f}{idleN * 1000 / tck / idle_s:14.1f}   (no traffic, {idle_s} s)")
print("rounds, server CPU-s/GB: 1 peer " + " ".join(f"{r[0]:.2f}" for r in rows["1"])
      + f"; {peers} peers " + " ".join(f"{r[0]:.2f}" for r in rows["N"]))
PY
