# shellcheck shell=bash
# bench/lib/pairs.sh: the C–S–H topology of bench/run.sh and bench/wgmode.sh, the VPN ends they put in it
# (tunvpn in either protocol mode, wireguard-go) and the TCP measurements they share. Source it (bash) after
# lib/topology.sh and lib/wireguard-go.sh; it defines functions and runs nothing itself.
#
#   C (client)                        S (server, ip_forward=1)                 H (host behind S, iperf3 -s)
#   c0 10.101.0.2/24 ───── veth ───── s0 10.101.0.1/24
#                                     s1 10.201.0.1/24 ───── veth ───── h0 10.201.0.2/24
#
# It uses the caller's `die`, `note`, `here`, `work`, `tunvpn`, `MTU`, `DURATION`, `NS_C`, `NS_S`, `NS_H`,
# `raw` (the per-round TSV), `failures`, `round` and `variant`, and `TV_S`/`TV_C` when set (tunvpn's device in S
# and in C, default tvb0: in WireGuard mode tunvpn serves /var/run/wireguard/DEV.sock, one path per host, so
# a script running both ends there names them apart); the ends set `vpn_server` and `vpn_client`
# (their PIDs, which cpu_ticks and check_vpn_alive read), the TCP tests add to `tcp_bytes` and `tcp_ticks`.

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

# ---- the ends --------------------------------------------------------------------------------------
# bench_keys: a fresh key pair for each end, $work/keys/server.{key,pub} and client.{key,pub} (the format
# of `wg genkey`, which tunvpn and wireguard-go both read).
bench_keys() {
    local k="$work/keys"
    mkdir -p "$k"
    "$tunvpn" keygen --out "$k" --name server --force >/dev/null
    "$tunvpn" keygen --out "$k" --name client --force >/dev/null
}

# tunvpn_server CLIENTS_LINE EXTRA…: tunvpn server in S on 10.101.0.1:51820 (device $TV_S, 10.8.0.1/16,
# --no-nat) admitting the allow-list line CLIENTS_LINE, with EXTRA options; sets vpn_server.
tunvpn_server() {
    local k="$work/keys" line=$1
    shift
    echo "$line" >"$k/clients"
    ip netns exec "$NS_S" "$tunvpn" server --key "$k/server.key" --clients "$k/clients" --listen 0.0.0.0:51820 \
        --address 10.8.0.1/16 --mtu "$MTU" --dev "${TV_S:-tvb0}" --no-nat "$@" >"$work/tunvpn-server.log" 2>&1 &
    vpn_server=$!
    pids+=("$vpn_server")
    wait_for 10 "tunvpn server to listen" grep -q "server listening" "$work/tunvpn-server.log" \
        || die "tunvpn server did not start: $(tail -5 "$work/tunvpn-server.log")"
}

# tunvpn_client ENDPOINT EXTRA…: tunvpn client in C (device $TV_C, --no-routes) towards ENDPOINT with EXTRA
# options; waits for its `tunnel up` and routes H's link into the device; sets vpn_client.
tunvpn_client() {
    local k="$work/keys" endpoint=$1 dev=${TV_C:-tvb0}
    shift
    ip netns exec "$NS_C" "$tunvpn" client --key "$k/client.key" --peer-key "$k/server.pub" --endpoint "$endpoint" \
        --mtu "$MTU" --dev "$dev" --no-routes "$@" >"$work/tunvpn-client.log" 2>&1 &
    vpn_client=$!
    pids+=("$vpn_client")
    wait_for 15 "the tunvpn client's 'tunnel up'" grep -q "tunnel up" "$work/tunvpn-client.log" \
        || die "tunvpn client never logged 'tunnel up': $(tail -5 "$work/tunvpn-client.log")"
    wait_for 5 "$dev to be up in C" bash -c "ip -n '$NS_C' -o link show '$dev' | grep -q ',UP'" \
        || die "$dev in C never came up"
    ip -n "$NS_C" route add 10.201.0.0/24 dev "$dev"
}

# wireguard_go_server BINARY DEV ADDRESS PEER_ADDRESS: wireguard-go BINARY in S as DEV, listening on
# 10.101.0.1:51821 with the server key, ADDRESS (with prefix length) on DEV and the client as its peer
# with allowed-ips PEER_ADDRESS/32; sets vpn_server.
wireguard_go_server() {
    local bin=$1 dev=$2 address=$3 peer=$4 k="$work/keys"
    wireguard_go_start "$NS_S" "$bin" "$dev" "$work/wg-server.log"
    vpn_server=$wg_pid
    in_ns "$NS_S" wg set "$dev" listen-port 51821 private-key "$k/server.key" \
        peer "$(cat "$k/client.pub")" allowed-ips "$peer/32"
    ip -n "$NS_S" addr add "$address" dev "$dev"
    ip -n "$NS_S" link set "$dev" mtu "$MTU" up
}

# wireguard_go_client BINARY DEV ADDRESS NET ENDPOINT: wireguard-go BINARY in C as DEV with the client key,
# ADDRESS (with prefix length) on DEV, and the server at ENDPOINT as its peer for NET and H's link, which is
# routed into DEV; sets vpn_client.
wireguard_go_client() {
    local bin=$1 dev=$2 address=$3 net=$4 endpoint=$5 k="$work/keys"
    wireguard_go_start "$NS_C" "$bin" "$dev" "$work/wg-client.log"
    vpn_client=$wg_pid
    in_ns "$NS_C" wg set "$dev" private-key "$k/client.key" \
        peer "$(cat "$k/server.pub")" allowed-ips "$net,10.201.0.0/24" endpoint "$endpoint"
    ip -n "$NS_C" addr add "$address" dev "$dev"
    ip -n "$NS_C" link set "$dev" mtu "$MTU" up
    ip -n "$NS_C" route add 10.201.0.0/24 dev "$dev"
}

# wireguard_go_pair BINARY IF_S IF_C: one wireguard-go in S and one in C, joined (10.9.0.0/24), with routes
# through them.
wireguard_go_pair() {
    local bin=$1 if_s=$2 if_c=$3
    bench_keys
    wireguard_go_server "$bin" "$if_s" 10.9.0.1/24 10.9.0.2
    wireguard_go_client "$bin" "$if_c" 10.9.0.2/24 10.9.0.0/24 10.101.0.1:51821
    ip -n "$NS_H" route add 10.9.0.0/24 via 10.201.0.1
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
    # Per direction, for A/B comparisons (report.py compare).
    case "$metric" in tcp_up | tcp_down)
        [ -z "$vpn_client" ] || record "cpu_${metric#tcp_}_per_gb" "$(awk -v t="$((after - before))" -v hz="$clk_tck" -v b="$bytes" 'BEGIN{printf "%.4f", (t/hz) / (b/1e9)}')" ;;
    esac
    note "  $metric: $(awk -v b="$bps" 'BEGIN{printf "%.2f", b/1e9}') Gbit/s, $retr retransmits"
}

# record_cpu_per_gb: after the TCP tests, the VPN CPU-seconds (both ends) per GB they carried.
record_cpu_per_gb() {
    if [ -n "$vpn_client" ] && check_vpn_alive "TCP tests" && [ "$tcp_bytes" -gt 0 ]; then
        record cpu_per_gb "$(awk -v t="$tcp_ticks" -v hz="$clk_tck" -v b="$tcp_bytes" 'BEGIN{printf "%.4f", (t/hz) / (b/1e9)}')"
    fi
}
