#!/usr/bin/env bash
# bench/run.sh: tunvpn, wireguard-go (bookworm-backports' modern build and the system's old one) and a bare
# veth path measured side by side, interleaved in one run.
# Run as root; see bench/README.md.
#
#   C (client)                        S (server, ip_forward=1)                 H (host behind S)
#   c0 10.101.0.2/24 ───── veth ───── s0 10.101.0.1/24
#                                     s1 10.201.0.1/24 ───── veth ───── h0 10.201.0.2/24
#   tunvpn:        C tvb0 10.8.0.x   ⇄ S tvb0 10.8.0.1/16     H: 10.8.0.0/16 via 10.201.0.1
#   wireguard-go:  C wgc$$ 10.9.0.2  ⇄ S wgs$$ 10.9.0.1/24    H: 10.9.0.0/24 via 10.201.0.1
#                  (the modern build: wmc$$ and wms$$, same addresses)
#   veth:          C: 10.201.0.0/24 via 10.101.0.1            H: 10.101.0.0/24 via 10.201.0.1
#
# Rounds run A B C A B C …; each variant gets freshly made namespaces and is torn down completely before
# the next starts. Nothing is changed in the root network namespace: every link, address, route and sysctl
# is made inside the namespaces this script creates (names carry its PID), and every process it starts is
# killed by PID and every namespace deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
command_line="bench/run.sh${*:+ $*}"

usage() {
    cat <<EOF
Usage: sudo bench/run.sh [--quick] [--rounds N] [--duration SECONDS] [--results FILE | --no-results]

Measures tunvpn, two wireguard-go builds (bookworm-backports' and the system's) and bare veth in network
namespaces, interleaved, and prints a Markdown table of medians and ratios. The default run (3 rounds, 10 s tests) takes about 10 minutes and replaces
its section of bench/RESULTS.md; --quick (1 round, 3 s tests, short sweep) only prints.

Environment: TUNVPN=path (use this binary instead of building), ROUNDS, DURATION, SWEEP_DURATION,
SWEEP_RATES ("100M 200M …"), SWEEP_REFINE (bisection steps after the first failing rate), PINGS, SCRATCH_PATH (SwiftPM scratch path, default .build-static),
TUNVPN_ARGS (more options for both tunvpn ends, e.g. "--crypto-provider libsodium"),
WG_MODERN=path (the modern wireguard-go to use instead of fetching bookworm-backports' into
WG_MODERN_CACHE, default /var/cache/tunvpn-bench), WG_MODERN_SUITE (default bookworm-backports).
A/B: TUNVPN_B=path runs a second tunvpn binary as variant "tunvpnb" beside the first in every round
(A B in odd rounds, B A in even ones) and prints a B/A table; VARIANTS="tunvpn tunvpnb" (a subset of
tunvpn tunvpnb wgnew wggo veth) runs only those; UDP=0 leaves the UDP tests out. Either one only prints
unless --results is given.
EOF
}

die() { echo "run.sh: error: $*" >&2; exit 1; }
note() { echo "run.sh: $*" >&2; }

