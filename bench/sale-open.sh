#!/usr/bin/env bash
# The sale-open benchmark of docs/PERFORMANCE.md ("Sale open"), also the `sale-open` part of
# bench/run.sh (`bench/run.sh --only sale-open`):
#   bench/sale-open.sh
#
# A burst of SALE_OPEN_USERS new users (1,000,000) joining the `default` room's line through
# SALE_OPEN_INSTANCES instances at once (3, on 127.0.0.1:28500 and up), SALE_OPEN_CLIENTS
# keep-alive connections in all (256; connection i on instance i mod 3), each user joining once,
# as fast as answers come. Twice in one run:
#
# 1. the line on PostgreSQL: a fresh database (concert_sale_open); then, with the instances
#    stopped, pgbench running bench/sql/join.sql (the bare ticket INSERT) on it with
#    SALE_OPEN_BASELINE_CLIENTS connections (48: the instances' 3 x DATABASE_POOL_SIZE 16) for
#    SALE_OPEN_BASELINE_SECONDS (10);
# 2. the line on Redis: its own `redis-server --save "" --appendonly no` on a free port (from
#    28510; never the machine's 6379), instances on a fresh database (concert_sale_open_redis,
#    for rooms and settings) with QUEUE_URL=redis://127.0.0.1:<port>/0 and QUEUE_KEY_PREFIX
#    (concert:); then, instances stopped, redis-benchmark on the same redis-server: INCR, and an
#    EVAL of bench/redis/join.lua (about a join's work), SALE_OPEN_USERS requests each with
#    SALE_OPEN_BASELINE_CLIENTS connections. A concert-server without the QUEUE_URL setting, or
#    instances that leave the redis-server empty, make the Redis line "not measured" with the
#    reason (its baselines still run); SALE_OPEN_REDIS=0 skips it.
#
# The instances run with the join rate limits off (JOIN_RATE_LIMIT_PER_ADDRESS and _PER_USER 0),
# `trusted` identity, the default maxActive (QUEUE_MAX_ACTIVE 1000) and admission interval, and
# active and idle times of a day, so the line stands still once the burst is over. After each
# burst, every user's status is read through the instances (all users, no sample): the ACTIVE
# ones must number maxActive, the WAITING positions must be exactly 1..W with no duplicate and no
# gap, and the tickets the tokens name must be first..first+N-1 in line order.
#
# Everything runs on this machine's cores: the load generator (one process, sale-open) shares
# them with the instances and the store. Prints the table and writes it to SALE_OPEN_OUT
# (bench/results/sale-open.md, not tracked). Databases are dropped at the end unless
# BENCH_KEEP_DB=1. Other settings: BENCH_PG (server URL without a database), BENCH_SERVER_BIN (the
# concert-server binary to measure), BENCH_POOL_SIZE (the instances' DATABASE_POOL_SIZE).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
db=concert_sale_open
redis_db=${db}_redis
users=${SALE_OPEN_USERS:-1000000}
clients=${SALE_OPEN_CLIENTS:-256}
instances=${SALE_OPEN_INSTANCES:-3}
baseline_clients=${SALE_OPEN_BASELINE_CLIENTS:-48}
baseline_seconds=${SALE_OPEN_BASELINE_SECONDS:-10}
with_redis=${SALE_OPEN_REDIS:-1}
key_prefix=${QUEUE_KEY_PREFIX:-concert:}
out=${SALE_OPEN_OUT:-bench/results/sale-open.md}
mkdir -p "$(dirname "$out")"
bin=${CARGO_TARGET_DIR:-target}/release
server_bin=${BENCH_SERVER_BIN:-$bin/concert-server}
secret=sale-open-token-secret-0123456789abcdef
admin=sale-open-admin-key-0123456789

cargo build --release --bin concert-server --bin sale-open

drop_databases() {
  for name in "$db" "$redis_db"; do
    PGOPTIONS=--client-min-messages=warning psql "$pg/postgres" -qAtc \
      "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  done
}

pids=()
redis_pid=
work=$(mktemp -d)
stop_instances() {
  if [ "${#pids[@]}" -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  pids=()
}
stop_redis() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  fi
}
cleanup() {
  stop_instances
  stop_redis
  if [ "${BENCH_KEEP_DB:-0}" != 1 ]; then
    drop_databases
  fi
}
trap cleanup EXIT

ports=()
servers=()
for ((i = 0; i < instances; i++)); do
  port=$((28500 + i))
  if ss -Htln "sport = :$port" | grep -q .; then
    echo "port $port is in use on 127.0.0.1: stop what listens there first" >&2
    exit 1
  fi
  ports+=("$port")
  servers+=("127.0.0.1:$port")
done
server_list=$(IFS=,; echo "${servers[*]}")
pool=()
if [ -n "${BENCH_POOL_SIZE:-}" ]; then
  pool=(DATABASE_POOL_SIZE="$BENCH_POOL_SIZE")
fi

