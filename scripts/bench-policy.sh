#!/usr/bin/env bash
# Policy (CASIL) benchmarks (docs/BENCHMARKS.md):
#  1. inspections per second on one core, 1 KB messages, default policy and 32 custom
#     patterns, next to parsing the same payload (`cargo bench -p arqon-casil`);
#  2. what the policy stage adds to the whole pipeline: `arqon bench --pattern pairs`
#     with 1 KB payloads, CASIL off (the baseline) and on (enforce, default policy), in
#     one process and as processes on nats-server;
#  3. how long a reload takes to reach two policy replicas, from their own
#     `arqonbus_policy_reload_propagation_seconds` histograms after 50 reloads.
#
# Runs on this shared 2-core machine vary by 10-25 %, so CASIL off and on alternate, three
# rounds each, and the table gives the median of each figure.
#
# Usage: scripts/bench-policy.sh [--quick]
#   --quick  one round of 3 s runs instead of three rounds of 6 s.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=6
rounds=3
if [ "${1:-}" = "--quick" ]; then
  seconds=3
  rounds=1
fi
connections=200
rates="5000 20000"
reloads=50
token="bench-token-$$-0123456789"
source scripts/lib/bench.sh
build_release

echo "== inspections per second, one core"
cargo bench --quiet -p arqon-casil --bench inspect 2>/dev/null | tee "$work/inspect.md"

casil_on=(ARQONBUS_CASIL_ENABLED=true ARQONBUS_CASIL_MODE=enforce)
for round in $(seq 1 "$rounds"); do
  for casil in off on; do
    settings=()
    [ "$casil" = on ] && settings=("${casil_on[@]}")
    echo "== round $round: standalone, CASIL $casil"
    read -r pid addr _ < <(start_arqonbus standalone "${settings[@]}")
    pairs_loads "$addr" "standalone-casil-$casil-$round" --secret "$secret" --payload-size 1024
    stop "$pid"

    echo "== round $round: policy, dispatcher, edge as processes on nats-server, CASIL $casil"
    start_nats
    service=(ARQONBUS_NATS_URL="$nats_url" "${settings[@]}")
    read -r policy _ < <(start_arqonbus policy "${service[@]}")
    read -r dispatcher _ < <(start_arqonbus dispatcher "${service[@]}")
    read -r edge addr _ < <(start_arqonbus edge "${service[@]}")
    pairs_loads "$addr" "distributed-casil-$casil-$round" --secret "$secret" --payload-size 1024
    for p in "$edge" "$dispatcher" "$policy"; do stop "$p"; done
  done
done

echo "== reload propagation: $reloads reloads, two policy replicas on nats-server"
start_nats
service=(ARQONBUS_NATS_URL="$nats_url" ARQONBUS_SERVICE_TOKEN="$token" "${casil_on[@]}")
read -r first _ first_http first_grpc < <(start_arqonbus policy "${service[@]}")
read -r second _ second_http _ < <(start_arqonbus policy "${service[@]}")
for i in $(seq 1 "$reloads"); do
  mode=monitor
  [ $((i % 2)) = 0 ] && mode=enforce
  "$bin/arqon" policy --url "http://$first_grpc" --token "$token" reload \
    --changes "{\"mode\":\"$mode\"}" >/dev/null
done
sleep 1
for http in "$first_http" "$second_http"; do
  curl -fsS "http://$http/metrics" | grep -E '^arqonbus_policy_(reload_propagation_seconds|version)' \
    >"$work/propagation-$http.txt"
done
stop "$first"
stop "$second"

python3 - "$work" $rates <<'PY'
import glob, json, os, re, statistics, sys
work, rates = sys.argv[1], sys.argv[2:]
def median(deployment, casil, kind):
    runs = [json.load(open(p))["traffic"] for p in glob.glob(os.path.join(work, f"{deployment}-casil-{casil}-*-{kind}.json"))]
    pick = lambda f: statistics.median(f(t) for t in runs)
    return {
        "rate": pick(lambda t: t["deliveries_per_second"]),
        "p50": pick(lambda t: t["latency_us"]["p50"] / 1000),
        "p99": pick(lambda t: t["latency_us"]["p99"] / 1000),
        "lost": sum(t["lost"] for t in runs),
        "runs": len(runs),
    }
print("\n### The policy stage in the pipeline (1 KB payloads; baseline: CASIL off; medians)\n")
print("| run | load | msgs/s | ratio | p50 ms | ratio | p99 ms | ratio | lost | runs |")
print("|---|---|---|---|---|---|---|---|---|---|")
for deployment in ["standalone", "distributed"]:
    for kind in ["max"] + [f"rate{r}" for r in rates]:
        off = median(deployment, "off", kind)
        for casil in ["off", "on"]:
            m = off if casil == "off" else median(deployment, "on", kind)
            print(f"| {deployment}, CASIL {casil} | {kind} | {m['rate']:,.0f} | {m['rate'] / off['rate']:.2f} "
                  f"| {m['p50']:.2f} | {m['p50'] / off['p50']:.2f} | {m['p99']:.2f} | {m['p99'] / off['p99']:.2f} "
                  f"| {m['lost']} | {m['runs']} |")
print("\n### Reload propagation (stored -> applied, per replica)\n")
for path in sorted(glob.glob(os.path.join(work, "propagation-*.txt"))):
    text = open(path).read()
    count = float(re.search(r"_seconds_count (\S+)", text).group(1))
    total = float(re.search(r"_seconds_sum (\S+)", text).group(1))
    version = re.search(r"^arqonbus_policy_version (\S+)", text, re.M).group(1)
    buckets = [(float(le), float(n)) for le, n in re.findall(r'_bucket\{le="([^"+]+)"\} (\S+)', text)]
    worst = min((le for le, n in buckets if n >= count), default=float("inf"))
    print(f"- replica {os.path.basename(path)[12:-4]}: version {version}, {count:.0f} reloads applied, "
          f"mean {1000 * total / count:.2f} ms, all within {1000 * worst:.2f} ms")
print()
cpu = [json.load(open(p))["client_cpu"]["cores"] for p in glob.glob(os.path.join(work, "*.json"))]
print(f"load generator CPU: {min(cpu):.2f} to {max(cpu):.2f} cores")
PY