# ---- options ---------------------------------------------------------------------------------------
quick=0
results="$repo/bench/RESULTS.md"
results_set=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; ROUNDS=$2; shift ;;
        --duration) [ $# -ge 2 ] || die "--duration needs seconds"; DURATION=$2; shift ;;
        --results) [ $# -ge 2 ] || die "--results needs a file"; results=$2; results_set=1; shift ;;
        --no-results) results=""; results_set=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-3}
    SWEEP_DURATION=${SWEEP_DURATION:-1}
    SWEEP_RATES=${SWEEP_RATES:-"200M 800M 1.6G 3.2G"}
    SWEEP_REFINE=${SWEEP_REFINE:-1}
    PINGS=${PINGS:-100}
    [ "$results_set" = 1 ] || results=""
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SWEEP_DURATION=${SWEEP_DURATION:-2}
SWEEP_RATES=${SWEEP_RATES:-"100M 200M 400M 800M 1.2G 1.6G 2.4G 3.2G 4.8G 6.4G"}
SWEEP_REFINE=${SWEEP_REFINE:-3}
PINGS=${PINGS:-200}
TUNVPN_ARGS=${TUNVPN_ARGS:-}
[[ "$TUNVPN_ARGS" =~ ^[-a-z0-9\ =]*$ ]] || die "TUNVPN_ARGS takes plain options only, like '--crypto-provider libsodium'"
MTU=1420
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS/--rounds must be a positive integer, not '$ROUNDS'"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION/--duration must be a positive number of seconds, not '$DURATION'"
[[ "$SWEEP_DURATION" =~ ^[1-9][0-9]*$ ]] || die "SWEEP_DURATION must be a positive number of seconds"
[[ "$SWEEP_REFINE" =~ ^[0-9]+$ ]] || die "SWEEP_REFINE must be a number of bisection steps (0 for none)"
for r in $SWEEP_RATES; do [[ "$r" =~ ^[0-9]+(\.[0-9]+)?[KMG]$ ]] || die "SWEEP_RATES: '$r' is not a rate like 800M or 1.2G"; done
[[ "$PINGS" =~ ^[1-9][0-9]*$ ]] || die "PINGS must be a positive integer"
if [ -n "${TUNVPN_B:-}" ]; then
    [ -x "$TUNVPN_B" ] || die "TUNVPN_B=$TUNVPN_B is not an executable file (the B binary of an A/B run)"
    tunvpn_b=$(cd "$(dirname "$TUNVPN_B")" && pwd)/$(basename "$TUNVPN_B")
fi
VARIANTS=${VARIANTS:-"tunvpn${TUNVPN_B:+ tunvpnb} wgnew wggo veth"}
for v in $VARIANTS; do
    case "$v" in tunvpn | wgnew | wggo | veth) ;; tunvpnb) [ -n "${TUNVPN_B:-}" ] || die "VARIANTS names tunvpnb but TUNVPN_B is not set" ;;
        *) die "VARIANTS: unknown variant '$v' (known: tunvpn tunvpnb wgnew wggo veth)" ;; esac
done
UDP=${UDP:-1}
[[ "$UDP" =~ ^[01]$ ]] || die "UDP must be 1 (run the UDP tests) or 0 (leave them out), not '$UDP'"
# A partial or A/B run would replace the full run's section of RESULTS.md: print only, unless asked.
if [ -n "${TUNVPN_B:-}" ] || [ "$VARIANTS" != "tunvpn wgnew wggo veth" ] || [ "$UDP" = 0 ]; then [ "$results_set" = 1 ] || results=""; fi

# ---- prerequisites ---------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces): sudo $command_line"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"
missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v wireguard-go >/dev/null || missing+=(wireguard-go)
command -v wg >/dev/null || missing+=(wireguard-tools)
command -v ping >/dev/null || missing+=(iputils-ping)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    note "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
        || die "apt-get could not install ${missing[*]}"
fi
for tool in ip iperf3 wireguard-go wg ping python3 timeout getconf awk; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH"
done
python3 -c 'import json, statistics' || die "python3 cannot import json/statistics"

# ---- the modern wireguard-go (bookworm-backports), beside the system's -------------------------------
# shellcheck source=lib/wireguard-go.sh
. "$here/lib/wireguard-go.sh" # fetch_modern_wireguard_go, find_modern_wireguard_go, wireguard_go_start
wg_modern="" wg_modern_package=""
[[ " $VARIANTS " != *" wgnew "* ]] || find_modern_wireguard_go  # not run: nothing to fetch
# The binary's own version string can lag behind the release (0.0.20231211 reports v0.0.20230223), so
# the report names the Debian package too.
wg_modern_version="${wg_modern:+$("$wg_modern" --version 2>&1 | head -1)${wg_modern_package:+ ($wg_modern_package)}}"
wg_old_version="$(wireguard-go --version 2>&1 | head -1) (Debian package $(dpkg-query -W -f '${Version}' wireguard-go 2>/dev/null || echo unknown))"
note "wireguard-go: $wg_old_version (the system's, $(command -v wireguard-go)) and $wg_modern_version ($wg_modern)"
[ "$wg_modern_version" != "$wg_old_version" ] \
    || note "warning: both wireguard-go binaries report the same version ($wg_old_version)"

# ---- tunvpn binary ---------------------------------------------------------------------------------
# shellcheck source=lib/tunvpn-binary.sh
. "$here/lib/tunvpn-binary.sh"
find_tunvpn

