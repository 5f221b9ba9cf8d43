#!/usr/bin/env bash
# Runs every test of the workspace against the local PostgreSQL (started if it is down), the
# browser tests in headless Chromium (installed if missing), then the end-to-end suite once more
# on the embedded SQLite store (E2E_STORE=sqlite), and the end-to-end and stress suites once
# more with the waiting line on Redis (E2E_QUEUE=redis).
# Each test creates its own database (or SQLite file) and removes it at the end; the Redis tests
# start redis-servers of their own on free ports (installed if missing) and never touch 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
scripts/ensure-chromium.sh
scripts/ensure-redis.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
cargo build --workspace --all-targets
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
E2E_STORE=sqlite cargo test -p concert-e2e --test e2e --no-fail-fast "$@" || status=$?
E2E_QUEUE=redis cargo test -p concert-e2e --test e2e --test stress --no-fail-fast "$@" || status=$?
exit "$status"
