#!/usr/bin/env bash
# The wait-estimate simulation of docs/PERFORMANCE.md ("How good is the wait estimate"):
#   bench/eta.sh [eta-sim flags, e.g. --users 2000 --seed 7]
#
# Builds concert-server and eta-sim in release; then, for ETA_BEFORE_BIN first when it names an
# earlier concert-server binary (its formula is measured on the same seeded users) and for this
# tree's server: creates a fresh database (concert_eta, dropped at the end), starts ETA_INSTANCES
# instances (3) on loopback with QUEUE_MAX_ACTIVE=ETA_MAX_ACTIVE (200), runs eta-sim over them and
# prints one table row per server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
db=concert_eta
instances=${ETA_INSTANCES:-3}
max_active=${ETA_MAX_ACTIVE:-200}
admin=eta-admin-key-0123456789
secret=eta-token-secret-0123456789abcdef

cargo build --release --bin concert-server --bin eta-sim

pids=()
stop_instances() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
drop_database() {
  PGOPTIONS=--client-min-messages=warning psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}
trap 'stop_instances; drop_database' EXIT
logs=$(mktemp -d)

# simulate LABEL BINARY [eta-sim flags]
simulate() {
  local label=$1 binary=$2 servers=()
  shift 2
  drop_database
  for ((i = 0; i < instances; i++)); do
    local port=$((28490 + i))
    DATABASE_URL="$pg/$db" BIND_ADDR="127.0.0.1:$port" TOKEN_SECRET="$secret" \
      ADMIN_API_KEY="$admin" QUEUE_MAX_ACTIVE="$max_active" \
      "$binary" >"$logs/$label-$i.log" 2>&1 &
    pids+=($!)
    servers+=("http://127.0.0.1:$port")
    # One at a time: the first creates and migrates the database.
    for _ in $(seq 100); do
      curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
  local joined
  joined=$(IFS=,; echo "${servers[*]}")
  target/release/eta-sim --servers "$joined" --database-url "$pg/$db" \
    --admin-key "$admin" --label "$label" "$@" || {
    status=$?
    echo "eta-sim failed; server logs in $logs" >&2
    tail -n 20 "$logs"/*.log >&2
    exit $status
  }
  stop_instances
}

echo "| server | users | sale took | told a wait | median wait | p90 wait | median abs. error | p90 abs. error | median error | burst: told | median wait | median abs. error | p90 abs. error | median error | later: told | median wait | median abs. error | p90 abs. error | median error |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
if [ -n "${ETA_BEFORE_BIN:-}" ]; then
  simulate before "$ETA_BEFORE_BIN" "$@"
fi
simulate "this tree" target/release/concert-server "$@"
