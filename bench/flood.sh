#!/usr/bin/env bash
# bench/flood.sh: how much of its TCP throughput an established tunvpn client keeps while the server is
# flooded with forged initiations (docs/PROTOCOL.md, "Denial of service"). Run as root; see bench/README.md.
#
#   C (client)                          S (tunvpn server)                     F (flood)
#   c0 10.100.0.2/24 ───── veth ─────── s0 10.100.0.1/24
#                                       s3 10.150.0.1/24 ───── veth ───────── f0 10.150.0.2/24
#   tvf0 10.8.0.2/16 ⇄ tunnel ⇄         tvf0 10.8.0.1/16                        + 10.150.0.10–209 (sources)
#
# The scenario of the flood end-to-end test (FaultEndToEndTests): one 22 s iperf3 TCP run from C to the
# server's tunnel address; from 5 s to 16 s, `tunvpn-loadgen --flood` sends 10,500 datagrams a second
# from 200 source addresses (half well-formed initiations from random keys with a valid mac1, half
# garbage of initiation size). "Unflooded" is the mean of iperf3's one-second intervals within 0.5–4.5 s
# and 16.5–22.5 s, "flooded" within 5.5–15.5 s, so a change in the machine's other load during a run
# weighs on both. Each round builds fresh namespaces for each binary under test, in turn (A B A B …),
# and the report gives the medians across rounds.
#
# With --kind handshakes the flood is real handshakes instead (`tunvpn-loadgen --clients … --window 64`
# against a server with --allow-any-client, as many as it answers in the 11 s): senders that answer cookie
# replies, so each initiation costs the server its Diffie-Hellman work, which forged ones from an address
# that never reads its replies do not once the server is under load.
#
# With --probe ping, C pings the server's tunnel address every 10 ms for the 22 s instead of running
# iperf3, and the report gives round-trip times (median and 99th percentile) unflooded and flooded: the
# data path's latency, which a stall of the server's threads shows at once.
#
# Nothing is changed in the root network namespace; every process started here is stopped by PID and the
# namespaces (named after this script's PID) are deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() {
    cat <<EOF
Usage: sudo bench/flood.sh [--rounds N] [--kind forged|handshakes] [--rate R] [--tunvpn LABEL=PATH]... [--loadgen PATH]

Prints, per round and as medians over the rounds: iperf3 TCP throughput through an established client's
tunnel without the flood, with it, and their ratio. Each round takes about 35 s per binary; the default
(5 rounds, one binary) about 3 minutes.

  --tunvpn LABEL=PATH  a tunvpn binary to measure, under a name for the report; repeat it to compare
                       binaries (their rounds interleave). Default: this checkout's, built with
                       swift build -c release.
  --loadgen PATH       the tunvpn-loadgen that sends the flood. Default: this checkout's.
  --rounds N           rounds (default 5).
  --kind KIND          forged (default): the test's flood of forged initiations; handshakes: real
                       handshakes from new keys, as fast as the server answers them.
  --rate R             forged datagrams per second (default 10500, as in the test).
  --probe PROBE        iperf (default): TCP throughput; ping: round-trip times every 10 ms.

Environment: SCRATCH_PATH (SwiftPM scratch path when building, default .build).
EOF
}

die() { echo "flood.sh: error: $*" >&2; exit 1; }
note() { echo "flood.sh: $*" >&2; }

