#!/usr/bin/env bash
# The cost of tracing, in one run: the four services as processes on one nats-server
# (history on) with tracing off, on at a sampling ratio of 0.01, and on at 1.0, exporting
# over OTLP/gRPC to a receiver that counts spans (crates/testkit/examples/otlp_sink.rs),
# alternating round by round. Scenarios: pair echo as fast as it keeps up, and fan-out
# 1 -> 1,000 from a publisher on a connection. Prints medians and ratios to "off".
#
# Usage: scripts/bench-traces.sh [ROUNDS]   (ROUNDS: 3)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
seconds=10
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source scripts/lib/bench.sh
build_release
cargo build --release --quiet -p arqon-testkit --example otlp_sink

# The receiver runs until its standard input (fd 3 here) is closed.
mkfifo "$work/sink.in"
target/release/examples/otlp_sink <"$work/sink.in" >"$work/sink.out" 2>&1 &
track $!
exec 3>"$work/sink.in"
for _ in $(seq 1 100); do
  grep -q '^listening' "$work/sink.out" && break
  sleep 0.1
done
endpoint="$(sed -n 's/^listening //p' "$work/sink.out")"
[ -n "$endpoint" ] || { cat "$work/sink.out" >&2; exit 1; }

# One round in mode $1 (off, 0.01, 1.0).
round() {
  local mode="$1" n="$2"
  local tracing=()
  if [ "$mode" != off ]; then
    tracing=(OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" OTEL_TRACES_SAMPLER_ARG="$mode")
  fi
  start_nats
  local pids=() p addr
  start_services "${tracing[@]}"
  read -r p addr _ < <(start_arqonbus edge ARQONBUS_NATS_URL="$nats_url" "${tracing[@]}")
  pids+=("$p")
  local common=(--ws-url "ws://$addr/ws" --secret "$secret" --duration "$seconds")
  bench "${common[@]}" --pattern pairs -n 100 --in-flight 8 --window 8 >"$work/$mode-$n-pairs.json"
  bench "${common[@]}" --pattern one-room -n 1001 --publishers 1 --window 16 >"$work/$mode-$n-fanout.json"
  for p in "${pids[@]}"; do stop "$p"; done
  stop_nats
}

for n in $(seq 1 "$rounds"); do
  for mode in off 0.01 1.0; do
    echo "== round $n: tracing $mode"
    round "$mode" "$n"
  done
done
exec 3>&-
for _ in $(seq 1 50); do
  grep -q '^spans' "$work/sink.out" && break
  sleep 0.1
done
spans="$(sed -n 's/^spans //p' "$work/sink.out")"

python3 - "$work" "$rounds" "$spans" <<'PY'
import json, os, statistics, sys
work, rounds, spans = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def median(mode, scenario, pick):
    return statistics.median(pick(json.load(open(os.path.join(work, f"{mode}-{n}-{scenario}.json"))))
                             for n in range(1, rounds + 1))
traffic = lambda key: lambda r: r["traffic"][key]
latency = lambda key: lambda r: r["traffic"]["latency_us"][key] / 1000
print(f"\nmedian of {rounds} alternating rounds; {spans} spans received in all\n")
print("| scenario | off | ratio 0.01 | × off | ratio 1.0 | × off |")
print("|---|---:|---:|---:|---:|---:|")
for scenario, label, rows in [
    ("pairs", "pair echo, 50 pairs, 8 in flight", [("msgs/s", traffic("messages_per_second"), "{:,.0f}"),
                                                   ("p99 ms", latency("p99"), "{:.2f}")]),
    ("fanout", "fan-out 1 → 1,000, window 16", [("deliveries/s", traffic("deliveries_per_second"), "{:,.0f}"),
                                               ("p99 ms", latency("p99"), "{:.2f}")]),
]:
    for name, pick, fmt in rows:
        off, low, full = (median(m, scenario, pick) for m in ("off", "0.01", "1.0"))
        print(f"| {label}: {name} | {fmt.format(off)} | {fmt.format(low)} | {low / off:.2f} | {fmt.format(full)} | {full / off:.2f} |")
for mode in ("off", "0.01", "1.0"):
    runs = [json.load(open(os.path.join(work, f"{mode}-{n}-{s}.json")))["traffic"]
            for n in range(1, rounds + 1) for s in ("pairs", "fanout")]
    print(f"- {mode}: {sum(r['lost'] for r in runs)} lost, {sum(r['errors'] for r in runs)} errors")
PY
