#!/usr/bin/env bash
# The event-stream benchmark of docs/PERFORMANCE.md ("Event streams"):
#   bench/events.sh [events-load flags, e.g. --streams 2000]
#
# Builds concert-server and events-load in release, creates a fresh database (concert_events,
# dropped at the end), starts one instance on 127.0.0.1:28483 with QUEUE_MAX_ACTIVE=100, then
# events-load opens a stream per user (10,000 by default), measures the instance while the line
# stands still and while it moves, and the delay from each admission to its event.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
db=concert_events
secret=events-token-secret-0123456789abcdef
bin=${CARGO_TARGET_DIR:-target}/release

cargo build --release --bin concert-server --bin events-load

drop_database() {
  PGOPTIONS=--client-min-messages=warning psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  drop_database
}
trap cleanup EXIT
drop_database
log=$(mktemp)

DATABASE_URL="$pg/$db" BIND_ADDR=127.0.0.1:28483 TOKEN_SECRET="$secret" QUEUE_MAX_ACTIVE=100 \
  QUEUE_EVENT_STREAMS_MAX=20000 "$bin/concert-server" >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:28483/health/ready >/dev/null 2>&1 && break
  sleep 0.2
done
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
"$bin/events-load" --server http://127.0.0.1:28483 --server-pid "$pid" --database "$db" "$@" || {
  status=$?
  echo "events-load failed; server log: $log" >&2
  tail -n 20 "$log" >&2
  exit $status
}