# start_instances LABEL DATABASE [VAR=VALUE...]: the instances, one after the other (the first
# creates and migrates the database). Fails when one is not ready within 20 s.
start_instances() {
  local label=$1 database=$2
  shift 2
  for ((i = 0; i < instances; i++)); do
    env "${pool[@]}" "$@" DATABASE_URL="$pg/$database" BIND_ADDR="127.0.0.1:${ports[$i]}" \
      TOKEN_SECRET="$secret" ADMIN_API_KEY="$admin" IDENTITY_MODE=trusted \
      JOIN_RATE_LIMIT_PER_ADDRESS=0 JOIN_RATE_LIMIT_PER_USER=0 \
      QUEUE_ACTIVE_TTL_SECONDS=86400 QUEUE_IDLE_TIMEOUT_SECONDS=86400 \
      "$server_bin" >"$work/$label-$i.log" 2>&1 &
    pids+=($!)
    local ready=0
    for _ in $(seq 100); do
      if curl -fsS "http://127.0.0.1:${ports[$i]}/health/ready" >/dev/null 2>&1; then
        ready=1
        break
      fi
      sleep 0.2
    done
    if [ "$ready" != 1 ]; then
      echo "instance $i of the $label line did not get ready; its log:" >&2
      tail -n 20 "$work/$label-$i.log" >&2
      return 1
    fi
  done
}

instance_pids() {
  (IFS=,; echo "${pids[*]}")
}

# burst LINE LABEL DATABASE [sale-open burst flags]
burst() {
  local line=$1 label=$2 database=$3
  shift 3
  TOKEN_SECRET="$secret" ADMIN_API_KEY="$admin" "$bin/sale-open" burst \
    --servers "$server_list" --line "$line" --users "$users" --concurrency "$clients" \
    --instance-pids "$(instance_pids)" --database "$database" --out "$work/$label.json" "$@"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')
header="Sale open: run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($cpu), $mem; load average before: $(cut -d' ' -f1-3 /proc/loadavg). $users new users join the default room's line through $instances instances ($clients connections in all, connection i on instance i mod $instances), join rate limits off, maxActive as default; the load generator shares the cores with the instances and the store."

# 1. The line on PostgreSQL.
drop_databases
echo "[sale-open.sh] PostgreSQL line: $instances instances on $db" >&2
start_instances postgres "$db"
burst PostgreSQL postgres "$db" || {
  echo "the PostgreSQL burst failed; instance logs in $work" >&2
  tail -n 20 "$work"/postgres-*.log >&2
  exit 1
}
stop_instances
"$bin/sale-open" pgbench --database-url "$pg/$db" --pgbench "$(command -v pgbench)" \
  --script bench/sql/join.sql --clients "$baseline_clients" --seconds "$baseline_seconds" \
  --name "pgbench ticket INSERT (bench/sql/join.sql)" --out "$work/postgres-insert.json"
report=(--postgres "$work/postgres.json" --postgres-baseline "$work/postgres-insert.json")

# 2. The line on Redis, on a redis-server of its own.
if [ "$with_redis" = 1 ]; then
  redis_port=28510
  while ss -Htln "sport = :$redis_port" | grep -q .; do
    redis_port=$((redis_port + 1))
  done
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$work/redis-server.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" ping >/dev/null
  missing=
  help=$("$server_bin" --help)
  if ! grep -q -- '--queue-url' <<<"$help"; then
    missing="this concert-server has no QUEUE_URL setting (the Redis line is not wired into it yet)"
  else
    echo "[sale-open.sh] Redis line: $instances instances on redis-server :$redis_port" >&2
    if ! start_instances redis "$redis_db" QUEUE_URL="redis://127.0.0.1:$redis_port/0" \
      QUEUE_KEY_PREFIX="$key_prefix"; then
      missing="the instances with QUEUE_URL did not start (logs in $work)"
    elif ! burst Redis redis "$redis_db" --store-pid "$redis_pid"; then
      missing="the burst failed (instance logs in $work)"
      tail -n 20 "$work"/redis-*.log >&2
    elif [ "$(redis-cli -p "$redis_port" --scan --pattern "${key_prefix}*" | head -n 1)" = "" ]; then
      missing="the instances wrote nothing under $key_prefix on the redis-server: they ignored QUEUE_URL"
    else
      # What the line costs Redis in memory (docs/REDIS.md sizes maxmemory from it).
      used=$(redis-cli -p "$redis_port" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
      echo "[sale-open.sh] Redis memory after the burst: $((used / 1048576)) MiB, $((used / users)) bytes per user in line" >&2
    fi
    stop_instances
  fi
  if [ -z "$missing" ]; then
    report+=(--redis "$work/redis.json")
  else
    echo "[sale-open.sh] Redis line not measured: $missing" >&2
    report+=(--redis-missing "$missing")
  fi
  tag="bench:{line:0}"
  "$bin/sale-open" redis --port "$redis_port" --redis-benchmark "$(command -v redis-benchmark)" \
    --clients "$baseline_clients" --requests "$users" \
    --name "redis-benchmark INCR" --out "$work/redis-incr.json"
  "$bin/sale-open" redis --port "$redis_port" --redis-benchmark "$(command -v redis-benchmark)" \
    --clients "$baseline_clients" --requests "$users" --script bench/redis/join.lua \
    --keys "$tag:places,$tag:seq,$tag:tickets,$tag:waiting" \
    --name "redis-benchmark EVAL bench/redis/join.lua" --out "$work/redis-eval.json"
  report+=(--redis-baseline "$work/redis-incr.json" --redis-baseline "$work/redis-eval.json")
  stop_redis
else
  report+=(--redis-missing "skipped (SALE_OPEN_REDIS=0)")
fi

"$bin/sale-open" report --header "$header" "${report[@]}" --out "$out"
echo "[sale-open.sh] table written to $out; load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
rm -rf "$work"
