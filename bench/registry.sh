#!/usr/bin/env bash
# bench/registry.sh: the peer registry at scale (docs/DEPLOYMENT.md, "Peer registry"). Run as root.
#
# A PostgreSQL of its own (Debian's binaries, initdb + pg_ctl as the postgres user, a Unix socket in a
# temporary directory, no TCP) with PEERS registered peers (default 10,000), and two tunvpn servers with
# the same key in two network namespaces of their own. It measures:
#   - each server's start time: from its launch to `server listening` (connect, migrate check, read every
#     peer, build the allow-list, write the cache, set up the device);
#   - each server's memory once running (VmRSS) and at its peak (VmHWM);
#   - the time for one change (a peer added, then removed; ROUNDS times) to reach both servers: from the
#     start of the psql that makes it (so psql's own start and login are counted: an upper bound) to the
#     server's `reloaded registry … 1 added` (or `1 removed`) log line, polled every 5 ms.
# Each server re-reads every peer on a change, so the change time is the time of a full resync at PEERS.
#
#   bench/registry.sh [--peers N] [--rounds N] [--binary PATH]
#
# Nothing is changed in the root network namespace; the servers and PostgreSQL are stopped by PID and the
# namespaces and the temporary directory removed on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=10000
ROUNDS=5
BINARY=.build/debug/tunvpn
while [ $# -gt 0 ]; do
    case "$1" in
        --peers) PEERS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --binary) BINARY=$2; shift 2 ;;
        *) echo "bench/registry.sh: unknown argument '$1' (use --peers N, --rounds N, --binary PATH)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench/registry.sh: run as root (network namespaces, TUN devices, runuser postgres)" >&2; exit 1; }
[ -x "$BINARY" ] || { echo "bench/registry.sh: no tunvpn at $BINARY: swift build first, or pass --binary PATH" >&2; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "bench/registry.sh: no PostgreSQL: apt-get install postgresql" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tunvpn-registry-bench.XXXXXX)
chmod 755 "$TMP"
NS1=tvreg$$a
NS2=tvreg$$b
cleanup() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    ip netns del "$NS1" 2>/dev/null || true
    ip netns del "$NS2" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

mkdir "$TMP/data" "$TMP/socket"
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/postgres.password"
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/tunvpn.password"
chmod 600 "$TMP/postgres.password" "$TMP/tunvpn.password"
touch "$TMP/postgres.log"
chown postgres:postgres "$TMP/data" "$TMP/socket" "$TMP/postgres.password" "$TMP/postgres.log"
runuser -u postgres -- "$PGBIN/initdb" -D "$TMP/data" -U postgres --pwfile "$TMP/postgres.password" \
    --auth-local=scram-sha-256 --auth-host=reject --no-sync -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/postgres.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories='$TMP/socket'" start >/dev/null
psql_as() { env PGPASSWORD="$(cat "$TMP/$1.password")" "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TMP/socket" -U "$1" -d "$2" -c "$3"; }
psql_as postgres postgres "CREATE ROLE tunvpn LOGIN PASSWORD '$(cat "$TMP/tunvpn.password")'"
psql_as postgres postgres "CREATE DATABASE tunvpn OWNER tunvpn"

"$BINARY" keygen --out "$TMP/keys" --name server >/dev/null
for ns in "$NS1" "$NS2"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

export BINARY TMP NS1 NS2 PEERS ROUNDS PGBIN
python3 - <<'EOF'
import os, statistics, subprocess, time

B, T, PEERS, ROUNDS = os.environ["BINARY"], os.environ["TMP"], int(os.environ["PEERS"]), int(os.environ["ROUNDS"])
URL = f"postgresql:///tunvpn?host={T}/socket&user=tunvpn"
PGENV = dict(os.environ, PGPASSWORD=open(f"{T}/tunvpn.password").read())

def psql(sql):
    subprocess.run([f"{os.environ['PGBIN']}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", f"{T}/socket",
                    "-U", "tunvpn", "-d", "tunvpn", "-c", sql], env=PGENV, check=True, stdout=subprocess.DEVNULL)

