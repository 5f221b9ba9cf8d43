#!/usr/bin/env bash
# The benchmark of docs/PERFORMANCE.md, in one command:
#   bench/run.sh [concert-load flags, e.g. --seconds 10 --only seats,hold]
#
# 1. builds concert-server, concert-load, bench-hello and sqlite-raw in release (into
#    $CARGO_TARGET_DIR when set, else target/);
# 2. creates two fresh databases (concert_bench, concert_bench_queue; dropped at the end unless
#    BENCH_KEEP_DB=1);
# 3. starts, on loopback only: the service (127.0.0.1:28480), a second service instance with
#    QUEUE_MAX_ACTIVE=1 on the queue database (127.0.0.1:28482, for the waiting-user polls) and the
#    bare axum hello (127.0.0.1:28481); and, unless BENCH_EMBEDDED=0, the service on the embedded
#    store (DATABASE_URL=sqlite://, a file in a temporary directory removed at the end;
#    127.0.0.1:28484) and its own queue instance on a second file (127.0.0.1:28485);
# 4. runs concert-load: every scenario against the service and its raw baseline (bare axum, or
#    pgbench with bench/sql/*.sql on the same database with the same client concurrency), each
#    bounded in time and requests; then the embedded store's rows (status poll, seats, hold,
#    charge, payment), each beside sqlite-raw running the adapter's statements on a copy of the
#    store file; then prints the table and writes it to $BENCH_OUT (default
#    bench/results/latest.md, not tracked);
# 5. then, unless BENCH_EVENTS=0, the event-stream benchmark (bench/events.sh: 10,000 streams on one
#    instance of its own);
# 6. then the sale-open benchmark (bench/sale-open.sh, its settings SALE_OPEN_* are described
#    there): 1,000,000 new users joining the default room's line through 3 instances of its own,
#    with the line on PostgreSQL and then on Redis (a redis-server of its own), each beside its raw
#    limit (pgbench's ticket INSERT; redis-benchmark INCR and a join-sized EVAL), and a check of
#    every user's place afterwards. Its table is appended to $BENCH_OUT.
#
# `--only` picks concert-load's scenarios (poll, seats, hold, contention, charge, journey, pay,
# join) and `sale-open`: `--only sale-open` runs only the sale-open part (bench/sale-open.sh);
# `--only join,sale-open` both; a list without `sale-open` skips it (BENCH_SALE_OPEN=0 too).
#
# Everything shares this machine's cores: the load generator and pgbench compete with the server
# and PostgreSQL, so absolute numbers depend on the machine and on what else runs on it.
# Settings: BENCH_PG (server URL without a database, default postgres://postgres@127.0.0.1:5432),
# BENCH_DB, BENCH_OUT, BENCH_EMBEDDED (0: skip the embedded store's rows), BENCH_POOL_SIZE (DATABASE_POOL_SIZE of the service, default: its default),
# BENCH_SERVER_BIN (another concert-server binary to measure, e.g. one built from an older commit),
# BENCH_BEFORE_BIN (a binary to compare with in the same run, e.g. the commit before's: it runs
# first, on its own fresh databases migrated by itself, without the raw baselines, whose SQL fits
# only the current schema; the table then shows its throughput and the change beside each row).
set -euo pipefail
cd "$(dirname "$0")/.."

# Which parts `--only` asks for: concert-load's scenarios, the sale-open part, or both.
only=
previous=
for arg in "$@"; do
  case $arg in
  --only=*) only=${arg#--only=} ;;
  esac
  if [ "$previous" = --only ]; then
    only=$arg
  fi
  previous=$arg
done
sale_open=${BENCH_SALE_OPEN:-1}
if [ -n "$only" ]; then
  case ",$only," in
  *,sale-open,*) ;;
  *) sale_open=0 ;;
  esac
  if [ -z "$(echo ",$only," | sed 's/,sale-open,/,/g; s/^,*//; s/,*$//')" ]; then
    exec bench/sale-open.sh
  fi
fi

scripts/ensure-postgres.sh

pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
db=${BENCH_DB:-concert_bench}
qdb=${db}_queue
out=${BENCH_OUT:-bench/results/latest.md}
mkdir -p "$(dirname "$out")"
bin=${CARGO_TARGET_DIR:-target}/release
server_bin=${BENCH_SERVER_BIN:-$bin/concert-server}
embedded=${BENCH_EMBEDDED:-1}
secret=bench-token-secret-0123456789abcdef
admin=bench-admin-key-0123456789

cargo build --release --bin concert-server --bin concert-load --bin bench-hello --bin sqlite-raw

drop_databases() {
  for name in "$db" "$qdb" "${db}_before" "${qdb}_before"; do
    psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  done
}
drop_databases

pids=()
service_pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP_DB:-0}" != 1 ]; then
    drop_databases
  fi
  if [ -n "${store_dir:-}" ]; then
    rm -rf "$store_dir"
  fi
}
trap cleanup EXIT

for port in 28480 28481 28482 28484 28485; do
  if ss -Htln "sport = :$port" | grep -q .; then
    echo "port $port is in use on 127.0.0.1: stop what listens there first" >&2
    exit 1
  fi
done

