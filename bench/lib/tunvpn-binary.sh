# shellcheck shell=bash
# The tunvpn binary a benchmark runs, shared by bench/run.sh and bench/ipv6.sh: $TUNVPN when set, else the
# release build (`swift build -c release --static-swift-stdlib --product tunvpn`: the single binary the
# README installs) in $SCRATCH_PATH (default .build-static). Needs `repo`, `die` and `note` from the caller;
# sets `tunvpn` to the binary's absolute path.
find_tunvpn() {
    if [ -n "${TUNVPN:-}" ]; then
        [ -x "$TUNVPN" ] || die "TUNVPN=$TUNVPN is not an executable file"
        tunvpn=$(cd "$(dirname "$TUNVPN")" && pwd)/$(basename "$TUNVPN")
        return
    fi
    command -v swift >/dev/null || die "swift not found: install Swift 6 or set TUNVPN=/path/to/tunvpn"
    local scratch=${SCRATCH_PATH:-.build-static}
    note "building tunvpn (swift build -c release --static-swift-stdlib --product tunvpn --scratch-path $scratch)"
    (cd "$repo" && timeout 1800 swift build -c release --static-swift-stdlib --product tunvpn --scratch-path "$scratch" >&2) \
        || die "swift build -c release failed (see above)"
    tunvpn="$(cd "$repo" && swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/tunvpn"
    [ -x "$tunvpn" ] || die "build finished but $tunvpn is missing"
}
