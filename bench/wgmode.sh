#!/usr/bin/env bash
# bench/wgmode.sh: tunvpn's WireGuard mode (`--protocol wireguard`) beside its own protocol, against
# wireguard-go, and mixed with it: iperf3 TCP both ways through each pair, interleaved rounds, medians,
# ratios and CPU-seconds per GB. Run as root; see bench/README.md.
#
# The topology and the ends are bench/run.sh's (bench/lib/pairs.sh): C 10.101.0.2 ── S 10.101.0.1 /
# 10.201.0.1 ── H 10.201.0.2, iperf3 from C to H through the tunnel between C and S, MTU 1420.
#
#   variant   C (client)                                     S (server)
#   tunvpn    tunvpn client (tunvpn mode)                    tunvpn server (tunvpn mode), 10.8.0.1/16
#   tvwg      tunvpn client --protocol wireguard             tunvpn server --protocol wireguard
#             --address 10.8.0.2/16                          (allow-list: KEY 10.8.0.2/32)
#   tv-wg     tunvpn client --protocol wireguard             wireguard-go (backports), 10.8.0.1/16, port 51821
#   wg-tv     wireguard-go (backports), 10.8.0.2/16          tunvpn server --protocol wireguard
#   wgnew     wireguard-go (backports), 10.9.0.2/24          wireguard-go (backports), 10.9.0.1/24
#
# Every variant of every round gets freshly made namespaces (tvwgm<PID>-c, -s, -h) and is torn down
# before the next. Nothing changes in the root network namespace; every process is stopped by PID and
# every namespace deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
command_line="bench/wgmode.sh${*:+ $*}"

usage() {
    cat <<EOF
Usage: sudo bench/wgmode.sh [--quick] [--rounds N] [--duration SECONDS]

Measures iperf3 TCP (one stream each way) through tunvpn in its own mode, tunvpn in WireGuard mode,
tunvpn mixed with wireguard-go (each side in turn) and wireguard-go alone (bookworm-backports' build),
interleaved, and prints a Markdown table of medians and ratios. The default (3 rounds, 10 s tests) takes
about 6 minutes; --quick (1 round, 3 s tests) about 1.

Environment: TUNVPN=path (use this binary instead of building), SCRATCH_PATH (SwiftPM scratch path,
default .build-static), ROUNDS, DURATION, VARIANTS (default "tunvpn tvwg tv-wg wg-tv wgnew"),
WG_MODERN=path (the wireguard-go to use instead of fetching bookworm-backports' into WG_MODERN_CACHE,
default /var/cache/tunvpn-bench).
EOF
}

die() { echo "wgmode.sh: error: $*" >&2; exit 1; }
note() { echo "wgmode.sh: $*" >&2; }

# shellcheck source=lib/options.sh
. "$here/lib/options.sh"
parse_bench_options "$@"
VARIANTS=${VARIANTS:-"tunvpn tvwg tv-wg wg-tv wgnew"}
MTU=1420
for v in $VARIANTS; do
    [[ "$v" =~ ^(tunvpn|tvwg|tv-wg|wg-tv|wgnew)$ ]] || die "VARIANTS: '$v' is not tunvpn, tvwg, tv-wg, wg-tv or wgnew"
done

[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces): sudo $command_line"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"
for tool in ip iperf3 wg ping python3 timeout getconf awk ss; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH (apt-get install iperf3 wireguard-tools iproute2 iputils-ping)"
done

# ---- binaries: the backports wireguard-go and tunvpn, as bench/run.sh finds them ---------------------
# shellcheck source=lib/wireguard-go.sh
. "$here/lib/wireguard-go.sh"
find_modern_wireguard_go
wg_modern_version="$("$wg_modern" --version 2>&1 | head -1)${wg_modern_package:+ ($wg_modern_package)}"
# shellcheck source=lib/tunvpn-binary.sh
. "$here/lib/tunvpn-binary.sh"
find_tunvpn

# ---- state and cleanup -----------------------------------------------------------------------------
# shellcheck source=lib/topology.sh
. "$here/lib/topology.sh"
# shellcheck source=lib/pairs.sh
. "$here/lib/pairs.sh"
tag="tvwgm$$"
NS_C="$tag-c"; NS_S="$tag-s"; NS_H="$tag-h"
WGM_C="wqc$$"; WGM_S="wqs$$"      # wireguard-go's UAPI sockets live in /var/run/wireguard, shared by all
                                  # namespaces, so the two ends (and concurrent runs) need distinct names
TV_C="tvc$$"; TV_S="tvs$$"        # the same for tunvpn's devices (WireGuard mode serves that socket too)
work=$(mktemp -d "/tmp/$tag.XXXXXX")
raw="$work/raw.tsv"; : >"$raw"
failures=()
clk_tck=$(getconf CLK_TCK)
started_at=$(date +%s)
topo_files=("/var/run/wireguard/$WGM_C.sock" "/var/run/wireguard/$WGM_S.sock")
topo_traps

# ---- variants: set up (sets vpn_client, vpn_server) ------------------------------------------------
# The allow-list line of a WireGuard-mode server: the client's key and its allowed IPs.
client_line() { echo "$(cat "$work/keys/client.pub") 10.8.0.2/32"; }

setup_tunvpn() {
    bench_keys
    tunvpn_server "$(cat "$work/keys/client.pub")"
    tunvpn_client 10.101.0.1:51820
}

setup_tvwg() {
    bench_keys
    tunvpn_server "$(client_line)" --protocol wireguard
    tunvpn_client 10.101.0.1:51820 --protocol wireguard --address 10.8.0.2/16
}

setup_tv-wg() {
    bench_keys
    wireguard_go_server "$wg_modern" "$WGM_S" 10.8.0.1/16 10.8.0.2
    tunvpn_client 10.101.0.1:51821 --protocol wireguard --address 10.8.0.2/16
}

setup_wg-tv() {
    bench_keys
    tunvpn_server "$(client_line)" --protocol wireguard
    wireguard_go_client "$wg_modern" "$WGM_C" 10.8.0.2/16 10.8.0.0/16 10.101.0.1:51820
}

setup_wgnew() { wireguard_go_pair "$wg_modern" "$WGM_S" "$WGM_C"; }

run_variant() {
    variant=$1
    note "round $round/$ROUNDS: $variant"
    make_topology
    start_iperf_server
    "setup_$variant"
    [ "$variant" = wgnew ] || ip -n "$NS_H" route add 10.8.0.0/16 via 10.201.0.1
    wait_for 10 "a ping from C to H through $variant" in_ns "$NS_C" ping -n -c 1 -W 1 10.201.0.2 \
        || die "$variant: no path from C to H (10.201.0.2)"
    tcp_bytes=0 tcp_ticks=0
    tcp_test tcp_up
    tcp_test tcp_down -R
    record_cpu_per_gb
    topo_teardown
}

# ---- the run ---------------------------------------------------------------------------------------
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
note "tunvpn: $tunvpn; wireguard-go: $wg_modern_version ($wg_modern); $ROUNDS round(s) of $VARIANTS, ${DURATION}s tests"
for round in $(seq "$ROUNDS"); do
    for v in $VARIANTS; do run_variant "$v"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - started_at))

