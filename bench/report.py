#!/usr/bin/env python3
"""Parsing and reporting for bench/run.sh (standard library only).

  report.py tcp FILE        iperf3 --json TCP result  -> "bits_per_second bytes retransmits"
  report.py udp FILE        iperf3 --json UDP result  -> "delivered_bps delivered_pps lost_percent"
  report.py ping FILE       ping output               -> "median_ms p99_ms received"
  report.py summarize RAW META   per-round results (TSV: round variant metric value) -> Markdown on stdout
  report.py compare RAW A B      an A/B run's tunvpn (A) and tunvpnb (B) -> Markdown table of medians, B / A
  report.py write-section RESULTS SECTION_FILE   replace (or append) run.sh's section of RESULTS.md
  report.py wgmode RAW META      bench/wgmode.sh's per-round results -> Markdown on stdout

Every parse failure is one line on stderr and exit status 1, so run.sh can say which test failed.
"""

import json
import math
import re
import statistics
import sys

# wgnew: bookworm-backports' wireguard-go (with offloads), wggo: the system's (bookworm) wireguard-go.
VARIANTS = [("tunvpn", "tunvpn"), ("wgnew", "wireguard-go (backports)"), ("wggo", "wireguard-go (bookworm)"),
            ("veth", "veth")]

# key, label, unit, which way is better ("up" or "down"), decimals
METRICS = [
    ("tcp_up", "TCP 1 stream C→H", "Gbit/s", "up", 2),
    ("tcp_down", "TCP 1 stream H→C (-R)", "Gbit/s", "up", 2),
    ("tcp_p4", "TCP 4 streams C→H (-P 4)", "Gbit/s", "up", 2),
    ("udp_pps", "UDP 1392 B at -b 0: delivered", "kpackets/s", "up", 1),
    ("udp_loss", "UDP 1392 B at -b 0: loss", "%", "down", 1),
    ("udp_sweep", "UDP 1392 B: best rate with <1% loss", "Mbit/s", "up", 0),
    ("rtt_med", "ping RTT C→H, median", "ms", "down", 3),
    ("rtt_p99", "ping RTT C→H, p99", "ms", "down", 3),
    ("rtt_added", "added RTT (median − veth median)", "ms", "down", 3),
    ("cpu_per_gb", "VPN CPU (both ends) per GB, TCP tests", "CPU-s/GB", "down", 2),
    ("rss_client", "peak RSS (VmHWM), client", "MB", "down", 1),
    ("rss_server", "peak RSS (VmHWM), server", "MB", "down", 1),
    ("tcp_up_retr", "TCP C→H retransmits (info)", "segments", "down", 0),
    ("tcp_down_retr", "TCP H→C retransmits (info)", "segments", "down", 0),
]

BEGIN = "<!-- bench/run.sh: begin (this section is replaced on every default run) -->"
END = "<!-- bench/run.sh: end -->"


def fail(message):
    print(f"report.py: {message}", file=sys.stderr)
    sys.exit(1)


