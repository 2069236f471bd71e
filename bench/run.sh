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
tunvpn tunvpnb wgnew wggo veth) runs only those. Either one only prints unless --results is given.
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
# A partial or A/B run would replace the full run's section of RESULTS.md: print only, unless asked.
UDP=${UDP:-1}
[[ "$UDP" =~ ^[01]$ ]] || die "UDP must be 1 (run the UDP tests) or 0 (leave them out), not '$UDP'"
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
# The system's wireguard-go stays as it is; the backports build is downloaded (`apt-get download`) and
# unpacked (`dpkg -x`) into a private cache, and run from there. If the machine's APT sources lack the
# backports suite, it is added as its own deb822 file with the URIs and Signed-By of the existing Debian
# entry, at APT's default low priority for backports (100), so no installed package changes.
WG_MODERN_SUITE=${WG_MODERN_SUITE:-bookworm-backports}
WG_MODERN_CACHE=${WG_MODERN_CACHE:-/var/cache/tunvpn-bench}
backports_sources=/etc/apt/sources.list.d/tunvpn-bench-$WG_MODERN_SUITE.sources
added_sources=0

add_backports_suite() { # writes $backports_sources from the Debian entry of debian.sources or sources.list
    local uri="" signed=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # The first stanza whose URIs end in /debian (not -security): its URIs and Signed-By.
        read -r uri signed < <(awk 'BEGIN{RS=""; FS="\n"} {u=""; k=""; for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u) }
                if ($i ~ /^Signed-By:/) { k = $i; sub(/^Signed-By:[ \t]*/, "", k) } }
            if (u ~ /\/debian\/?$/) { print u, k; exit } }' /etc/apt/sources.list.d/debian.sources) || true
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list) || true
    fi
    [ -n "$uri" ] || die "cannot add $WG_MODERN_SUITE: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; add it yourself, e.g. a file /etc/apt/sources.list.d/backports.sources with 'Types: deb', 'URIs: http://deb.debian.org/debian', 'Suites: $WG_MODERN_SUITE', 'Components: main', 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'"
    note "adding $WG_MODERN_SUITE from $uri to APT's sources ($backports_sources)"
    {
        echo "# Added by tunvpn's bench/run.sh: the suite its modern wireguard-go comes from (bench/README.md)."
        echo "Types: deb"
        echo "URIs: $uri"
        echo "Suites: $WG_MODERN_SUITE"
        echo "Components: main"
        [ -z "$signed" ] || echo "Signed-By: $signed"
    } >"$backports_sources"
    added_sources=1
}

# die, after taking out a sources file this run added (a suite APT cannot reach would break apt-get update).
die_fetch() {
    if [ "$added_sources" = 1 ]; then
        rm -f "$backports_sources"
        note "removed $backports_sources again"
    fi
    die "$@"
}

# Sets wg_modern to the path of the backports wireguard-go, fetching it into the cache when needed.
fetch_modern_wireguard_go() {
    local version dir deb
    command -v apt-get >/dev/null && command -v dpkg >/dev/null \
        || die "the modern wireguard-go comes from Debian's $WG_MODERN_SUITE with apt-get and dpkg, which this machine lacks; set WG_MODERN=/path/to/wireguard-go instead"
    version=$(apt-cache madison wireguard-go 2>/dev/null | awk -F'|' -v s="$WG_MODERN_SUITE" '$3 ~ s { gsub(/ /, "", $2); print $2; exit }')
    if [ -z "$version" ]; then
        apt-cache policy 2>/dev/null | grep -q "$WG_MODERN_SUITE/main" || add_backports_suite
        note "apt-get update (for $WG_MODERN_SUITE)"
        DEBIAN_FRONTEND=noninteractive apt-get update >&2 || die_fetch "apt-get update failed, so $WG_MODERN_SUITE cannot be reached (see above)"
        version=$(apt-cache madison wireguard-go 2>/dev/null | awk -F'|' -v s="$WG_MODERN_SUITE" '$3 ~ s { gsub(/ /, "", $2); print $2; exit }')
    fi
    [ -n "$version" ] || die_fetch "wireguard-go is not in $WG_MODERN_SUITE as APT sees it (apt-cache madison wireguard-go); check that the suite is reachable, or set WG_MODERN=/path/to/wireguard-go"
    dir="$WG_MODERN_CACHE/wireguard-go_$version"
    if [ ! -x "$dir/usr/bin/wireguard-go" ]; then
        note "downloading wireguard-go $version from $WG_MODERN_SUITE into $dir (the installed package is not touched)"
        mkdir -p "$WG_MODERN_CACHE/download"
        # APT downloads as its sandbox user when that user may write the directory.
        ! id _apt >/dev/null 2>&1 || chown _apt "$WG_MODERN_CACHE/download"
        rm -f "$WG_MODERN_CACHE"/download/wireguard-go_*.deb
        # apt-get download writes to the current directory; as root it downloads unsandboxed (a warning).
        (cd "$WG_MODERN_CACHE/download" && apt-get download -q "wireguard-go/$WG_MODERN_SUITE" >&2) \
            || die_fetch "apt-get download wireguard-go/$WG_MODERN_SUITE failed: the suite cannot be reached (see above)"
        deb=$(ls "$WG_MODERN_CACHE"/download/wireguard-go_*.deb 2>/dev/null | head -1)
        [ -n "$deb" ] || die "apt-get download left no wireguard-go .deb in $WG_MODERN_CACHE/download"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" && dpkg -x "$deb" "$dir.tmp" && rm -rf "$dir" && mv "$dir.tmp" "$dir" \
            || die "dpkg -x $deb into $dir failed"
        rm -f "$deb"
    fi
    wg_modern="$dir/usr/bin/wireguard-go"
    [ -x "$wg_modern" ] || die "$wg_modern is missing after unpacking wireguard-go $version"
    wg_modern_package="Debian package $version"
}

