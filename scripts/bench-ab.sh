#!/usr/bin/env bash
# A/B of two builds of the bus on the distributed pipeline: the working tree (B) against a
# git revision (A), alternating round by round, so both see the same machine. Each round
# starts policy, dispatcher, operators and edge on a fresh nats-server (history on) and
# runs the pipeline scenarios of bench-scenarios.sh: pair echo as fast as it keeps up,
# pair echo at a fixed 20,000 msg/s, and fan-out 1 -> 1,000 from a publisher on a
# connection. Prints the median of each figure for A and B and the ratio B/A.
#
# Usage: scripts/bench-ab.sh REV [ROUNDS]   (REV: the baseline, e.g. HEAD~1; ROUNDS: 3)
# The baseline is built in a temporary worktree, with its own target directory
# (target/ab, kept for the next run).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

rev="${1:?usage: scripts/bench-ab.sh REV [ROUNDS]}"
rounds="${2:-3}"
seconds=10
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source scripts/lib/bench.sh
trap 'git -C "$root" worktree remove --force "$work/baseline" 2>/dev/null || true; cleanup' EXIT

echo "== building the baseline ($rev) and the working tree"
git worktree add --detach "$work/baseline" "$rev" >/dev/null 2>&1
(cd "$work/baseline" && cargo build --release --quiet --locked -p arqonbus --target-dir "$root/target/ab")
cp "$root/target/ab/release/arqonbus" "$work/arqonbus-a"
build_release
cp "$bin/arqonbus" "$work/arqonbus-b"

# One round against build $1 (a or b): the four services on a fresh nats-server.
round() {
  local build="$1" n="$2"
  start_nats
  local pids=() p addr
  arqonbus_bin="$work/arqonbus-$build"
  start_services
  read -r p addr _ < <(start_arqonbus edge ARQONBUS_NATS_URL="$nats_url")
  pids+=("$p")
  local common=(--ws-url "ws://$addr/ws" --secret "$secret" --duration "$seconds")
  bench "${common[@]}" --pattern pairs -n 100 --in-flight 8 --window 8 >"$work/$build-$n-pairs.json"
  bench "${common[@]}" --pattern pairs -n 100 --in-flight 8 --rate 20000 >"$work/$build-$n-pairs-20k.json"
  bench "${common[@]}" --pattern one-room -n 1001 --publishers 1 --window 16 >"$work/$build-$n-fanout.json"
  for p in "${pids[@]}"; do stop "$p"; done
  stop_nats
}

for n in $(seq 1 "$rounds"); do
  for build in a b; do
    echo "== round $n: $build"
    round "$build" "$n"
  done
done

python3 - "$work" "$rounds" "$rev" <<'PY'
import json, os, statistics, sys
work, rounds, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def figures(build, scenario, pick):
    return [pick(json.load(open(os.path.join(work, f"{build}-{n}-{scenario}.json"))))
            for n in range(1, rounds + 1)]
traffic = lambda key: lambda r: r["traffic"][key]
latency = lambda key: lambda r: r["traffic"]["latency_us"][key] / 1000
print(f"\nA = {rev}, B = the working tree; median of {rounds} alternating rounds\n")
print("| scenario | A | B | B / A |")
print("|---|---:|---:|---:|")
for scenario, label, rows in [
    ("pairs", "pair echo, 50 pairs, 8 in flight", [("msgs/s", traffic("messages_per_second"), "{:,.0f}"),
                                                   ("p50 ms", latency("p50"), "{:.2f}"), ("p99 ms", latency("p99"), "{:.2f}")]),
    ("pairs-20k", "pair echo at 20,000 msg/s", [("p50 ms", latency("p50"), "{:.2f}"), ("p99 ms", latency("p99"), "{:.2f}")]),
    ("fanout", "fan-out 1 → 1,000, window 16", [("deliveries/s", traffic("deliveries_per_second"), "{:,.0f}"),
                                               ("p50 ms", latency("p50"), "{:.2f}"), ("p99 ms", latency("p99"), "{:.2f}")]),
]:
    for name, pick, fmt in rows:
        a = statistics.median(figures("a", scenario, pick))
        b = statistics.median(figures("b", scenario, pick))
        print(f"| {label}: {name} | {fmt.format(a)} | {fmt.format(b)} | {b / a:.2f} |")
for build in "ab":
    lost = sum(json.load(open(os.path.join(work, f"{build}-{n}-{s}.json")))["traffic"]["lost"]
               for n in range(1, rounds + 1) for s in ("pairs", "pairs-20k", "fanout"))
    errors = sum(json.load(open(os.path.join(work, f"{build}-{n}-{s}.json")))["traffic"]["errors"]
                 for n in range(1, rounds + 1) for s in ("pairs", "pairs-20k", "fanout"))
    print(f"- {build.upper()}: {lost} lost, {errors} errors in all runs")
PY