ROUNDS=5
RATE=10500
SECONDS_TOTAL=22
FLOOD_AT=5
FLOOD_SECONDS=11
KIND=forged
PROBE=iperf
variants=()
loadgen=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; ROUNDS=$2; shift ;;
        --rate) [ $# -ge 2 ] || die "--rate needs a number"; RATE=$2; shift ;;
        --kind) [ $# -ge 2 ] || die "--kind needs forged or handshakes"; KIND=$2; shift ;;
        --probe) [ $# -ge 2 ] || die "--probe needs iperf or ping"; PROBE=$2; shift ;;
        --tunvpn) [ $# -ge 2 ] || die "--tunvpn needs LABEL=PATH"; variants+=("$2"); shift ;;
        --loadgen) [ $# -ge 2 ] || die "--loadgen needs a path"; loadgen=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done
unit=datagrams; [ "$KIND" = handshakes ] && unit=handshakes
[ "$PROBE" = iperf ] || [ "$PROBE" = ping ] || die "--probe must be iperf or ping, not '$PROBE'"
[ "$KIND" = forged ] || [ "$KIND" = handshakes ] || die "--kind must be forged or handshakes, not '$KIND'"
for v in ROUNDS RATE; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, not '${!v}'"
done

[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces): sudo bench/flood.sh"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"
for tool in ip iperf3 ping python3 timeout; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH (apt-get install iperf3 iproute2 iputils-ping python3)"
done

# ---- binaries --------------------------------------------------------------------------------------
if [ ${#variants[@]} -eq 0 ] || [ -z "$loadgen" ]; then
    scratch=${SCRATCH_PATH:-.build}
    note "building (swift build -c release --scratch-path $scratch)"
    (cd "$repo" && timeout 1800 swift build -c release --scratch-path "$scratch" >&2) || die "swift build failed"
    bin=$(cd "$repo" && swift build -c release --scratch-path "$scratch" --show-bin-path)
    [ ${#variants[@]} -gt 0 ] || variants=("this checkout=$bin/tunvpn")
    [ -n "$loadgen" ] || loadgen=$bin/tunvpn-loadgen
fi
labels=() binaries=()
for v in "${variants[@]}"; do
    [[ "$v" == *=* ]] || die "--tunvpn '$v' must be LABEL=PATH"
    label=${v%%=*} path=${v#*=}
    [ -x "$path" ] || die "--tunvpn $label: '$path' is not an executable file"
    labels+=("$label")
    binaries+=("$(cd "$(dirname "$path")" && pwd)/$(basename "$path")")
done
[ -x "$loadgen" ] || die "--loadgen: '$loadgen' is not an executable file"

# ---- state and cleanup -----------------------------------------------------------------------------
# shellcheck source=lib/topology.sh
. "$here/lib/topology.sh" # pids, namespaces, topo_*, stop_pid, wait_for, run_wait, in_ns
tag="tvflood$$"
NS_C="$tag-c"; NS_S="$tag-s"; NS_F="$tag-f"
work=$(mktemp -d "/tmp/$tag.XXXXXX")
results="$work/results.tsv"; : >"$results"

topo_traps

# ---- one measurement -------------------------------------------------------------------------------
make_topology() {
    topo_namespaces "$NS_C" "$NS_S" "$NS_F"
    topo_link "$NS_C" c0 10.100.0.2/24 "$NS_S" s0 10.100.0.1/24
    topo_link "$NS_F" f0 10.150.0.2/24 "$NS_S" s3 10.150.0.1/24
    topo_addresses "$NS_F" f0 "$work/sources.batch" $(seq -f '10.150.0.%g/24' 10 209)
}

# measure LABEL TUNVPN ROUND: one 22 s iperf3 run with the flood from 5 s to 16 s; appends
# "LABEL ROUND unflooded flooded ratio sent_rate" to the results.
measure() {
    local label=$1 tunvpn=$2 round=$3 keys="$work/keys" server client iperf_s iperf_c flood t0 out
    make_topology
    rm -rf "$keys"
    "$tunvpn" keygen --out "$keys" --name server >/dev/null
    "$tunvpn" keygen --out "$keys" --name client >/dev/null
    cp "$keys/client.pub" "$keys/clients"
    local admit=()
    [ "$KIND" = handshakes ] && admit=(--allow-any-client)
    ip netns exec "$NS_S" "$tunvpn" server --key "$keys/server.key" --clients "$keys/clients" "${admit[@]}" \
        --listen 0.0.0.0:51820 --address 10.8.0.1/16 --dev tvf0 --no-nat --log-level info >"$work/server.log" 2>&1 &
    server=$!
    pids+=("$server")
    wait_for 10 "tunvpn server to listen" grep -q "server listening" "$work/server.log" || die "tunvpn server did not start"
    ip netns exec "$NS_C" "$tunvpn" client --key "$keys/client.key" --peer-key "$keys/server.pub" \
        --endpoint 10.100.0.1:51820 --dev tvf0 --no-routes --log-level info >"$work/client.log" 2>&1 &
    client=$!
    pids+=("$client")
    wait_for 15 "the client's 'tunnel up'" grep -q "tunnel up" "$work/client.log" || die "the tunnel client never came up"
    wait_for 10 "a ping through the tunnel" ip netns exec "$NS_C" ping -c 1 -W 1 10.8.0.1 || die "no ping through the tunnel"
    wait_for 5 "a ping from F" ip netns exec "$NS_F" ping -c 1 -W 1 10.150.0.1 || die "no ping from F to S"

    if [ "$PROBE" = iperf ]; then
        ip netns exec "$NS_S" iperf3 -s -1 -B 10.8.0.1 -p 5201 >"$work/iperf3-server.log" 2>&1 &
        iperf_s=$!
        pids+=("$iperf_s")
        wait_for 5 "iperf3 -s in S" bash -c "ip netns exec '$NS_S' ss -Hltn 'sport = :5201' | grep -q ." || die "iperf3 -s did not start"
        t0=$(date +%s.%N)
        ip netns exec "$NS_C" iperf3 -c 10.8.0.1 -p 5201 -t "$SECONDS_TOTAL" -J >"$work/iperf3.json" 2>"$work/iperf3.err" &
    else
        t0=$(date +%s.%N)
        ip netns exec "$NS_C" ping -n -D -i 0.01 -W 1 -w "$SECONDS_TOTAL" 10.8.0.1 >"$work/ping.txt" 2>"$work/iperf3.err" &
    fi
    iperf_c=$!
    pids+=("$iperf_c")
    sleep "$(python3 -c "import time; print(max(0, $t0 + $FLOOD_AT - time.time()))")"
    local what=(--flood "$RATE" --flood-seconds "$FLOOD_SECONDS" --flood-file "$work/flood.bin")
    # Real handshakes: more clients than the server can answer in the time, which then runs out.
    [ "$KIND" = handshakes ] && what=(--clients 60000 --window 64 --timeout "$FLOOD_SECONDS")
    ip netns exec "$NS_F" "$loadgen" --peer-key "$keys/server.pub" --endpoint 10.150.0.1:51820 \
        --sources "$(seq -s, -f '10.150.0.%g' 10 209)" "${what[@]}" >"$work/flood.out" 2>"$work/flood.err" &
    flood=$!
    pids+=("$flood")
    # The handshake generator exits 1 when clients were left unfinished, as they are by design here.
    wait "$flood" || [ "$KIND" = handshakes ] || die "the flood sender failed: $(tail -3 "$work/flood.err")"
    grep -q '^{\|^loadgen:' "$work/flood.out" || die "the flood sender printed no report: $(tail -3 "$work/flood.err")"
    # ping exits 1 when a reply is lost; lost replies are counted below.
    wait "$iperf_c" || [ "$PROBE" = ping ] || die "iperf3 -c failed: $(tail -3 "$work/iperf3.err")"
    kill -0 "$server" 2>/dev/null || die "the tunvpn server died during the flood"
    out=$(python3 - "$work/iperf3.json" "$work/flood.out" "$work/ping.txt" "$t0" <<'EOF'
import json, re, statistics, sys
lines = open(sys.argv[2]).read().splitlines()
forged = [l for l in lines if l.startswith("{")]
if forged:
    flood = json.loads(forged[-1])
    flood_rate = flood["sent"] / flood["seconds"]
else:  # loadgen: … completed=N … elapsed=Ts …
    fields = dict(f.split("=", 1) for f in [l for l in lines if l.startswith("loadgen:")][-1].split()[1:])
    flood_rate = int(fields["completed"]) / float(fields["elapsed"].rstrip("s"))
quiet_windows, flooded_windows = [(0.5, 4.5), (16.5, 22.5)], [(5.5, 15.5)]
try:
    report = json.load(open(sys.argv[1]))
except FileNotFoundError:  # --probe ping: [epoch] … icmp_seq=N … time=X ms, relative to t0
    t0 = float(sys.argv[4])
    replies = [(float(m.group(1)) - t0, int(m.group(2)), float(m.group(3))) for m in
               re.finditer(r"\[([0-9.]+)\].*icmp_seq=(\d+).*time=([0-9.]+) ms", open(sys.argv[3]).read())]
    def times(windows):
        return sorted(rtt for at, _, rtt in replies if any(lo <= at <= hi for lo, hi in windows))
    def p99(x): return x[min(len(x) - 1, int(0.99 * len(x)))]
    q, f = times(quiet_windows), times(flooded_windows)
    sent = max(seq for _, seq, _ in replies)
    print(f"{p99(q):.3f} {p99(f):.3f} {p99(f) / p99(q):.3f} {flood_rate:.0f} {statistics.median(q):.3f} {statistics.median(f):.3f} {sent - len(replies)}")
    sys.exit(0)
def mean(windows):
    rates = [i["sum"]["bits_per_second"] / 1e6 for i in report["intervals"]
             if any(lo <= i["sum"]["start"] and i["sum"]["end"] <= hi for lo, hi in windows)]
    return sum(rates) / len(rates)
quiet = mean(quiet_windows)
flooded = mean(flooded_windows)
print(f"{quiet:.1f} {flooded:.1f} {flooded / quiet:.3f} {flood_rate:.0f}")
EOF
    ) || die "could not read iperf3's report"
    printf '%s\t%s\t%s\n' "$label" "$round" "${out// /	}" >>"$results"
    read -r q f r s qm fm lost <<<"$out"
    if [ "$PROBE" = iperf ]; then
        note "round $round, $label: $q Mbit/s unflooded, $f flooded, ratio $r (flood: $s $unit/s); load $(cut -d' ' -f1-3 /proc/loadavg)"
    else
        note "round $round, $label: ping p99 $q ms unflooded, $f flooded (medians $qm, $fm), $lost lost (flood: $s $unit/s); load $(cut -d' ' -f1-3 /proc/loadavg)"
    fi
    topo_teardown
}

# ---- rounds ----------------------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    for i in "${!labels[@]}"; do measure "${labels[$i]}" "${binaries[$i]}" "$round"; done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r)"
echo "load average: $load_before at the start, $load_after at the end"
probe="a ${SECONDS_TOTAL} s iperf3 TCP run"
[ "$PROBE" = ping ] && probe="${SECONDS_TOTAL} s of pings every 10 ms"
if [ "$KIND" = forged ]; then
    echo "flood: $RATE forged initiations/s for $FLOOD_SECONDS s from 200 sources, within $probe"
else
    echo "flood: real handshakes (window 64) for $FLOOD_SECONDS s from 200 sources, within $probe"
fi
for i in "${!labels[@]}"; do echo "${labels[$i]}: ${binaries[$i]}"; done
python3 - "$results" "$PROBE" "${labels[@]}" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print()
if sys.argv[2] == "ping":
    print("| tunvpn | rounds | RTT median unflooded ms | RTT median flooded ms | RTT p99 unflooded ms | RTT p99 flooded ms | lost | flood per s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label in sys.argv[3:]:
        mine = [r for r in rows if r[0] == label]
        m = lambda i: statistics.median(float(r[i]) for r in mine)
        print(f"| {label} | {len(mine)} | {m(6):.2f} | {m(7):.2f} | {m(2):.2f} | {m(3):.2f} | {m(8):.0f} | {m(5):.0f} |")
    print()
    print("Medians over the rounds of each round's median and 99th-percentile round trip (pings every 10 ms).")
    sys.exit(0)
print("| tunvpn | rounds | unflooded Mbit/s | flooded Mbit/s | ratio | flood per s | per round (flooded / unflooded) |")
print("|---|---:|---:|---:|---:|---:|---|")
for label in sys.argv[3:]:
    mine = [r for r in rows if r[0] == label]
    q = statistics.median(float(r[2]) for r in mine)
    f = statistics.median(float(r[3]) for r in mine)
    ratio = statistics.median(float(r[4]) for r in mine)
    rate = statistics.median(float(r[5]) for r in mine)
    rounds = ", ".join(f"{float(r[3]):.0f}/{float(r[2]):.0f}" for r in mine)
    print(f"| {label} | {len(mine)} | {q:.0f} | {f:.0f} | {ratio:.2f} | {rate:.0f} | {rounds} |")
print()
print("Medians over the rounds; the ratio column is the median of the per-round ratios.")
EOF