wg_modern_package=""
if [[ " $VARIANTS " != *" wgnew "* ]]; then
    wg_modern=""  # not run: nothing to fetch
elif [ -n "${WG_MODERN:-}" ]; then
    [ -x "$WG_MODERN" ] || die "WG_MODERN=$WG_MODERN is not an executable file"
    wg_modern=$WG_MODERN
else
    fetch_modern_wireguard_go
fi
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


# ---- topology --------------------------------------------------------------------------------------
make_topology() {
    topo_namespaces "$NS_C" "$NS_S" "$NS_H"
    topo_link "$NS_C" c0 10.101.0.2/24 "$NS_S" s0 10.101.0.1/24
    topo_link "$NS_S" s1 10.201.0.1/24 "$NS_H" h0 10.201.0.2/24
    in_ns "$NS_S" sysctl -qw net.ipv4.ip_forward=1
}

alive() { kill -0 "$1" 2>/dev/null; }

start_iperf_server() {
    ip netns exec "$NS_H" iperf3 -s -p 5201 >"$work/iperf3-server.log" 2>&1 &
    pids+=("$!")
    wait_for 5 "iperf3 -s in H" bash -c "ss -N '$NS_H' -Hltn 'sport = :5201' | grep -q ." \
        || die "iperf3 server did not start: $(tail -3 "$work/iperf3-server.log")"
}

# ---- variants: set up (sets vpn_pids, target) ------------------------------------------------------
setup_tunvpnb() { setup_tunvpn "$tunvpn_b"; }

setup_tunvpn() { # setup_tunvpn [BINARY] (default: $tunvpn)
    local k="$work/keys" tunvpn=${1:-$tunvpn}
    mkdir -p "$k"
    "$tunvpn" keygen --out "$k" --name server --force >/dev/null
    "$tunvpn" keygen --out "$k" --name client --force >/dev/null
    cp "$k/client.pub" "$k/clients"
    ip netns exec "$NS_S" "$tunvpn" server --key "$k/server.key" --clients "$k/clients" --listen 0.0.0.0:51820 \
        --address 10.8.0.1/16 --mtu "$MTU" --dev tvb0 --no-nat $TUNVPN_ARGS >"$work/tunvpn-server.log" 2>&1 &
    local server=$!
    pids+=("$server")
    wait_for 10 "tunvpn server to listen" grep -q "server listening" "$work/tunvpn-server.log" \
        || die "tunvpn server did not start: $(tail -5 "$work/tunvpn-server.log")"
    ip netns exec "$NS_C" "$tunvpn" client --key "$k/client.key" --peer-key "$k/server.pub" --endpoint 10.101.0.1:51820 \
        --mtu "$MTU" --dev tvb0 --no-routes $TUNVPN_ARGS >"$work/tunvpn-client.log" 2>&1 &
    local client=$!
    pids+=("$client")
    wait_for 15 "the tunvpn client's 'tunnel up'" grep -q "tunnel up" "$work/tunvpn-client.log" \
        || die "tunvpn client never logged 'tunnel up': $(tail -5 "$work/tunvpn-client.log")"
    wait_for 5 "tvb0 to be up in C" bash -c "ip -n '$NS_C' -o link show tvb0 | grep -q ',UP'" \
        || die "tvb0 in C never came up"
    ip -n "$NS_C" route add 10.201.0.0/24 dev tvb0
    ip -n "$NS_H" route add 10.8.0.0/16 via 10.201.0.1
    [ "$round" != 1 ] || note "  $(grep -o 'crypto provider: [a-z]*' "$work/tunvpn-server.log" | head -1) (server)"
    vpn_client=$client vpn_server=$server
}

