#!/usr/bin/env bash
# Pipeline benchmarks (docs/BENCHMARKS.md): messages per second and latency through the
# whole pipeline (edge -> policy -> dispatcher -> edge), with history on and off, in one
# process on the embedded bus and as separate processes on nats-server. The baseline,
# measured in the same run, is the bare tokio-tungstenite server relaying by room, with
# TCP_NODELAY as the edge (benches/baseline-ws --rooms --nodelay): no authentication,
# validation, pipeline or history.
#
# Load: `arqon bench --pattern pairs`: connections in pairs, each in its own room, each
# publishing to its partner through its WebSocket.
#
# Usage: scripts/bench-pipeline.sh [--quick]
#   --quick  3 s of traffic per run instead of 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
[ "${1:-}" = "--quick" ] && seconds=3
connections=200
rates="5000 20000"
source scripts/lib/bench.sh
build_release

echo "== baseline: bare tokio-tungstenite relaying by room"
read -r pid addr < <(start_baseline --rooms --nodelay)
pairs_loads "$addr" baseline
stop "$pid"

for history in true false; do
  echo "== standalone on the embedded bus, history $history"
  read -r pid addr _ < <(start_arqonbus standalone ARQONBUS_ENABLE_PERSISTENCE="$history")
  pairs_loads "$addr" "standalone-history-$history" --secret "$secret"
  stop "$pid"

  echo "== policy, dispatcher, edge as processes on nats-server, history $history"
  start_nats
  service=(ARQONBUS_NATS_URL="$nats_url" ARQONBUS_ENABLE_PERSISTENCE="$history")
  read -r policy _ < <(start_arqonbus policy "${service[@]}")
  read -r dispatcher _ < <(start_arqonbus dispatcher "${service[@]}")
  read -r edge addr _ < <(start_arqonbus edge "${service[@]}")
  pairs_loads "$addr" "distributed-history-$history" --secret "$secret"
  for p in "$edge" "$dispatcher" "$policy"; do stop "$p"; done
done

python3 - "$work" $rates <<'PY'
import json, os, sys
work, rates = sys.argv[1], sys.argv[2:]
load = lambda name: json.load(open(os.path.join(work, name)))["traffic"]
runs = [
    ("baseline", "bare tokio-tungstenite, rooms"),
    ("standalone-history-true", "standalone, history on"),
    ("standalone-history-false", "standalone, history off"),
    ("distributed-history-true", "3 processes on NATS, history on"),
    ("distributed-history-false", "3 processes on NATS, history off"),
]
for kind, title in [("max", "as fast as it keeps up")] + [(f"rate{r}", f"fixed {r} msg/s") for r in rates]:
    base = load(f"baseline-{kind}.json")
    print(f"\n### {title}\n")
    print("| run | msgs/s | ratio | p50 ms | ratio | p99 ms | ratio | lost |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label in runs:
        t = load(f"{name}-{kind}.json")
        p50, p99 = t["latency_us"]["p50"] / 1000, t["latency_us"]["p99"] / 1000
        b50, b99 = base["latency_us"]["p50"] / 1000, base["latency_us"]["p99"] / 1000
        print(f"| {label} | {t['deliveries_per_second']:,.0f} | {t['deliveries_per_second'] / base['deliveries_per_second']:.2f} "
              f"| {p50:.2f} | {p50 / b50:.2f} | {p99:.2f} | {p99 / b99:.2f} | {t['lost']} |")
print()
for name in sorted(os.listdir(work)):
    if name.endswith(".json"):
        print(f"{name}: client CPU {json.load(open(os.path.join(work, name)))['client_cpu']['cores']:.2f} cores")
PY
