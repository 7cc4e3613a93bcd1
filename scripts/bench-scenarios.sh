#!/usr/bin/env bash
# The scenarios of docs/BENCHMARKS.md ("Scenarios"), each run by `arqon bench` against
# four targets in one run, so every ArqonBus figure sits next to its baselines:
#
#   ws baseline   benches/baseline-ws --rooms --nodelay: a bare tokio-tungstenite server
#                 relaying by room (no auth, no validation, no pipeline, no history)
#   NATS alone    nats-server and NATS clients only (`arqon bench --transport nats`):
#                 one client connection per simulated client, one subscription per room
#   standalone    `arqonbus standalone` on its embedded bus
#   distributed   policy, dispatcher, operators and edge processes on one nats-server
#
# Scenarios: pair echo (50 pairs, 8 in flight each) as fast as it keeps up, and at a fixed
# 20,000 msg/s; fan-out 1 -> 1,000 through the publisher's own connection; 10,000
# connects (JWT verified per connection, except on the baselines). Each scenario also
# reports the CPU the target's processes used (user + system, from /proc: every service
# process and the nats-server for distributed), per delivered message.
#
# Usage: scripts/bench-scenarios.sh [--quick]
#   --quick  3 s of traffic and 2,000 connects instead of 10 s and 10,000.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
connects=10000
if [ "${1:-}" = "--quick" ]; then
  seconds=3
  connects=2000
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source scripts/lib/bench.sh
build_release

# CPU seconds (user + system) the processes $server_pids have used so far, in all.
server_cpu() {
  local ticks=0 pid fields
  for pid in $server_pids; do
    # Fields 14 and 15 of /proc/<pid>/stat, counted after the command name's ")".
    fields="$(sed 's/.*) //' "/proc/$pid/stat")"
    ticks=$((ticks + $(awk '{print $12 + $13}' <<<"$fields")))
  done
  python3 -c "import os, sys; print(int(sys.argv[1]) / os.sysconf('SC_CLK_TCK'))" "$ticks"
}

# Runs one scenario: `arqon bench` with the arguments after the first two, writing
# $work/<target>-<scenario>.json, and the CPU the server's processes ($server_pids) used
# meanwhile to $work/<target>-<scenario>.cpu.
scenario() {
  local target="$1" name="$2" before
  shift 2
  before="$(server_cpu)"
  bench "$@" >"$work/$target-$name.json"
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" \
    "$before" "$(server_cpu)" >"$work/$target-$name.cpu"
}

# Runs every scenario with `arqon bench` and the given target arguments.
scenarios() {
  local target="$1"
  shift
  scenario "$target" pairs "$@" --pattern pairs -n 100 --in-flight 8 --window 8 \
    --duration "$seconds"
  scenario "$target" pairs-20k "$@" --pattern pairs -n 100 --in-flight 8 --rate 20000 \
    --duration "$seconds"
  scenario "$target" fanout "$@" --pattern one-room -n 1001 --publishers 1 --window 16 \
    --duration "$seconds"
  scenario "$target" connects "$@" -n "$connects" --channels 0 --connect-concurrency 128 \
    --duration 0
}

echo "== ws baseline"
read -r pid addr < <(start_baseline --rooms --nodelay)
server_pids="$pid"
scenarios ws --ws-url "ws://$addr/ws"
stop "$pid"

echo "== NATS alone"
start_nats
server_pids="$nats_pid"
scenarios nats --transport nats --nats-url "$nats_url"

echo "== standalone"
read -r pid addr _ < <(start_arqonbus standalone)
server_pids="$pid"
scenarios standalone --ws-url "ws://$addr/ws" --secret "$secret"
stop "$pid"

echo "== distributed: policy, dispatcher, operators, edge on nats-server"
start_nats
pids=()
start_services
read -r p addr _ < <(start_arqonbus edge ARQONBUS_NATS_URL="$nats_url")
pids+=("$p")
server_pids="${pids[*]} $nats_pid"
scenarios distributed --ws-url "ws://$addr/ws" --secret "$secret"
for p in "${pids[@]}"; do stop "$p"; done

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
load = lambda target, scenario: json.load(open(os.path.join(work, f"{target}-{scenario}.json")))
server_cpu = lambda target, scenario: float(open(os.path.join(work, f"{target}-{scenario}.cpu")).read())
targets = [("ws", "ws baseline"), ("nats", "NATS alone"), ("standalone", "standalone"),
           ("distributed", "distributed (4 processes)")]

def row(label, value, base_ws, base_nats, fmt):
    ratio = lambda b: f"{value / b:.2f}" if b else "—"
    return f"| {label} | {fmt(value)} | {ratio(base_ws)} | {ratio(base_nats)} |"

def table(title, scenario, figures):
    print(f"\n### {title}\n")
    for name, pick, fmt in figures:
        print(f"| {name} | value | × ws baseline | × NATS alone |")
        print("|---|---:|---:|---:|")
        ws, nats = pick(load("ws", scenario)), pick(load("nats", scenario))
        for target, label in targets:
            print(row(label, pick(load(target, scenario)), ws, nats, fmt))
        print()

rate = lambda r: f"{r:,.0f} /s"
ms = lambda v: f"{v / 1000:.2f} ms"
traffic = lambda key: lambda report: report["traffic"][key]
latency = lambda key: lambda report: report["traffic"]["latency_us"][key]
for scenario, title, throughput in [
    ("pairs", "Pair echo: 50 pairs, 8 in flight each, as fast as it keeps up", "messages_per_second"),
    ("pairs-20k", "Pair echo at a fixed 20,000 msg/s", "messages_per_second"),
    ("fanout", "Fan-out 1 → 1,000, publisher on its own connection, window 16", "deliveries_per_second"),
]:
    table(title, scenario, [
        (throughput.replace("_", " "), traffic(throughput), rate),
        ("p50", latency("p50"), ms),
        ("p99", latency("p99"), ms),
    ])
    for target, label in targets:
        r = load(target, scenario)
        cpu = server_cpu(target, scenario)
        print(f"- {label}: {r['traffic']['delivered']:,} of {r['traffic']['expected_deliveries']:,} "
              f"delivered ({r['traffic']['lost']} lost, {r['traffic']['errors']} errors), "
              f"server CPU {cpu:.2f} s, {cpu * 1e6 / max(r['traffic']['delivered'], 1):.1f} µs "
              f"per delivery, client CPU {r['client_cpu']['cores']:.2f} cores")
table("Connects", "connects", [("connections per second", lambda r: r["connections"]["per_second"], rate)])
for target, label in targets:
    r = load(target, "connects")
    print(f"- {label}: {r['connections']['done']:,} established, {r['connections']['failed']} failed, "
          f"client CPU {r['client_cpu']['cores']:.2f} cores")
PY