def start(ns, name):
    log = f"{T}/{name}.log"
    out = open(log, "wb")
    began = time.monotonic()
    p = subprocess.Popen(["ip", "netns", "exec", ns, B, "server", "--key", f"{T}/keys/server.key", "--listen",
                          "0.0.0.0:51820", "--address", "10.8.0.1/16", "--no-ipv6", "--no-nat", "--dev", "tun0",
                          "--registry", URL, "--registry-password-file", f"{T}/tunvpn.password",
                          "--registry-cache", f"{T}/cache-{name}", "--log-level", "debug"], stdout=out, stderr=subprocess.STDOUT)
    started.append(p)
    while b"server listening" not in open(log, "rb").read():
        if p.poll() is not None:
            raise SystemExit(f"{name} exited: {open(log).read()}")
        time.sleep(0.005)
    return p, log, time.monotonic() - began

started = []

def memory(pid):
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

def wait_log(log, text, offset, since, timeout=10):
    needle = text.encode()
    while time.monotonic() - since < timeout:
        if needle in open(log, "rb").read()[offset:]:
            return time.monotonic() - since
        time.sleep(0.005)
    return None

try:
    # The schema, made by a first server; then PEERS peers in one statement.
    p, _, _ = start(os.environ["NS1"], "schema")
    p.terminate(); p.wait()
    t = time.monotonic()
    psql(f"""INSERT INTO tunvpn_peers (name, public_key, address4)
             SELECT 'peer' || i, encode(sha256(int4send(i)), 'base64'), '10.8.0.0'::inet + (i + 1)
             FROM generate_series(1, {PEERS}) AS i""")
    print(f"registered {PEERS} peers in {time.monotonic() - t:.2f} s")

    s1, log1, start1 = start(os.environ["NS1"], "s1")
    s2, log2, start2 = start(os.environ["NS2"], "s2")
    time.sleep(2)
    mem1, mem2 = memory(s1.pid), memory(s2.pid)
    print(f"start: S1 {start1:.3f} s, S2 {start2:.3f} s")
    print(f"memory: S1 VmRSS {mem1[0]:.1f} MB (peak {mem1[1]:.1f}), S2 VmRSS {mem2[0]:.1f} MB (peak {mem2[1]:.1f})")

    adds, removes = [], []
    for r in range(ROUNDS):
        for kind, sql, text, into in [
            ("add", f"INSERT INTO tunvpn_peers (name, public_key, address4) VALUES ('bench{r}', encode(sha256(int4send({PEERS + 1 + r})), 'base64'), '10.8.200.{r + 1}')", "1 added", adds),
            ("remove", f"DELETE FROM tunvpn_peers WHERE name = 'bench{r}'", "1 removed", removes),
        ]:
            o1, o2 = len(open(log1, "rb").read()), len(open(log2, "rb").read())
            since = time.monotonic()
            psql(sql)
            a, b = wait_log(log1, text, o1, since), wait_log(log2, text, o2, since)
            if a is None or b is None:
                raise SystemExit(f"round {r}: the {kind} did not reach both servers within 10 s")
            into.append(max(a, b))
            print(f"round {r + 1}: {kind} reached S1 in {a * 1000:.0f} ms, S2 in {b * 1000:.0f} ms", flush=True)
            time.sleep(0.3)
    mem1, mem2 = memory(s1.pid), memory(s2.pid)
    print(f"change to both servers (the later of the two): add median {statistics.median(adds) * 1000:.0f} ms "
          f"(max {max(adds) * 1000:.0f}), remove median {statistics.median(removes) * 1000:.0f} ms (max {max(removes) * 1000:.0f})")
    print(f"memory after the changes: S1 VmRSS {mem1[0]:.1f} MB (peak {mem1[1]:.1f}), S2 VmRSS {mem2[0]:.1f} MB (peak {mem2[1]:.1f})")
    resyncs = [l for l in open(log1).read().splitlines() if "registry resync:" in l]
    print("S1's last resync: " + (resyncs[-1].split("registry resync: ", 1)[1] if resyncs else "none logged"))
finally:
    # Every server started here, by its pid.
    for p in started:
        if p.poll() is None:
            p.terminate(); p.wait()
EOF
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; binary $BINARY ($(git rev-parse --short HEAD))"