# ---- state and cleanup -----------------------------------------------------------------------------
# shellcheck source=lib/topology.sh
. "$here/lib/topology.sh" # pids (every process this script started and has not reaped), namespaces,
                          # topo_*, stop_pid, wait_for
tag="tvbench$$"
NS_C="$tag-c"; NS_S="$tag-s"; NS_H="$tag-h"
WG_C="wgc$$"; WG_S="wgs$$"        # wireguard-go's UAPI sockets live in /var/run/wireguard, shared by all
                                  # namespaces, so the two ends (and concurrent runs) need distinct names
WGM_C="wmc$$"; WGM_S="wms$$"      # the same for the modern wireguard-go
work=$(mktemp -d "/tmp/$tag.XXXXXX")
raw="$work/raw.tsv"; : >"$raw"
failures=()
clk_tck=$(getconf CLK_TCK)
started_at=$(date +%s)

topo_files=("/var/run/wireguard/$WG_C.sock" "/var/run/wireguard/$WG_S.sock" # topo_teardown removes them
    "/var/run/wireguard/$WGM_C.sock" "/var/run/wireguard/$WGM_S.sock")
topo_traps


# ---- topology, ends and TCP measurements ----------------------------------------------------------
# shellcheck source=lib/pairs.sh
. "$here/lib/pairs.sh" # make_topology, start_iperf_server, bench_keys, tunvpn_server, tunvpn_client,
                       # wireguard_go_pair, record, cpu_ticks, check_vpn_alive, iperf, tcp_test, record_cpu_per_gb

# ---- variants: set up (sets vpn_client, vpn_server) ------------------------------------------------
setup_tunvpn() {
    bench_keys
    # shellcheck disable=SC2086 # TUNVPN_ARGS is a list of plain options, checked above
    tunvpn_server "$(cat "$work/keys/client.pub")" $TUNVPN_ARGS
    # shellcheck disable=SC2086
    tunvpn_client 10.101.0.1:51820 $TUNVPN_ARGS
    ip -n "$NS_H" route add 10.8.0.0/16 via 10.201.0.1
    [ "$round" != 1 ] || note "  $(grep -o 'crypto provider: [a-z]*' "$work/tunvpn-server.log" | head -1) (server)"
}

# The B binary of an A/B run: the same ends, started from $tunvpn_b (bash's dynamic scope).
setup_tunvpnb() {
    local tunvpn=$tunvpn_b
    setup_tunvpn
}

setup_wggo() { wireguard_go_pair wireguard-go "$WG_S" "$WG_C"; }
setup_wgnew() { wireguard_go_pair "$wg_modern" "$WGM_S" "$WGM_C"; }

setup_veth() {
    ip -n "$NS_C" route add 10.201.0.0/24 via 10.101.0.1
    ip -n "$NS_H" route add 10.101.0.0/24 via 10.201.0.1
    vpn_client="" vpn_server=""
}

# ---- measurements beyond TCP ---------------------------------------------------------------------
udp_full_rate() {
    local out bps pps loss
    if ! iperf udp_full -u -b 0 -l 1392 -w 4M -t "$DURATION" || ! out=$(python3 "$here/report.py" udp "$work/udp_full.json"); then
        failures+=("round $round $variant: iperf3 UDP -b 0 failed")
        note "  udp -b 0: FAILED"
        return 0
    fi
    read -r bps pps loss <<<"$out"
    record udp_pps "$pps"
    record udp_loss "$loss"
    note "  udp -b 0: $pps packets/s delivered, $loss% lost"
}

# udp_step RATE: one fixed-rate UDP run; sets step_bps and step_loss, or returns 1 (recorded as a failure).
# Not called in a command substitution: a subshell would lose the failure and the PID bookkeeping.
udp_step() {
    local rate=$1 out pps
    if ! iperf "udp_$rate" -u -b "$rate" -l 1392 -w 4M -t "$SWEEP_DURATION" \
        || ! out=$(python3 "$here/report.py" udp "$work/udp_$rate.json"); then
        failures+=("round $round $variant: iperf3 UDP at $rate failed")
        return 1
    fi
    read -r step_bps pps step_loss <<<"$out"
}