logs=$(mktemp -d)
pool=()
if [ -n "${BENCH_POOL_SIZE:-}" ]; then
  pool=(DATABASE_POOL_SIZE="$BENCH_POOL_SIZE")
fi

# start_services BINARY DATABASE QUEUE_DATABASE LOG_PREFIX: the service and the queue instance.
start_services() {
  env "${pool[@]}" DATABASE_URL="$pg/$2" BIND_ADDR=127.0.0.1:28480 TOKEN_SECRET="$secret" \
    ADMIN_API_KEY="$admin" QUEUE_MAX_ACTIVE=10000 \
    "$1" >"$logs/$4server.log" 2>&1 &
  server_pid=$!
  env "${pool[@]}" DATABASE_URL="$pg/$3" BIND_ADDR=127.0.0.1:28482 TOKEN_SECRET="$secret" \
    QUEUE_MAX_ACTIVE=1 \
    "$1" >"$logs/$4queue-server.log" 2>&1 &
  queue_pid=$!
  service_pids=("$server_pid" "$queue_pid")
  pids+=("$server_pid" "$queue_pid")
}

stop_services() {
  kill "${service_pids[@]}" 2>/dev/null || true
  wait "${service_pids[@]}" 2>/dev/null || true
}

# start_embedded: the service on the embedded store, and its queue instance on a file of its own
# (QUEUE_MAX_ACTIVE=1; TTLs of a day, so the user holding the one slot keeps it).
embedded_flags=()
start_embedded() {
  store_dir=$(mktemp -d)
  env DATABASE_URL="sqlite://$store_dir/bench.db" BIND_ADDR=127.0.0.1:28484 TOKEN_SECRET="$secret" \
    ADMIN_API_KEY="$admin" QUEUE_MAX_ACTIVE=10000 \
    "$server_bin" >"$logs/embedded-server.log" 2>&1 &
  embedded_pid=$!
  env DATABASE_URL="sqlite://$store_dir/bench-queue.db" BIND_ADDR=127.0.0.1:28485 \
    TOKEN_SECRET="$secret" QUEUE_MAX_ACTIVE=1 QUEUE_ACTIVE_TTL_SECONDS=86400 \
    QUEUE_IDLE_TIMEOUT_SECONDS=86400 \
    "$server_bin" >"$logs/embedded-queue-server.log" 2>&1 &
  embedded_queue_pid=$!
  pids+=("$embedded_pid" "$embedded_queue_pid")
  embedded_flags=(--embedded-server 127.0.0.1:28484 --embedded-queue-server 127.0.0.1:28485
    --embedded-store "$store_dir/bench.db" --embedded-pid "$embedded_pid"
    --embedded-queue-pid "$embedded_queue_pid" --sqlite-raw "$bin/sqlite-raw")
}

stop_embedded() {
  if [ -n "${embedded_pid:-}" ]; then
    kill "$embedded_pid" "$embedded_queue_pid" 2>/dev/null || true
    wait "$embedded_pid" "$embedded_queue_pid" 2>/dev/null || true
  fi
}

BIND_ADDR=127.0.0.1:28481 "$bin/bench-hello" >"$logs/hello.log" 2>&1 &
pids+=($!)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')
header="Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($cpu), $mem; load average before: $(cut -d' ' -f1-3 /proc/loadavg)."

# run_load DATABASE QUEUE_DATABASE [concert-load flags]
run_load() {
  local database=$1 queue_database=$2
  shift 2
  "$bin/concert-load" \
    --server 127.0.0.1:28480 --queue-server 127.0.0.1:28482 --hello 127.0.0.1:28481 \
    --database-url "$pg/$database" --queue-database-url "$pg/$queue_database" \
    --admin-key "$admin" --token-secret "$secret" \
    --server-pid "$server_pid" --queue-server-pid "$queue_pid" \
    --sql-dir bench/sql --pgbench "$(command -v pgbench)" "$@" || {
    status=$?
    echo "concert-load failed; server logs in $logs" >&2
    tail -n 20 "$logs"/*.log >&2
    exit $status
  }
}

compare=()
if [ -n "${BENCH_BEFORE_BIN:-}" ]; then
  echo "measuring $BENCH_BEFORE_BIN first" >&2
  start_services "$BENCH_BEFORE_BIN" "${db}_before" "${qdb}_before" before-
  run_load "${db}_before" "${qdb}_before" --no-baselines --summary "$logs/before.tsv" \
    --header "$header (before: $BENCH_BEFORE_BIN)" --out "$out.before" "$@"
  stop_services
  compare=(--before "$logs/before.tsv")
  header="$header Before: $BENCH_BEFORE_BIN, measured first in this run."
fi
start_services "$server_bin" "$db" "$qdb" ""
if [ "$embedded" = 1 ]; then
  start_embedded
fi
run_load "$db" "$qdb" --header "$header" --out "$out" "${compare[@]}" "${embedded_flags[@]}" "$@"
echo "table written to $out; load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
stop_services
stop_embedded
if [ "${BENCH_EVENTS:-1}" = 1 ]; then
  bench/events.sh | tee -a "$out"
fi
if [ "$sale_open" = 1 ]; then
  echo >>"$out"
  bench/sale-open.sh | tee -a "$out"
fi
