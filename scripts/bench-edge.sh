#!/usr/bin/env bash
# Edge benchmarks (docs/BENCHMARKS.md): memory per idle connection, upgrades per second
# with JWT verification, and fan-out from one subject to 1,000 local sockets. Each
# ArqonBus figure is measured next to the bare tokio-tungstenite baseline
# (benches/baseline-ws) in the same run.
#
# Usage: scripts/bench-edge.sh [--quick]
#   --quick  1,000 connections and 3 s of traffic instead of 10,000 and 10 s.
# Needs: release builds (done here), nats-server (scripts/install-nats.sh), and an
# open-files limit of at least 12,000 (ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=10000
seconds=10
if [ "${1:-}" = "--quick" ]; then
  connections=1000
  seconds=3
fi
source scripts/lib/bench.sh
build_release

# Starts arqonbus standalone (on NATS when $1 is a URL); prints "pid ws-address".
start_bus() {
  if [ -n "${1:-}" ]; then
    start_arqonbus standalone ARQONBUS_NATS_URL="$1"
  else
    start_arqonbus standalone
  fi
}

echo "== memory per idle connection: $connections connections, 2 channels each"
read -r pid addr _ < <(start_bus)
bench --ws-url "ws://$addr/ws" --secret "$secret" -n "$connections" --channels 2 \
  --pattern rooms --room-size 100 --duration 0 --hold 2 --server-pid "$pid" >"$work/mem-bus.json"
stop "$pid"
read -r pid addr < <(start_baseline)
bench --ws-url "ws://$addr/ws" -n "$connections" --channels 2 --pattern rooms --room-size 100 \
  --duration 0 --hold 2 --server-pid "$pid" >"$work/mem-base.json"
stop "$pid"

echo "== upgrades per second (JWT verified per connection), best of 3"
for i in 1 2 3; do
  read -r pid addr _ < <(start_bus)
  bench --ws-url "ws://$addr/ws" --secret "$secret" -n "$connections" --channels 0 \
    --connect-concurrency 128 --duration 0 >"$work/connect-bus-$i.json"
  stop "$pid"
  read -r pid addr < <(start_baseline)
  bench --ws-url "ws://$addr/ws" -n "$connections" --channels 0 --connect-concurrency 128 \
    --duration 0 >"$work/connect-base-$i.json"
  stop "$pid"
done

echo "== fan-out: 1 publisher to 1,000 sockets in one room, 64-byte payloads, ${seconds}s per run"
# "window N": as fast as deliveries keep up with at most N messages on their way;
# "rate R": R messages per second, open loop.
start_nats
read -r pid addr _ < <(start_bus "$nats_url")
for load in "--window 16" "--window 64" "--rate 500" "--rate 1000"; do
  name="fanout-nats-$(echo "$load" | tr -d ' -')"
  # shellcheck disable=SC2086
  bench --ws-url "ws://$addr/ws" --secret "$secret" -n 1000 --pattern one-room --via nats \
    --nats-url "$nats_url" $load --duration "$seconds" >"$work/$name.json"
done
stop "$pid"
read -r pid addr _ < <(start_bus)
bench --ws-url "ws://$addr/ws" --secret "$secret" -n 1000 --pattern one-room --window 16 \
  --duration "$seconds" >"$work/fanout-ws-window16.json"
stop "$pid"
read -r pid addr < <(start_baseline)
for load in "--window 16" "--window 64" "--rate 500" "--rate 1000"; do
  name="fanout-base-$(echo "$load" | tr -d ' -')"
  # shellcheck disable=SC2086
  bench --ws-url "ws://$addr/ws" -n 1000 --pattern one-room $load --duration "$seconds" \
    >"$work/$name.json"
done
stop "$pid"

python3 - "$work" <<'PY'
import json, sys, glob, os
work = sys.argv[1]
load = lambda name: json.load(open(os.path.join(work, name)))
def best(prefix):
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(work, prefix + "-*.json")))]
    return max(runs, key=lambda r: r["connections"]["per_second"])
mem_bus, mem_base = load("mem-bus.json"), load("mem-base.json")
con_bus, con_base = best("connect-bus"), best("connect-base")
rows = []
def row(what, bus, base, unit, fmt="{:.0f}"):
    ratio = bus / base if base else float("nan")
    rows.append((what, fmt.format(bus) + " " + unit, fmt.format(base) + " " + unit, "{:.2f}".format(ratio)))
row("RSS per idle connection (2 channels)", mem_bus["memory"]["per_connection_kib"], mem_base["memory"]["per_connection_kib"], "KiB", "{:.1f}")
row("upgrades per second", con_bus["connections"]["per_second"], con_base["connections"]["per_second"], "/s")
for name, base_name, label in [
    ("fanout-nats-window16.json", "fanout-base-window16.json", "fan-out, window 16, edge only (NATS subject)"),
    ("fanout-nats-window64.json", "fanout-base-window64.json", "fan-out, window 64, edge only"),
    ("fanout-ws-window16.json", "fanout-base-window16.json", "fan-out, window 16, full pipeline (WebSocket publisher)"),
    ("fanout-nats-rate500.json", "fanout-base-rate500.json", "fan-out, 500 msg/s, edge only"),
    ("fanout-nats-rate1000.json", "fanout-base-rate1000.json", "fan-out, 1000 msg/s, edge only"),
]:
    t, b = load(name)["traffic"], load(base_name)["traffic"]
    row(label + ": deliveries/s", t["deliveries_per_second"], b["deliveries_per_second"], "/s")
    row(label + ": p50 latency", t["latency_us"]["p50"], b["latency_us"]["p50"], "µs")
    row(label + ": p99 latency", t["latency_us"]["p99"], b["latency_us"]["p99"], "µs")
    rows.append((label + ": lost", str(t["lost"]), str(b["lost"]), ""))
print()
print("| measure | ArqonBus | baseline (bare tokio-tungstenite) | ratio |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
for name in sorted(os.listdir(work)):
    if name.endswith(".json"):
        r = load(name)
        print(f"{name}: client CPU {r['client_cpu']['cores']:.2f} cores")
PY