mbit() { # mbit RATE (100M, 1.2G, …) → Mbit/s
    awk -v r="$1" 'BEGIN{u = substr(r, length(r)); n = substr(r, 1, length(r) - 1) + 0
        print n * (u == "G" ? 1000 : u == "M" ? 1 : u == "K" ? 0.001 : 0.000001)}'
}

# Highest delivered rate among steps with <1% loss. The coarse steps (SWEEP_RATES) stop at the first with
# ≥1% loss, or when the single-threaded iperf3 sender can no longer reach the rate; then SWEEP_REFINE
# bisection steps between the last rate that passed and the first that failed narrow the answer.
udp_sweep() {
    local best=0 rate lo=0 hi=0 i mid
    for rate in $SWEEP_RATES; do
        udp_step "$rate" || break
        if awk -v l="$step_loss" 'BEGIN{exit !(l >= 1)}'; then hi=$(mbit "$rate"); break; fi
        lo=$(mbit "$rate")
        best=$(awk -v b="$step_bps" -v best="$best" 'BEGIN{m = b/1e6; print (m > best ? m : best)}')
        # The sender itself cannot reach the rate: faster steps would say nothing new.
        awk -v b="$step_bps" -v r="$lo" 'BEGIN{exit !(b < 0.9 * r * 1e6)}' && break
    done
    if awk -v lo="$lo" -v hi="$hi" 'BEGIN{exit !(lo > 0 && hi > lo)}'; then
        for i in $(seq "$SWEEP_REFINE"); do
            mid=$(awk -v lo="$lo" -v hi="$hi" 'BEGIN{printf "%d", int((lo + hi) / 20 + 0.5) * 10}')
            awk -v m="$mid" -v lo="$lo" -v hi="$hi" 'BEGIN{exit !(m > lo && m < hi)}' || break
            udp_step "${mid}M" || break
            if awk -v l="$step_loss" 'BEGIN{exit !(l >= 1)}'; then
                hi=$mid
            else
                lo=$mid
                best=$(awk -v b="$step_bps" -v best="$best" 'BEGIN{m = b/1e6; print (m > best ? m : best)}')
            fi
        done
    fi
    record udp_sweep "$best"
    if [ "$hi" = 0 ]; then hi="none"; else hi="$hi Mbit/s"; fi
    note "  udp sweep: $best Mbit/s with <1% loss (lowest rate tried with ≥1% loss: $hi)"
}

ping_test() {
    local out med p99 n
    # ping exits 1 when any reply is lost; the parser decides whether enough came back.
    run_wait "$work/ping.txt" "$work/ping.err" $((PINGS / 50 + 20)) \
        ip netns exec "$NS_C" ping -n -c "$PINGS" -i 0.01 -W 1 10.201.0.2 || true
    out=$(python3 "$here/report.py" ping "$work/ping.txt") \
        || { failures+=("round $round $variant: ping failed"); note "  ping: FAILED"; return 0; }
    read -r med p99 n <<<"$out"
    record rtt_med "$med"
    record rtt_p99 "$p99"
    [ "$n" = "$PINGS" ] || failures+=("round $round $variant: $((PINGS - n)) of $PINGS pings lost")
    note "  ping: median $med ms, p99 $p99 ms ($n/$PINGS replies)"
}

peak_rss() { # peak_rss PID → MB
    awk '/^VmHWM:/ {printf "%.2f", $2 / 1024}' "/proc/$1/status"
}

run_variant() {
    variant=$1
    note "round $round/$ROUNDS: $variant"
    make_topology
    start_iperf_server
    "setup_$variant"
    wait_for 10 "a ping from C to H through $variant" in_ns "$NS_C" ping -n -c 1 -W 1 10.201.0.2 \
        || die "$variant: no path from C to H (10.201.0.2)"
    # Latency first, on an idle path: after the UDP tests a tunnel may still be draining its queues.
    ping_test
    tcp_bytes=0 tcp_ticks=0
    local server_before=0 server_after
    [ -z "$vpn_server" ] || server_before=$(cpu_ticks "$vpn_server")
    tcp_test tcp_up
    tcp_test tcp_down -R
    tcp_test tcp_p4 -P 4
    record_cpu_per_gb
    if [ -n "$vpn_server" ] && check_vpn_alive "TCP tests" && [ "$tcp_bytes" -gt 0 ]; then
        server_after=$(cpu_ticks "$vpn_server")
        record cpu_server_per_gb "$(awk -v t="$((server_after - server_before))" -v hz="$clk_tck" -v b="$tcp_bytes" 'BEGIN{printf "%.4f", (t/hz) / (b/1e9)}')"
    fi
    if [ "$UDP" = 1 ]; then
        udp_full_rate
        udp_sweep
    fi
    if [ -n "$vpn_client" ] && check_vpn_alive "the run"; then
        record rss_client "$(peak_rss "$vpn_client")"
        record rss_server "$(peak_rss "$vpn_server")"
    fi
    topo_teardown
}

