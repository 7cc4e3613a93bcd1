#!/usr/bin/env bash
# Webhook benchmarks (docs/BENCHMARKS.md, "Operators"): does a tenant's webhook rule slow
# its messages down? Pair echo (`arqon bench --pattern pairs`) on `arqonbus standalone`,
# measured in the same run with no rule (the baseline), with a rule whose target refuses
# every connection (each message: a fan-out job, attempts with backoff, a dead letter),
# and with a rule whose target is a slow receiver (one Python thread answering 200).
# Also reports what the operators did meanwhile, from the bus's metrics.
#
# Usage: scripts/bench-webhooks.sh [--quick]
#   --quick  3 s of traffic per run instead of 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
[ "${1:-}" = "--quick" ] && seconds=3
source scripts/lib/bench.sh
build_release

# A receiver that answers every POST with 200, one at a time; prints its port.
start_receiver() {
  python3 -u - <<'PY' >"$work/receiver.log" 2>&1 &
from http.server import BaseHTTPRequestHandler, HTTPServer
class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = HTTPServer(("127.0.0.1", 0), Hook)
print("port", server.server_address[1])
server.serve_forever()
PY
  track $!
  for _ in $(seq 1 100); do
    if grep -q "^port" "$work/receiver.log"; then
      sed -n 's/^port //p' "$work/receiver.log"
      return
    fi
    sleep 0.1
  done
  cat "$work/receiver.log" >&2
  exit 1
}

# A port nothing listens on.
closed_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
receiver_port="$(start_receiver)"

# Each case on a fresh bus: "$1" is the name, "$2" the rule's URL (empty: no rule).
run_case() {
  local name="$1" url="$2"
  read -r pid addr http _ < <(start_arqonbus standalone ARQONBUS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true)
  if [ -n "$url" ]; then
    local token
    token="$("$bin/arqon" token --secret "$secret" --tenant bench --role admin)"
    "$bin/arqon" command op.webhook.register --ws-url "ws://$addr/ws" --jwt "$token" \
      --args "{\"url\": \"$url\", \"persistent\": true}" >/dev/null
  fi
  bench --ws-url "ws://$addr/ws" --secret "$secret" -n 100 --pattern pairs --in-flight 8 \
    --window 8 --duration "$seconds" >"$work/$name.json"
  # Let the operators catch up for a moment, then read what they did.
  sleep 2
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://$http/metrics" | grep -E '^arqonbus_webhook_(deliveries|deferred)_total' >"$work/$name.metrics" || true
  stop "$pid"
}

echo "== no rule"
run_case none ""
echo "== one rule, target refuses connections"
run_case dead "http://127.0.0.1:$closed_port/hook"
echo "== one rule, slow receiver"
run_case slow "http://127.0.0.1:$receiver_port/hook"

python3 - "$work" "$seconds" <<'PY'
import json, os, sys
work, seconds = sys.argv[1], float(sys.argv[2])
load = lambda name: json.load(open(os.path.join(work, f"{name}.json")))["traffic"]
base = load("none")
print("| run | msgs/s | ratio | p50 ms | ratio | p99 ms | ratio | lost | webhook jobs, 2 s after the run |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for name, label in [("none", "no rule (baseline)"), ("dead", "rule to a refusing target"),
                    ("slow", "rule to a slow receiver")]:
    t = load(name)
    p50, p99 = t["latency_us"]["p50"] / 1000, t["latency_us"]["p99"] / 1000
    b50, b99 = base["latency_us"]["p50"] / 1000, base["latency_us"]["p99"] / 1000
    outcomes = []
    for line in open(os.path.join(work, f"{name}.metrics")):
        series, value = line.rsplit(" ", 1)
        outcome = series.split('outcome="')[1].split('"')[0] if 'outcome="' in series else "deferred"
        outcomes.append(f"{outcome} {float(value):,.0f}")
    print(f"| {label} | {t['messages_per_second']:,.0f} | {t['messages_per_second'] / base['messages_per_second']:.2f} "
          f"| {p50:.2f} | {p50 / b50:.2f} | {p99:.2f} | {p99 / b99:.2f} | {t['lost']} | {', '.join(outcomes) or '—'} |")
PY