def load_iperf(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: not iperf3 JSON ({e})")
    if data.get("error"):
        fail(f"{path}: iperf3 error: {data['error']}")
    end = data.get("end") or {}
    if "sum_received" not in end:
        fail(f"{path}: iperf3 JSON has no end.sum_received")
    return end


def cmd_tcp(path):
    end = load_iperf(path)
    received = end["sum_received"]
    retransmits = (end.get("sum_sent") or {}).get("retransmits", 0)
    print(f"{received['bits_per_second']:.0f} {received['bytes']} {retransmits}")


def cmd_udp(path):
    end = load_iperf(path)
    r = end["sum_received"]
    seconds = r.get("seconds") or 0
    if seconds <= 0:
        fail(f"{path}: UDP result lasted 0 s")
    delivered = r["packets"] - r["lost_packets"]
    print(f"{r['bits_per_second']:.0f} {delivered / seconds:.0f} {r['lost_percent']:.3f}")


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def cmd_ping(path):
    with open(path) as f:
        times = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", f.read()))
    if len(times) < 10:
        fail(f"{path}: only {len(times)} ping replies")
    print(f"{statistics.median(times):.4f} {percentile(times, 99):.4f} {len(times)}")


def fmt(value, decimals):
    if value is None:
        return "—"
    return f"{value:,.{decimals}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def read_raw(raw_path):
    """The per-round results run.sh and wgmode.sh record (TSV: round variant metric value): the values of
    each (variant, metric) in round order, and the set of rounds."""
    values = {}
    rounds = set()
    with open(raw_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            rnd, variant, metric, value = parts
            rounds.add(rnd)
            values.setdefault((variant, metric), []).append(float(value))
    return values, rounds


def cmd_summarize(raw_path, meta_path):
    with open(meta_path) as f:
        meta = json.load(f)
    values, rounds = read_raw(raw_path)
    n_rounds = len(rounds)

    def med(variant, metric):
        v = values.get((variant, metric))
        return statistics.median(v) if v else None

    # Derived: the latency a tunnel adds over bare veth, from the medians.
    veth_rtt = med("veth", "rtt_med")
    for variant, _ in VARIANTS:
        rtt = med(variant, "rtt_med")
        if rtt is not None and veth_rtt is not None:
            values[(variant, "rtt_added")] = [rtt - veth_rtt]

    out = []
    out.append(f"### {meta['date']}: {meta['mode']} run, {n_rounds} round(s)")
    out.append("")
    out.append(f"- Command: `{meta['command']}`")
    out.append(f"- Machine: {meta['nproc']} CPUs ({meta['cpu']}), kernel {meta['kernel']}; "
               f"load average at start {meta['load_start']}, at end {meta['load_end']}")
    out.append(f"- Versions: tunvpn `{meta['tunvpn_version']}`; wireguard-go (backports): "
               f"{meta.get('wireguard_go_modern_version', '—')}; wireguard-go (bookworm): "
               f"{meta['wireguard_go_version']}; {meta['iperf3_version']}")
    out.append(f"- Settings: {meta['settings']}")
    out.append(f"- Run time: {meta['elapsed']}")
    out.append("")
    out.append("Medians across rounds. Ratios above 1 mean the first is larger: better for rows marked ↑, "
               "worse for rows marked ↓.")
    out.append("")
    out.append("| metric | unit | tunvpn | wireguard-go (backports) | wireguard-go (bookworm) | veth "
               "| tunvpn / wg-go backports | tunvpn / wg-go bookworm | tunvpn / veth | wg-go backports / veth |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for key, label, unit, better, decimals in METRICS:
        scale = 1e-3 if key == "udp_pps" else 1
        meds = {}
        cells = []
        for variant, _ in VARIANTS:
            m = med(variant, key)
            meds[variant] = None if m is None else m * scale
            got = len(values.get((variant, key), []))
            partial = f" ({got}/{n_rounds})" if 0 < got < n_rounds and key != "rtt_added" else ""
            cells.append(fmt(meds[variant], decimals) + partial)
        arrow = "↑" if better == "up" else "↓"
        # Against veth only where veth has a meaningful figure (it has no VPN process, and ~no loss).
        vs_veth = key in ("tcp_up", "tcp_down", "tcp_p4", "udp_pps", "udp_sweep", "rtt_med", "rtt_p99")
        out.append(
            f"| {label} {arrow} | {unit} | " + " | ".join(cells) + " | "
            + ratio(meds["tunvpn"], meds["wgnew"]) + " | "
            + ratio(meds["tunvpn"], meds["wggo"]) + " | "
            + (ratio(meds["tunvpn"], meds["veth"]) if vs_veth else "—") + " | "
            + (ratio(meds["wgnew"], meds["veth"]) if vs_veth else "—") + " |")
    out.append("")
    out.append("<details><summary>Every round</summary>")
    out.append("")
    out.append("| metric | " + " | ".join(label for _, label in VARIANTS) + " |")
    out.append("|---|" + "---|" * len(VARIANTS))
    for key, label, unit, _, decimals in METRICS:
        if key == "rtt_added":
            continue
        scale = 1e-3 if key == "udp_pps" else 1
        cells = []
        for variant, _ in VARIANTS:
            v = values.get((variant, key))
            cells.append(" · ".join(fmt(x * scale, decimals) for x in v) if v else "—")
        out.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    out.append("")
    out.append("</details>")
    failures = meta.get("failures") or []
    if failures:
        out.append("")
        out.append("Failures during the run:")
        out.extend(f"- {f}" for f in failures)
    print("\n".join(out))


# An A/B run's extra figures: CPU per GB per direction and of the server alone (run.sh records them).
COMPARE_METRICS = METRICS[:3] + [
    ("cpu_up_per_gb", "VPN CPU (both ends) per GB, TCP C→H", "CPU-s/GB", "down", 3),
    ("cpu_down_per_gb", "VPN CPU (both ends) per GB, TCP H→C", "CPU-s/GB", "down", 3),
    ("cpu_server_per_gb", "server's CPU per GB, TCP tests", "CPU-s/GB", "down", 3),
] + [m for m in METRICS[3:] if m[0] != "rtt_added"]


def cmd_compare(raw_path, a_path, b_path):
    values, _ = read_raw(raw_path)
    out = ["", f"A/B: A `{a_path}`, B `{b_path}`; medians, B / A, and every round (A · B alternate in order).", "",
           "| metric | unit | A | B | B / A | A rounds | B rounds |", "|---|---|--:|--:|--:|---|---|"]
    for key, label, unit, better, decimals in COMPARE_METRICS:
        a, b = values.get(("tunvpn", key)), values.get(("tunvpnb", key))
        if not a and not b:
            continue
        scale = 1e-3 if key == "udp_pps" else 1
        ma = statistics.median(a) * scale if a else None
        mb = statistics.median(b) * scale if b else None
        arrow = "↑" if better == "up" else "↓"
        rounds = lambda v: " · ".join(fmt(x * scale, decimals) for x in v) if v else "—"
        out.append(f"| {label} {arrow} | {unit} | {fmt(ma, decimals)} | {fmt(mb, decimals)} "
                   f"| {'—' if not ma or mb is None else f'{mb / ma:.3f}×'} "
                   f"| {rounds(a)} | {rounds(b)} |")
    print("\n".join(out))


def cmd_write_section(results_path, section_path):
    with open(section_path) as f:
        section = f.read().rstrip("\n")
    block = f"{BEGIN}\n{section}\n{END}"
    try:
        with open(results_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ("# tunvpn benchmark results\n\n"
                "Written by `bench/run.sh` (see bench/README.md). Notes below the generated section are kept.\n")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(results_path, "w") as f:
        f.write(text)


# bench/wgmode.sh: tunvpn in each protocol mode, mixed with wireguard-go, and wireguard-go alone.
WGMODE_VARIANTS = [("tunvpn", "tunvpn ⇄ tunvpn, tunvpn mode"), ("tvwg", "tunvpn ⇄ tunvpn, WireGuard mode"),
                   ("tv-wg", "tunvpn client (WG mode) ⇄ wireguard-go server"),
                   ("wg-tv", "wireguard-go client ⇄ tunvpn server (WG mode)"),
                   ("wgnew", "wireguard-go ⇄ wireguard-go (backports)")]
WGMODE_METRICS = [m for m in METRICS if m[0] in ("tcp_up", "tcp_down", "cpu_per_gb", "tcp_up_retr", "tcp_down_retr")]
# (numerator, denominator): WireGuard mode against tunvpn mode, and every tunvpn pair against wireguard-go's.
WGMODE_RATIOS = [("tvwg", "tunvpn"), ("tvwg", "wgnew"), ("tv-wg", "wgnew"), ("wg-tv", "wgnew"), ("tunvpn", "wgnew")]


def cmd_wgmode(raw_path, meta_path):
    with open(meta_path) as f:
        meta = json.load(f)
    values, rounds = read_raw(raw_path)
    present = [(v, label) for v, label in WGMODE_VARIANTS if any(k[0] == v for k in values)]

    def med(variant, metric):
        v = values.get((variant, metric))
        return statistics.median(v) if v else None

    out = [f"### {meta['date']}: bench/wgmode.sh, {len(rounds)} round(s)", "",
           f"- Command: `{meta['command']}`",
           f"- Machine: {meta['nproc']} CPUs ({meta['cpu']}), kernel {meta['kernel']}; "
           f"load average at start {meta['load_start']}, at end {meta['load_end']}",
           f"- Versions: tunvpn `{meta['tunvpn_version']}`; wireguard-go {meta['wireguard_go_modern_version']}; "
           f"{meta['iperf3_version']}",
           f"- Settings: {meta['settings']}", f"- Run time: {meta['elapsed']}", "",
           "Medians across rounds; ↑ better higher, ↓ better lower. Variants: "
           + "; ".join(f"**{v}** {label}" for v, label in present) + ".", ""]
    ratios = [(a, b) for a, b in WGMODE_RATIOS if any(v == a for v, _ in present) and any(v == b for v, _ in present)]
    out.append("| metric | unit | " + " | ".join(v for v, _ in present) + " | "
               + " | ".join(f"{a} / {b}" for a, b in ratios) + " |")
    out.append("|---|---|" + "--:|" * (len(present) + len(ratios)))
    for key, label, unit, better, decimals in WGMODE_METRICS:
        arrow = "↑" if better == "up" else "↓"
        cells = []
        for v, _ in present:
            got = values.get((v, key), [])
            partial = f" ({len(got)}/{len(rounds)})" if 0 < len(got) < len(rounds) else ""
            cells.append(fmt(med(v, key), decimals) + partial)
        out.append(f"| {label} {arrow} | {unit} | " + " | ".join(cells) + " | "
                   + " | ".join(ratio(med(a, key), med(b, key)) for a, b in ratios) + " |")
    out += ["", "Every round:", "", "| metric | " + " | ".join(v for v, _ in present) + " |",
            "|---|" + "---|" * len(present)]
    for key, label, unit, _, decimals in WGMODE_METRICS:
        out.append(f"| {label} ({unit}) | " + " | ".join(
            " · ".join(fmt(x, decimals) for x in values.get((v, key), [])) or "—" for v, _ in present) + " |")
    failures = meta.get("failures") or []
    if failures:
        out += ["", "Failures during the run:"] + [f"- {f}" for f in failures]
    print("\n".join(out))


def main(argv):
    commands = {"tcp": (cmd_tcp, 1), "udp": (cmd_udp, 1), "ping": (cmd_ping, 1),
                "summarize": (cmd_summarize, 2), "compare": (cmd_compare, 3), "write-section": (cmd_write_section, 2),
                "wgmode": (cmd_wgmode, 2)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        fail("usage: report.py {tcp|udp|ping} FILE | summarize RAW META | compare RAW A B | write-section RESULTS SECTION | wgmode RAW META")
    fn, _ = commands[argv[1]]
    fn(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