# ---- report ----------------------------------------------------------------------------------------
meta="$work/meta.json"
COMMAND="$command_line" LOAD_START=$load_start LOAD_END=$load_end ELAPSED="$((elapsed / 60)) min $((elapsed % 60)) s" \
SETTINGS="$ROUNDS round(s) of $VARIANTS; iperf3 TCP, one stream C→H and H→C (-R), ${DURATION} s each; tunnel MTU $MTU" \
TUNVPN_VERSION="$(git -C "$repo" describe --always --dirty --tags 2>/dev/null || echo unknown)" \
NPROC="$(nproc)" WG_MODERN_VERSION="$wg_modern_version" IPERF_VERSION="$(iperf3 --version 2>&1 | head -1)" \
FAILURES="$(printf '%s\n' "${failures[@]+"${failures[@]}"}")" \
python3 - "$meta" <<'PY'
import datetime, json, os, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "command": os.environ["COMMAND"], "nproc": os.environ["NPROC"], "kernel": os.uname().release, "cpu": cpu,
    "load_start": os.environ["LOAD_START"], "load_end": os.environ["LOAD_END"], "elapsed": os.environ["ELAPSED"],
    "settings": os.environ["SETTINGS"], "tunvpn_version": os.environ["TUNVPN_VERSION"],
    "wireguard_go_modern_version": os.environ["WG_MODERN_VERSION"], "iperf3_version": os.environ["IPERF_VERSION"],
    "failures": [l for l in os.environ["FAILURES"].splitlines() if l],
}, open(sys.argv[1], "w"))
PY
echo
python3 "$here/report.py" wgmode "$raw" "$meta"