# ---- the run ---------------------------------------------------------------------------------------
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
note "tunvpn: $tunvpn; $ROUNDS round(s), ${DURATION}s tests, sweep ${SWEEP_DURATION}s steps: $SWEEP_RATES, then $SWEEP_REFINE bisection step(s)"
for round in $(seq "$ROUNDS"); do
    order=$VARIANTS
    # A/B: B first in even rounds, so neither binary always runs right after the other.
    [ $((round % 2)) = 1 ] || order=$(echo " $order " | sed 's/ tunvpn tunvpnb / tunvpnb tunvpn /; s/^ //; s/ $//')
    for v in $order; do run_variant "$v"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - started_at))

# ---- report ----------------------------------------------------------------------------------------
mode=$([ "$quick" = 1 ] && echo quick || echo default)
env_prefix=""
for var in TUNVPN TUNVPN_B VARIANTS UDP TUNVPN_ARGS WG_MODERN SCRATCH_PATH ROUNDS DURATION SWEEP_DURATION SWEEP_RATES SWEEP_REFINE PINGS; do
    [ -n "${!var+set}" ] && [ -n "$(printenv "$var" || true)" ] && env_prefix+="$var='$(printenv "$var")' "
done
meta="$work/meta.json"
MODE=$mode COMMAND="$env_prefix$command_line" LOAD_START=$load_start LOAD_END=$load_end \
ELAPSED="$((elapsed / 60)) min $((elapsed % 60)) s" \
SETTINGS="$ROUNDS round(s) of tunvpn → wireguard-go (backports) → wireguard-go (system) → veth; iperf3 TCP ${DURATION} s per test; UDP -l 1392 -w 4M, -b 0 for ${DURATION} s, sweep ${SWEEP_DURATION} s per step over $SWEEP_RATES, then $SWEEP_REFINE bisection step(s) below the first rate with ≥1% loss; $PINGS pings at -i 0.01; tunnel MTU $MTU" \
TUNVPN_VERSION="$(git -C "$repo" describe --always --dirty --tags 2>/dev/null || echo unknown)" \
NPROC="$(nproc)" WG_VERSION="$wg_old_version" WG_MODERN_VERSION="$wg_modern_version" IPERF_VERSION="$(iperf3 --version 2>&1 | head -1)" \
FAILURES="$(printf '%s\n' "${failures[@]+"${failures[@]}"}")" \
python3 - "$meta" <<'EOF'
import json, os, subprocess, sys, datetime
cpu = "unknown"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "mode": os.environ["MODE"], "command": os.environ["COMMAND"],
    "nproc": os.environ["NPROC"], "kernel": os.uname().release, "cpu": cpu,
    "load_start": os.environ["LOAD_START"], "load_end": os.environ["LOAD_END"], "elapsed": os.environ["ELAPSED"],
    "settings": os.environ["SETTINGS"], "tunvpn_version": os.environ["TUNVPN_VERSION"],
    "wireguard_go_version": os.environ["WG_VERSION"],
    "wireguard_go_modern_version": os.environ["WG_MODERN_VERSION"], "iperf3_version": os.environ["IPERF_VERSION"],
    "failures": [l for l in os.environ["FAILURES"].splitlines() if l],
}
with open(sys.argv[1], "w") as f:
    json.dump(meta, f)
EOF
python3 "$here/report.py" summarize "$raw" "$meta" >"$work/section.md"
[ -z "${TUNVPN_B:-}" ] || python3 "$here/report.py" compare "$raw" "$tunvpn" "$tunvpn_b" >>"$work/section.md"
echo
cat "$work/section.md"
if [ -n "$results" ]; then
    python3 "$here/report.py" write-section "$results" "$work/section.md"
    note "wrote $results"
fi
