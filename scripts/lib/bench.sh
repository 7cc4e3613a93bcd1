# Shared by the benchmark scripts: a work directory cleaned up on exit, nats-server,
# arqonbus and baseline processes on ports they pick, and `arqon bench`.
# Source it from a script that has `set -euo pipefail` and runs at the repository root.

work="$(mktemp -d)"
# Starters run in subshells (`read … < <(start_…)`), so pids go to a file.
track() { echo "$1" >>"$work/pids"; }
cleanup() {
  if [ -f "$work/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$work/pids"
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bin=target/release
secret="bench-secret-$$"

build_release() {
  cargo build --release --quiet -p arqonbus -p arqon-cli -p arqon-baseline-ws
  nats_server="$(scripts/install-nats.sh)"
}

# Waits for "$2" in log file "$1" and prints the JSON field "$3" of that line.
log_field() {
  local log="$1" message="$2" field="$3"
  for _ in $(seq 1 100); do
    local line
    line="$(grep -F "\"message\":\"$message\"" "$log" | head -n 1 || true)"
    if [ -n "$line" ]; then
      python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$line" "$field"
      return
    fi
    sleep 0.1
  done
  echo "no '$message' in $log" >&2
  cat "$log" >&2
  exit 1
}

# Starts nats-server (JetStream on) on a port it picks; sets $nats_url.
start_nats() {
  local dir="$work/nats-$RANDOM"
  mkdir -p "$dir"
  "$nats_server" -a 127.0.0.1 -p -1 -js -sd "$dir/js" --ports_file_dir "$dir" \
    -l "$dir/log" >/dev/null 2>&1 &
  nats_pid=$!
  track "$nats_pid"
  local ports=""
  for _ in $(seq 1 100); do
    ports="$(ls "$dir"/*.ports 2>/dev/null | head -n 1 || true)"
    [ -n "$ports" ] && break
    sleep 0.1
  done
  nats_url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$ports")"
}

# Stops the nats-server start_nats started last.
stop_nats() { stop "$nats_pid"; }

# Starts `arqonbus <service>` (the binary in $arqonbus_bin if set) with the bench settings
# plus any VAR=value arguments after the service; prints "pid ws-address http-address
# grpc-address" ("-" for a listener the service does not have; gRPC is bound only when
# ARQONBUS_SERVICE_TOKEN is given).
start_arqonbus() {
  local service="$1"
  shift
  local log="$work/$service-$RANDOM.log"
  local env=(ARQONBUS_AUTH_JWT_SECRET="$secret" ARQONBUS_RATE_LIMIT_PER_SECOND=0
    ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND=0 ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND=0
    ARQONBUS_MAX_CONNECTIONS_PER_TENANT=20000
    ARQONBUS_MAX_CONNECTIONS=20000 ARQONBUS_LOG_FORMAT=json ARQONBUS_LOG_LEVEL=info
    ARQONBUS_SERVER_PORT=0 ARQONBUS_HTTP_PORT=0 ARQONBUS_GRPC_PORT=0 "$@")
  env "${env[@]}" "${arqonbus_bin:-$bin/arqonbus}" "$service" >"$log" 2>&1 &
  local pid=$!
  track "$pid"
  local ws="-" grpc="-" http
  if [ "$service" = standalone ] || [ "$service" = edge ]; then
    ws="$(log_field "$log" "WebSocket listener bound" addr)"
  fi
  http="$(log_field "$log" "HTTP listener bound" addr)"
  if grep -q "ARQONBUS_SERVICE_TOKEN=" <<<"$*" && [ "$service" != edge ]; then
    grpc="$(log_field "$log" "gRPC listener bound" addr)"
  fi
  log_field "$log" "running" message >/dev/null
  echo "$pid $ws $http $grpc"
}

# Starts the policy, dispatcher and operators services on $nats_url, with any VAR=value
# arguments; the dispatcher and the operators call the policy service's gRPC API (as a
# deployment's do: cron firings and gRPC publishes pass CASIL there). Adds their pids to
# the caller's array `pids`.
start_services() {
  local token="bench-service-token-$$-0123456789abcdef" p grpc
  read -r p _ _ grpc < <(start_arqonbus policy ARQONBUS_NATS_URL="$nats_url" \
    ARQONBUS_SERVICE_TOKEN="$token" "$@")
  pids+=("$p")
  for service in dispatcher operators; do
    read -r p _ < <(start_arqonbus "$service" ARQONBUS_NATS_URL="$nats_url" \
      ARQONBUS_SERVICE_TOKEN="$token" ARQONBUS_POLICY_URL="http://$grpc" "$@")
    pids+=("$p")
  done
}

# Starts the baseline with any extra flags; prints "pid ws-address".
start_baseline() {
  local log="$work/baseline-$RANDOM.log"
  "$bin/baseline-ws" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  local pid=$!
  track "$pid"
  for _ in $(seq 1 100); do
    if grep -q "listening on" "$log"; then
      echo "$pid $(sed -n 's|.*ws://||p' "$log" | head -n 1)"
      return
    fi
    sleep 0.1
  done
  cat "$log" >&2
  exit 1
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

bench() { "$bin/arqon" bench --json "$@"; }

# The pipeline loads: `arqon bench --pattern pairs` with $connections connections for
# $seconds s against ws://$1/ws, writing $work/$2-max.json (as fast as acknowledgements and
# deliveries keep up) and $work/$2-rate<R>.json for each R in $rates (R messages/s in all).
# Further arguments go to every run.
pairs_loads() {
  local addr="$1" name="$2"
  shift 2
  bench --ws-url "ws://$addr/ws" -n "$connections" --pattern pairs --duration "$seconds" \
    "$@" >"$work/$name-max.json"
  for rate in $rates; do
    bench --ws-url "ws://$addr/ws" -n "$connections" --pattern pairs --duration "$seconds" \
      --rate "$rate" "$@" >"$work/$name-rate$rate.json"
  done
}