# wireguard_go_pair BINARY IF_S IF_C: one wireguard-go in S and one in C, joined, with routes through them.
wireguard_go_pair() {
    local bin=$1 if_s=$2 if_c=$3 k="$work/wg" side
    mkdir -p "$k"
    (umask 077; wg genkey >"$k/c.key"; wg genkey >"$k/s.key")
    wg pubkey <"$k/c.key" >"$k/c.pub"
    wg pubkey <"$k/s.key" >"$k/s.pub"
    ip netns exec "$NS_S" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error "$bin" "$if_s" >"$work/wg-server.log" 2>&1 &
    vpn_server=$!
    pids+=("$vpn_server")
    ip netns exec "$NS_C" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error "$bin" "$if_c" >"$work/wg-client.log" 2>&1 &
    vpn_client=$!
    pids+=("$vpn_client")
    for side in "$if_s" "$if_c"; do
        wait_for 5 "wireguard-go's socket for $side" test -S "/var/run/wireguard/$side.sock" \
            || die "wireguard-go $side did not start: $(tail -3 "$work"/wg-*.log)"
    done
    in_ns "$NS_S" wg set "$if_s" listen-port 51821 private-key "$k/s.key" \
        peer "$(cat "$k/c.pub")" allowed-ips 10.9.0.2/32
    ip -n "$NS_S" addr add 10.9.0.1/24 dev "$if_s"
    ip -n "$NS_S" link set "$if_s" mtu "$MTU" up
    in_ns "$NS_C" wg set "$if_c" private-key "$k/c.key" \
        peer "$(cat "$k/s.pub")" allowed-ips 10.9.0.0/24,10.201.0.0/24 endpoint 10.101.0.1:51821
    ip -n "$NS_C" addr add 10.9.0.2/24 dev "$if_c"
    ip -n "$NS_C" link set "$if_c" mtu "$MTU" up
    ip -n "$NS_C" route add 10.201.0.0/24 dev "$if_c"
    ip -n "$NS_H" route add 10.9.0.0/24 via 10.201.0.1
}

setup_wggo() { wireguard_go_pair wireguard-go "$WG_S" "$WG_C"; }
setup_wgnew() { wireguard_go_pair "$wg_modern" "$WGM_S" "$WGM_C"; }

setup_veth() {
    ip -n "$NS_C" route add 10.201.0.0/24 via 10.101.0.1
    ip -n "$NS_H" route add 10.101.0.0/24 via 10.201.0.1
    vpn_client="" vpn_server=""
}

# ---- measurements ----------------------------------------------------------------------------------
record() { printf '%s\t%s\t%s\t%s\n' "$round" "$variant" "$1" "$2" >>"$raw"; }

cpu_ticks() { # cpu_ticks [PIDS]: utime+stime of the VPN processes (both ends), in clock ticks; 0 for veth
    local total=0 pid
    for pid in ${1-$vpn_client $vpn_server}; do
        total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

check_vpn_alive() {
    local pid
    for pid in $vpn_client $vpn_server; do
        alive "$pid" || { failures+=("round $round $variant: VPN process $pid died during $1"); return 1; }
    done
}

iperf() { # iperf NAME ARGS…: one iperf3 client run from C to H, JSON into $work/NAME.json
    local name=$1
    shift
    run_wait "$work/$name.json" "$work/$name.err" $((DURATION + 30)) \
        ip netns exec "$NS_C" iperf3 -c 10.201.0.2 -p 5201 --json "$@"
}

tcp_test() { # tcp_test METRIC ARGS…
    local metric=$1 before after out bps bytes retr
    shift
    before=$(cpu_ticks)
    if ! iperf "$metric" -t "$DURATION" "$@" || ! out=$(python3 "$here/report.py" tcp "$work/$metric.json"); then
        failures+=("round $round $variant: iperf3 $metric failed: $(python3 "$here/report.py" tcp "$work/$metric.json" 2>&1 | tail -1)")
        note "  $metric: FAILED (see RESULTS failures)"
        return 0
    fi
    after=$(cpu_ticks)
    read -r bps bytes retr <<<"$out"
    record "$metric" "$(awk -v b="$bps" 'BEGIN{printf "%.4f", b/1e9}')"
    case "$metric" in tcp_up | tcp_down) record "${metric}_retr" "$retr" ;; esac
    tcp_bytes=$((tcp_bytes + bytes))
    tcp_ticks=$((tcp_ticks + after - before))
    # Per direction and per end, for A/B comparisons (report.py compare).
    case "$metric" in tcp_up | tcp_down)
        [ -z "$vpn_client" ] || record "cpu_${metric#tcp_}_per_gb" "$(awk -v t="$((after - before))" -v hz="$clk_tck" -v b="$bytes" 'BEGIN{printf "%.4f", (t/hz) / (b/1e9)}')" ;;
    esac
    note "  $metric: $(awk -v b="$bps" 'BEGIN{printf "%.2f", b/1e9}') Gbit/s, $retr retransmits"
}

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
    if [ -n "$vpn_client" ] && check_vpn_alive "TCP tests" && [ "$tcp_bytes" -gt 0 ]; then
        record cpu_per_gb "$(awk -v t="$tcp_ticks" -v hz="$clk_tck" -v b="$tcp_bytes" 'BEGIN{printf "%.4f", (t/hz) / (b/1e9)}')"
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
