# Sourced by bench scripts with the same command line (wgmode.sh, ipv6.sh): --quick, --rounds N,
# --duration SECONDS, -h/--help. The caller defines usage and die.

# parse_bench_options ARGS…: sets ROUNDS (default 3, 1 with --quick) and DURATION (default 10 s, 3 s with
# --quick) unless the environment set them, and checks both.
parse_bench_options() {
    local quick=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --quick) quick=1 ;;
            --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; ROUNDS=$2; shift ;;
            --duration) [ $# -ge 2 ] || die "--duration needs seconds"; DURATION=$2; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument '$1'" ;;
        esac
        shift
    done
    if [ "$quick" = 1 ]; then
        ROUNDS=${ROUNDS:-1}
        DURATION=${DURATION:-3}
    fi
    ROUNDS=${ROUNDS:-3}
    DURATION=${DURATION:-10}
    [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS/--rounds must be a positive integer, not '$ROUNDS'"
    [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION/--duration must be a positive number of seconds, not '$DURATION'"
}
