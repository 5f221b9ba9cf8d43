#!/usr/bin/env bash
# API fuzzing from the OpenAPI document with schemathesis. Not part of scripts/test.sh (it needs
# pip and the network once, to install schemathesis); CI can run it as a separate step.
#
# 1. installs schemathesis (pinned) into a virtualenv under ~/.cache (reused by later runs);
# 2. starts concert-server on a free loopback port over a fresh database (created by the server,
#    dropped at the end), with an admin key;
# 3. creates a concert, takes a queue token and waits until it is ACTIVE;
# 4. runs `schemathesis run http://127.0.0.1:PORT/openapi.json` twice: every operation with the
#    queue token, then the admin operation with the admin key;
# 5. stops the server, drops the database; exits non-zero when a check failed.
#
#   scripts/fuzz-openapi.sh                     # ~50 cases per operation, all phases
#   FUZZ_MAX_EXAMPLES=300 FUZZ_SEED=7 scripts/fuzz-openapi.sh
#
# Environment: DATABASE_URL (the PostgreSQL server, no database name; default
# postgres://postgres@127.0.0.1:5432), CONCERT_SERVER_BIN (default target/debug/concert-server,
# built when missing), SCHEMATHESIS_VERSION, FUZZ_VENV, FUZZ_CHECKS, FUZZ_MAX_EXAMPLES, FUZZ_SEED,
# FUZZ_REPORT_DIR (default target/fuzz-openapi: server log and schemathesis reports).
set -euo pipefail
cd "$(dirname "$0")/.."

schemathesis_version=${SCHEMATHESIS_VERSION:-4.32.5}
venv=${FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/concert-queue/schemathesis-$schemathesis_version}
checks=${FUZZ_CHECKS:-not_a_server_error,response_schema_conformance}
max_examples=${FUZZ_MAX_EXAMPLES:-50}
seed=${FUZZ_SEED:-20261129}
report_dir=${FUZZ_REPORT_DIR:-target/fuzz-openapi}
server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
server=${server%/}
binary=${CONCERT_SERVER_BIN:-target/debug/concert-server}
admin_key="fuzz-admin-key-$$"

scripts/ensure-postgres.sh

if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis $schemathesis_version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"
fi
if [ ! -x "$binary" ]; then
  cargo build --bin concert-server
fi

mkdir -p "$report_dir"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
database="concert_fuzz_$(date +%s)_$$"
base="http://127.0.0.1:$port"
log="$report_dir/server.log"
server_pid=

cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  psql "$server/postgres" -q -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "starting concert-server on $base over database $database (log: $log)" >&2
DATABASE_URL="$server/$database" BIND_ADDR="127.0.0.1:$port" ADMIN_API_KEY="$admin_key" \
  TOKEN_SECRET="fuzzing-token-secret-$$-padding" RUST_LOG="${RUST_LOG:-warn}" \
  QUEUE_ACTIVE_TTL_SECONDS=86400 QUEUE_IDLE_TIMEOUT_SECONDS=86400 MAX_HOLDS_PER_USER=1000 \
  "$binary" >"$log" 2>&1 &
server_pid=$!

for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null "$base/health/ready" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "concert-server exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS -o /dev/null "$base/health/ready"

json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"; }

# A concert with a date, so catalog and reservation operations have something to find.
date=$(date -u -d '+30 days' +%F)
curl -fsS -X POST "$base/v1/admin/concerts" -H "authorization: Bearer $admin_key" \
  -H 'content-type: application/json' \
  -d "{\"title\": \"Fuzz Night\", \"dates\": [{\"date\": \"$date\", \"price\": 1000, \"seatCount\": 1000}]}" \
  >/dev/null

# An ACTIVE queue token for the protected operations.
user=$(python3 -c 'import uuid; print(uuid.uuid4())')
token=$(curl -fsS -X POST "$base/v1/queue/tokens" -H 'content-type: application/json' \
  -d "{\"userId\": \"$user\"}" | json_field token)
for _ in $(seq 1 100); do
  status=$(curl -fsS "$base/v1/queue/status" -H "authorization: Bearer $token" | json_field status)
  [ "$status" = ACTIVE ] && break
  sleep 0.2
done
[ "$status" = ACTIVE ] || { echo "the queue token never became ACTIVE" >&2; exit 1; }

common=(--checks "$checks" --max-examples "$max_examples" --seed "$seed"
  --report junit --report-dir "$report_dir" --output-truncate false)
status=0
echo "schemathesis: every operation with a queue token" >&2
"$venv/bin/schemathesis" run "$base/openapi.json" "${common[@]}" \
  --exclude-path /v1/admin/concerts \
  --report-junit-path "$report_dir/operations.xml" \
  -H "Authorization: Bearer $token" || status=$?
echo "schemathesis: the admin operation with the admin key" >&2
"$venv/bin/schemathesis" run "$base/openapi.json" "${common[@]}" \
  --include-path /v1/admin/concerts \
  --report-junit-path "$report_dir/admin.xml" \
  -H "Authorization: Bearer $admin_key" || status=$?

if grep -qE 'panicked|ERROR' "$log"; then
  echo "the server logged errors during fuzzing (see $log):" >&2
  grep -E 'panicked|ERROR' "$log" | head -20 >&2
  status=1
fi
exit "$status"
