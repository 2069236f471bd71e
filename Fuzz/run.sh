#!/usr/bin/env bash
# Builds and runs tunvpn's libFuzzer targets (Fuzz/README.md).
#
#   Fuzz/run.sh [TARGET|all] [SECONDS]   fuzz one target, or each in turn (default: all, 600 s each)
#   Fuzz/run.sh seeds                    rewrite Fuzz/corpus/<target>/ seeds with the real code
#   Fuzz/run.sh list                     name every target
#
# Environment: FUZZ_JOBS (targets fuzzed at once by `all`, default 1), FUZZ_WORK (where the growing
# corpora, logs and crash files go, default .build-fuzz/work), FUZZ_ARGS (more libFuzzer flags).
# Exits non-zero when any target crashes; the crash input is in $FUZZ_WORK/<target>/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(FuzzDataFrame FuzzHandshake FuzzTunnelState FuzzCookie FuzzKeys FuzzAllowList FuzzJournal FuzzTCPOffload FuzzUDPGRO FuzzConfig FuzzWireGuard)
SCRATCH=.build-fuzz
WORK=${FUZZ_WORK:-$SCRATCH/work}
JOBS=${FUZZ_JOBS:-1}
# Swift's backtracer waits on a process libFuzzer has already ended; libFuzzer prints its own report.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}

build() {
    echo "== building $* (debug, -sanitize=fuzzer,address)" >&2
    # One product per invocation: SwiftPM takes a single --product.
    for t in "$@"; do
        TUNVPN_FUZZ=1 swift build -c debug --product "$t" --scratch-path "$SCRATCH" \
            -Xswiftc -sanitize=fuzzer,address 2>&1 | { grep -v "Cannot export local symbol" || true; } >&2
    done
}

run_one() {
    local target=$1 seconds=$2
    local dir="$WORK/$target"
    mkdir -p "$dir/corpus"
    rm -f "$dir/status"
    local log="$dir/fuzz.log"
    echo "== $target for ${seconds}s (log $log)"
    set +e
    # New inputs go to $dir/corpus; the committed seeds are read, never written.
    "$SCRATCH/debug/$target" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$dir/" \
        -timeout=10 -rss_limit_mb=4096 ${FUZZ_ARGS:-} "$dir/corpus" "Fuzz/corpus/$target" >"$log" 2>&1
    local rc=$?
    set -e
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs)" "$log" | sed "s/^/   $target: /"
    echo "$rc" >"$dir/status"
    if [ $rc -ne 0 ]; then
        echo "!! $target failed (exit $rc); from $log:"
        grep -E "Fatal error|ERROR: (AddressSanitizer|libFuzzer)|^SUMMARY|^Base64:|^==[0-9]+==.*(READ|WRITE) of" "$log" | head -8
        ls "$dir"/crash-* "$dir"/oom-* "$dir"/timeout-* "$dir"/leak-* 2>/dev/null || true
        return 1
    fi
}

case "${1:-all}" in
list)
    printf '%s\n' "${TARGETS[@]}"
    exit 0
    ;;
seeds)
    build "${TARGETS[@]}"
    for t in "${TARGETS[@]}"; do
        # Regression inputs (regression-*) are kept; every other seed is made anew.
        mkdir -p "Fuzz/corpus/$t" && find "Fuzz/corpus/$t" -type f ! -name "regression-*" -delete
        TUNVPN_FUZZ_SEEDS="Fuzz/corpus/$t" "$SCRATCH/debug/$t"
        echo "$t: $(ls "Fuzz/corpus/$t" | wc -l) seeds"
    done
    exit 0
    ;;
all) selected=("${TARGETS[@]}") ;;
*)
    if [[ " ${TARGETS[*]} " != *" $1 "* ]]; then
        echo "unknown target '$1'; one of: ${TARGETS[*]}" >&2
        exit 2
    fi
    selected=("$1")
    ;;
esac
seconds=${2:-600}

build "${selected[@]}"
running=0
for t in "${selected[@]}"; do
    run_one "$t" "$seconds" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true
failed=()
for t in "${selected[@]}"; do
    [ "$(cat "$WORK/$t/status" 2>/dev/null)" = 0 ] || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all fuzz targets ran clean: ${selected[*]}"
