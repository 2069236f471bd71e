# shellcheck shell=bash
# bench/lib/wireguard-go.sh: the two wireguard-go builds the benchmarks and the interop tests run, and
# wireguard-go ends in namespaces. Sourced by bench/run.sh and bench/wgmode.sh (which provide `die`, `note`
# and, for the ends, lib/topology.sh's `pids`, `wait_for` and `in_ns`, and `$work`); run directly, it
# prints the path of the modern build, fetching it first when needed, which is how
# Tests/EndToEndTests/WireGuardModeEndToEndTests.swift gets the same binary:
#
#   bench/lib/wireguard-go.sh modern-path      # → /var/cache/tunvpn-bench/wireguard-go_VERSION/usr/bin/wireguard-go
#
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

# Sets wg_modern (and wg_modern_package) to WG_MODERN when it is set, else to the fetched backports build.
find_modern_wireguard_go() {
    wg_modern_package=""
    if [ -n "${WG_MODERN:-}" ]; then
        [ -x "$WG_MODERN" ] || die "WG_MODERN=$WG_MODERN is not an executable file"
        wg_modern=$WG_MODERN
    else
        fetch_modern_wireguard_go
    fi
}

# wireguard_go_start NS BINARY DEV LOG: starts wireguard-go BINARY in the foreground (a child of this script,
# in `pids`) as DEV inside NS, logging errors only to LOG, and waits for its UAPI socket; sets wg_pid.
# Callers add /var/run/wireguard/DEV.sock to topo_files: the socket directory is shared by all namespaces.
wireguard_go_start() {
    local ns=$1 bin=$2 dev=$3 log=$4
    ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error "$bin" "$dev" >"$log" 2>&1 &
    wg_pid=$!
    pids+=("$wg_pid")
    wait_for 5 "wireguard-go's socket for $dev" test -S "/var/run/wireguard/$dev.sock" \
        || die "wireguard-go $dev did not start: $(tail -3 "$log")"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    die() { echo "wireguard-go.sh: error: $*" >&2; exit 1; }
    note() { echo "wireguard-go.sh: $*" >&2; }
    case "${1:-}" in
        modern-path) find_modern_wireguard_go; echo "$wg_modern" ;;
        *) die "usage: bench/lib/wireguard-go.sh modern-path (prints the backports wireguard-go's path, fetching it when needed)" ;;
    esac
fi
